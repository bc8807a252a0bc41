// Page state: the title and summary, the empty state, the error box and the status line.

import { renderChart } from "./chart.js";
import { timeFmt } from "./format.js";
import { $, RAW_LIMIT, state, view } from "./state.js";
import { buildRows, renderTable } from "./table.js";

export function render(background) {
  const { query, result, anomalies } = view;
  if (!background) view.page = 0;
  view.rows = buildRows();
  const points = view.rows.length;
  const rollupText = query.promql
    ? `PromQL, step ${query.step}s`
    : query.rollup === "raw" ? "raw" : `${query.rollup} avg`;
  const auto = state.rollup === "auto" && !query.promql ? " (auto)" : "";
  $("chart-title").textContent = `${result.metric_name} · ${rollupText}${auto}`;
  const parts = [`${result.series.length} series`, `${points.toLocaleString()} points`];
  if (anomalies) {
    const found = anomalies.series.reduce((sum, s) => sum + s.anomalies.length, 0);
    parts.push(`${found} ${found === 1 ? "anomaly" : "anomalies"}`);
  }
  if (query.rollup === "raw" && points >= RAW_LIMIT) parts.push(`cut at ${RAW_LIMIT.toLocaleString()}: pick a rollup`);
  if (view.notice) parts.push(view.notice);
  $("summary").textContent = parts.join(" · ");
  if (points) $("empty").hidden = true;
  else if (view.notice) showEmpty("Nothing retained in this range", view.notice);
  else {
    showEmpty("No data in this range", state.filter
      ? "Try a longer range or a different label filter."
      : "Try a longer range, or send samples to POST /metrics/ingest.");
  }
  renderChart();
  renderTable();
}

function showEmpty(title, hint) {
  $("empty-title").textContent = title;
  $("empty-hint").textContent = hint;
  $("empty").hidden = false;
}

export function clearData(title, hint) {
  view.result = null;
  view.anomalies = null;
  view.rows = [];
  $("chart-title").textContent = state.metric;
  $("summary").textContent = "";
  showEmpty(title, hint);
  $("table-head").replaceChildren();
  $("table-body").replaceChildren();
  $("table-info").textContent = "";
  $("pager").hidden = true;
  if (view.chart) {
    view.chart.data.datasets = [];
    view.chart.options.scales.y.display = false;
    view.chart.update("none");
  }
}

export function showNoMetrics() {
  clearData("No metrics yet", "Send samples to POST /metrics/ingest or POST /backfill/import.");
  $("chart-title").textContent = "No metrics yet";
}

export function showError(err) {
  view.error = err.message;
  const box = $("error");
  const needsKey = err.status === 401 || err.status === 403;
  box.textContent = err.message + (needsKey ? " Set an API key (top right)." : "");
  box.hidden = false;
  if (needsKey) $("apikey-box").open = true;
}

export function clearError() {
  view.error = null;
  $("error").hidden = true;
  $("error").textContent = "";
}

export function setStatus(text) {
  $("status").textContent = text;
}

export function updateStatus() {
  if (view.error) return setStatus("");
  const every = state.refresh === "off" ? "" : ` · refreshing every ${state.refresh}`;
  setStatus(view.result ? `Updated ${timeFmt.format(Date.now())}${every}` : "");
}
