// The data table: one row per point, newest first, anomalies flagged, paged in the browser.

import { formatNumber, formatTime, labelText, sortedLabels } from "./format.js";
import { $, PAGE_SIZE, WINDOWS, view } from "./state.js";

function anomalyKeys() {
  const keys = new Set();
  if (!view.anomalies) return keys;
  const width = WINDOWS[view.query.rollup] ?? 0;
  for (const series of view.anomalies.series) {
    const labels = labelText(series.labels);
    for (const a of series.anomalies) {
      const ms = Date.parse(a.timestamp);
      keys.add(`${labels}|${width ? Math.floor(ms / width) * width : ms}`);
    }
  }
  return keys;
}

export function buildRows() {
  const flagged = anomalyKeys();
  const rows = [];
  for (const series of view.result.series) {
    const labels = labelText(series.labels);
    const pairs = sortedLabels(series.labels).map(([key, value]) => `${key}=${value}`);
    for (const point of series.points) {
      const ms = Date.parse(point.timestamp);
      const anomaly = flagged.has(`${labels}|${ms}`);
      rows.push({ ms, timestamp: point.timestamp, labels, pairs, point, anomaly });
    }
  }
  rows.sort((a, b) => b.ms - a.ms || (a.labels < b.labels ? -1 : a.labels > b.labels ? 1 : 0));
  return rows;
}

function tableColumns() {
  return view.query.rollup === "raw"
    ? ["Time", "Labels", "Value"]
    : ["Bucket start", "Labels", "Avg", "Min", "Max", "Count"];
}

function cell(row, text, className) {
  const td = document.createElement("td");
  td.textContent = text;
  if (className) td.className = className;
  row.append(td);
}

function tableRow(entry) {
  const tr = document.createElement("tr");
  tr.dataset.timestamp = entry.timestamp;
  tr.dataset.labels = entry.labels;
  cell(tr, formatTime(entry.ms), "time");
  const labels = document.createElement("td");
  labels.className = "labels";
  const pairs = entry.pairs.length ? entry.pairs : ["(no labels)"];
  pairs.forEach((pair, index) => {
    const span = document.createElement("span");
    span.className = "pair";
    span.textContent = index < pairs.length - 1 ? `${pair},` : pair;
    labels.append(span, " ");
  });
  if (entry.anomaly) {
    tr.classList.add("anomaly");
    const badge = document.createElement("span");
    badge.className = "badge";
    badge.textContent = "anomaly";
    labels.append(" ", badge);
  }
  tr.append(labels);
  const { point } = entry;
  const values = view.query.rollup === "raw" ? [point.value] : [point.avg, point.min, point.max, point.count];
  tr.dataset.values = JSON.stringify(values);
  for (const value of values) cell(tr, point.special ?? formatNumber(value), "num");
  return tr;
}

export function renderTable() {
  const head = $("table-head");
  head.replaceChildren(...tableColumns().map((name, index) => {
    const th = document.createElement("th");
    th.textContent = name;
    if (index > 1) th.className = "num";
    return th;
  }));
  const pages = Math.max(1, Math.ceil(view.rows.length / PAGE_SIZE));
  view.page = Math.min(view.page, pages - 1);
  const first = view.page * PAGE_SIZE;
  const slice = view.rows.slice(first, first + PAGE_SIZE);
  $("table-body").replaceChildren(...slice.map(tableRow));
  $("table-info").textContent = view.rows.length
    ? `rows ${first + 1}–${first + slice.length} of ${view.rows.length.toLocaleString()}, newest first`
    : "no rows";
  $("page-info").textContent = `Page ${view.page + 1} of ${pages}`;
  $("prev").disabled = view.page === 0;
  $("next").disabled = view.page >= pages - 1;
  $("pager").hidden = pages < 2;
}
