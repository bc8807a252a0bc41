// Firing alerts: fetched with every load, listed above the chart for the shown metric and marked
// on the chart (anomaly-events.js). Reading them needs only a read key; failing to is not fatal.

import { api } from "./api.js";
import { formatNumber, formatTime, labelText } from "./format.js";
import { $, state, view } from "./state.js";

export async function loadAlerts(signal) {
  try {
    const body = await api("/alerts", new URLSearchParams({ state: "firing", history: "0" }), signal);
    return (body.alerts ?? []).filter((alert) => alert.metric === state.metric);
  } catch (err) {
    if (err.name === "AbortError") throw err;
    return null; // e.g. an older server without /alerts: the page works without the panel
  }
}

export function renderAlerts() {
  const alerts = view.alerts ?? [];
  const card = $("alerts-card");
  card.hidden = alerts.length === 0;
  $("alerts-info").textContent = alerts.length ? `${alerts.length} firing` : "";
  $("alerts-list").replaceChildren(...alerts.map((alert) => {
    const item = document.createElement("li");
    item.className = "alert-item";
    item.dataset.rule = alert.rule;
    const name = document.createElement("strong");
    name.textContent = alert.labels.alertname ?? alert.rule;
    const rest = { ...alert.labels };
    delete rest.alertname;
    const detail = document.createElement("span");
    const summary = alert.annotations?.summary ? ` · ${alert.annotations.summary}` : "";
    detail.textContent = ` ${labelText(rest)} · firing since ${formatTime(Date.parse(alert.fired_at))}`
      + ` · value ${formatNumber(alert.value)}${summary}`;
    item.append(name, detail);
    return item;
  }));
}
