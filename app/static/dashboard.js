// The metrics dashboard: one metric at a time as a chart, a table and an anomaly overlay.
// Every selection lives in the query string, so a view can be shared by its URL.
// Plain ES module, no build step; Chart.js (UMD, window.Chart) is served from /vendor/.

const RANGES = { "1h": 3_600_000, "24h": 86_400_000, "7d": 604_800_000 };
const WINDOWS = { "1m": 60_000, "5m": 300_000, "1h": 3_600_000 };
const ROLLUPS = ["auto", "raw", ...Object.keys(WINDOWS)];
const REFRESH = { off: 0, "10s": 10_000, "1m": 60_000 };
const DEFAULTS = Object.freeze({
  metric: "", range: "1h", rollup: "auto", filter: "", anomalies: false, threshold: 3, refresh: "off",
});
const RAW_LIMIT = 100_000; // points per raw query; reaching it means the answer was cut short
const MAX_BUCKETS = 1_500; // "auto": the finest window giving at most this many points per series
const PAGE_SIZE = 25;
const KEY_STORAGE = "metrics-dashboard.api-key";
const PALETTE = ["#2563eb", "#16a34a", "#9333ea", "#ea580c", "#0891b2", "#ca8a04", "#db2777",
  "#4f46e5", "#65a30d", "#0d9488", "#b45309", "#7c3aed"];
const ANOMALY_COLOR = "#dc2626";

const $ = (id) => document.getElementById(id);
const timeFmt = new Intl.DateTimeFormat(undefined, { hour: "2-digit", minute: "2-digit" });
const dayFmt = new Intl.DateTimeFormat(undefined, { month: "short", day: "numeric" });
const FULL = {
  month: "short", day: "numeric", hour: "2-digit", minute: "2-digit", second: "2-digit",
};
const fullFmt = new Intl.DateTimeFormat(undefined, FULL);
const fullMsFmt = new Intl.DateTimeFormat(undefined, { ...FULL, fractionalSecondDigits: 3 });
const numberFmt = new Intl.NumberFormat(undefined, { maximumFractionDigits: 4 });

const state = { ...DEFAULTS };
// Everything the page currently shows; exposed as window.__dashboard for tests and debugging.
const view = {
  state, chart: null, names: [], query: null, result: null, anomalies: null, rows: [], page: 0,
  seq: 0, loads: 0, busy: false, controller: null, timer: 0, error: null,
};
window.__dashboard = view;

// ---------------------------------------------------------------- URL state

function readUrl() {
  const params = new URLSearchParams(window.location.search);
  const next = { ...DEFAULTS };
  next.metric = params.get("metric") ?? "";
  if (params.get("range") in RANGES) next.range = params.get("range");
  if (ROLLUPS.includes(params.get("rollup"))) next.rollup = params.get("rollup");
  next.filter = params.get("filter") ?? "";
  next.anomalies = params.get("anomalies") === "1";
  const threshold = Number(params.get("threshold"));
  if (params.has("threshold") && Number.isFinite(threshold) && threshold > 0) next.threshold = threshold;
  if (params.get("refresh") in REFRESH) next.refresh = params.get("refresh");
  return next;
}

function writeUrl(push) {
  const params = new URLSearchParams();
  if (state.metric) params.set("metric", state.metric);
  params.set("range", state.range);
  params.set("rollup", state.rollup);
  if (state.filter) params.set("filter", state.filter);
  if (state.anomalies) {
    params.set("anomalies", "1");
    params.set("threshold", String(state.threshold));
  }
  if (state.refresh !== "off") params.set("refresh", state.refresh);
  const url = `${window.location.pathname}?${params}`;
  if (url === window.location.pathname + window.location.search) return;
  if (push) window.history.pushState(null, "", url);
  else window.history.replaceState(null, "", url);
}

// ---------------------------------------------------------------- API access

class ApiError extends Error {
  constructor(status, detail) {
    super(status ? `API error ${status}: ${detail}` : detail);
    this.status = status;
    this.detail = detail;
  }
}

function storedKey() {
  try {
    return window.localStorage.getItem(KEY_STORAGE) ?? "";
  } catch {
    return "";
  }
}

function storeKey(key) {
  try {
    if (key) window.localStorage.setItem(KEY_STORAGE, key);
    else window.localStorage.removeItem(KEY_STORAGE);
  } catch {
    showError(new Error("This browser does not allow storing the API key (localStorage)."));
  }
}

// FastAPI answers {"detail": "..."} or, for validation errors, {"detail": [{loc, msg}, ...]}.
function describeDetail(detail) {
  if (detail === undefined || detail === null) return "";
  if (typeof detail === "string") return detail;
  if (Array.isArray(detail)) {
    return detail.map((item) => {
      if (!item || typeof item !== "object") return String(item);
      const where = (item.loc ?? []).filter((part) => part !== "query" && part !== "body").join(".");
      return where ? `${where}: ${item.msg}` : String(item.msg ?? JSON.stringify(item));
    }).join("; ");
  }
  return JSON.stringify(detail);
}

async function api(path, params, signal) {
  const headers = { Accept: "application/json" };
  const key = storedKey();
  if (key) headers.Authorization = `Bearer ${key}`;
  let response;
  try {
    response = await fetch(`${path}?${params}`, { headers, signal });
  } catch (err) {
    if (err.name === "AbortError") throw err;
    throw new ApiError(0, `Cannot reach the service (${err.message}).`);
  }
  let body = null;
  try {
    body = await response.json();
  } catch {
    body = null;
  }
  if (!response.ok) {
    throw new ApiError(response.status, describeDetail(body?.detail) || response.statusText);
  }
  return body;
}

// ---------------------------------------------------------------- label filter

const SEPARATORS = /[\s,]+/y;
const MATCHER_GROUP = /\{(?:[^{}"]|"(?:[^"\\]|\\.)*")*\}/g;
const TERM = /([A-Za-z_][A-Za-z0-9_]*)\s*(!=|=~|!~|=|:)\s*("(?:[^"\\]|\\.)*"|[^\s,"]+)/y;

// `host=server1 region:us-west {host=~"server[12]"} env!=dev` -> exact `label=KEY:VALUE`
// pairs plus one Prometheus `match={...}` holding every braced group and every non-equality term.
export function parseFilter(text) {
  const labels = [];
  const matchers = [];
  const rest = text.replace(MATCHER_GROUP, (group) => {
    const inner = group.slice(1, -1).trim();
    if (inner) matchers.push(inner);
    return " ";
  });
  let at = 0;
  while (at < rest.length) {
    SEPARATORS.lastIndex = at;
    if (SEPARATORS.test(rest)) at = SEPARATORS.lastIndex;
    if (at >= rest.length) break;
    TERM.lastIndex = at;
    const term = TERM.exec(rest);
    if (!term) {
      const near = rest.slice(at, at + 24).trim();
      throw new Error(`Label filter: cannot read "${near}". Use key=value or {key=~"regex"}.`);
    }
    at = TERM.lastIndex;
    const [, name, op, raw] = term;
    const value = raw.startsWith('"') ? JSON.parse(raw) : raw;
    if (op === "=" || op === ":") labels.push(`${name}:${value}`);
    else matchers.push(`${name}${op}${JSON.stringify(value)}`);
  }
  return { labels, match: matchers.length ? `{${matchers.join(",")}}` : "" };
}

// ---------------------------------------------------------------- queries

function effectiveRollup() {
  if (state.rollup !== "auto") return state.rollup;
  const span = RANGES[state.range];
  if (span <= RANGES["1h"]) return "raw";
  const fine = Object.entries(WINDOWS).find(([, ms]) => span / ms <= MAX_BUCKETS);
  return fine ? fine[0] : "1h";
}

function baseParams(start, end, filter) {
  const params = new URLSearchParams();
  params.set("metric_name", state.metric);
  params.set("start_time", new Date(start).toISOString());
  params.set("end_time", new Date(end).toISOString());
  for (const label of filter.labels) params.append("label", label);
  if (filter.match) params.set("match", filter.match);
  return params;
}

function buildQuery() {
  const end = Date.now();
  const start = end - RANGES[state.range];
  const rollup = effectiveRollup();
  const base = baseParams(start, end, parseFilter(state.filter));
  const data = new URLSearchParams(base);
  if (rollup === "raw") data.set("limit", String(RAW_LIMIT));
  else data.set("window", rollup);
  const anomaly = new URLSearchParams(base);
  anomaly.set("threshold", String(state.threshold));
  return {
    start, end, rollup, path: rollup === "raw" ? "/query/raw" : "/query/rollup", params: data,
    anomalyParams: state.anomalies ? anomaly : null,
  };
}

async function loadNames() {
  try {
    const body = await api("/metrics/names", new URLSearchParams());
    view.names = body.names ?? [];
  } catch (err) {
    view.names = [];
    showError(err);
  }
  if (!state.metric && view.names.length) {
    state.metric = view.names[0];
    writeUrl(false);
  }
  fillMetricSelect();
}

async function load({ background = false } = {}) {
  const seq = ++view.seq;
  view.controller?.abort();
  const controller = new AbortController();
  view.controller = controller;
  view.busy = true;
  setStatus("Loading…");
  try {
    if (!state.metric) {
      if (view.error) clearData("Nothing to show", "The request failed: see the message above.");
      else showNoMetrics();
      return;
    }
    const query = buildQuery();
    view.query = query;
    const [result, anomalies] = await Promise.all([
      api(query.path, query.params, controller.signal),
      query.anomalyParams
        ? api("/anomaly/detect", query.anomalyParams, controller.signal)
        : Promise.resolve(null),
    ]);
    if (seq !== view.seq) return;
    Object.assign(view, { result, anomalies });
    clearError();
    render(background);
  } catch (err) {
    if (err.name === "AbortError" || seq !== view.seq) return;
    showError(err);
    if (!background) clearData("Nothing to show", "The request failed: see the message above.");
  } finally {
    if (seq === view.seq) {
      view.busy = false;
      view.loads += 1;
      updateStatus();
    }
  }
}

// ---------------------------------------------------------------- formatting

function sortedLabels(labels) {
  return Object.entries(labels ?? {}).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
}

function labelText(labels) {
  return sortedLabels(labels).map(([key, value]) => `${key}=${value}`).join(", ");
}

function formatNumber(value) {
  return value === null || value === undefined ? "–" : numberFmt.format(value);
}

function formatTime(ms) {
  return ms % 1000 ? fullMsFmt.format(ms) : fullFmt.format(ms);
}

const TICK_STEPS = [1, 2, 5, 10, 15, 30].map((m) => m * 60_000)
  .concat([1, 2, 3, 6, 12].map((h) => h * 3_600_000), [1, 2, 7].map((d) => d * 86_400_000));

// Tick positions on round local times (whole minutes, hours, local midnights).
function timeTicks(min, max, count) {
  const step = TICK_STEPS.find((s) => (max - min) / s <= count) ?? TICK_STEPS.at(-1);
  const ticks = [];
  if (step >= 86_400_000) {
    const day = new Date(min);
    day.setHours(0, 0, 0, 0);
    if (day.getTime() < min) day.setDate(day.getDate() + 1);
    for (; day.getTime() <= max; day.setDate(day.getDate() + step / 86_400_000)) {
      ticks.push({ value: day.getTime() });
    }
    return ticks;
  }
  const offset = new Date(min).getTimezoneOffset() * 60_000;
  for (let t = Math.ceil((min - offset) / step) * step + offset; t <= max; t += step) {
    ticks.push({ value: t });
  }
  return ticks;
}

function tickLabel(ms) {
  const date = new Date(ms);
  const midnight = date.getHours() === 0 && date.getMinutes() === 0;
  return midnight ? dayFmt.format(ms) : timeFmt.format(ms);
}

// ---------------------------------------------------------------- chart

function seriesDatasets(result, rollup) {
  return result.series.map((series, index) => {
    const color = PALETTE[index % PALETTE.length];
    const data = series.points.map((point) => (rollup === "raw"
      ? { x: Date.parse(point.timestamp), y: point.value }
      : { x: Date.parse(point.timestamp), y: point.avg, min: point.min, max: point.max,
        count: point.count }));
    return {
      type: "line", label: labelText(series.labels) || result.metric_name, data,
      borderColor: color, backgroundColor: color, borderWidth: 1.5, tension: 0,
      pointRadius: data.length > 120 ? 0 : 2, pointHoverRadius: 4,
    };
  });
}

function anomalyDataset(anomalies) {
  const data = anomalies.series.flatMap((series) => series.anomalies.map((a) => ({
    x: Date.parse(a.timestamp), y: a.value, zscore: a.zscore, series: labelText(series.labels),
  }))).sort((a, b) => a.x - b.x);
  return {
    type: "scatter", label: `Anomalies (z > ${anomalies.threshold ?? state.threshold})`, data,
    borderColor: ANOMALY_COLOR, backgroundColor: "rgba(220, 38, 38, 0.25)", borderWidth: 2,
    pointRadius: 7, pointHoverRadius: 9, pointStyle: "circle", order: -1, clip: 10,
  };
}

function tooltipLabel(ctx) {
  const raw = ctx.raw;
  if (ctx.dataset.type === "scatter") {
    return `${raw.series || "anomaly"}: ${formatNumber(raw.y)} (z = ${raw.zscore.toFixed(2)})`;
  }
  if (raw.count !== undefined) {
    return `${ctx.dataset.label}: avg ${formatNumber(raw.y)} · min ${formatNumber(raw.min)}`
      + ` · max ${formatNumber(raw.max)} · n ${raw.count}`;
  }
  return `${ctx.dataset.label}: ${formatNumber(raw.y)}`;
}

function chartOptions() {
  return {
    animation: false, parsing: false, normalized: true, responsive: true,
    maintainAspectRatio: false,
    interaction: { mode: "nearest", axis: "x", intersect: false },
    scales: {
      x: {
        type: "linear",
        afterBuildTicks: (scale) => {
          scale.ticks = timeTicks(scale.min, scale.max, Math.max(3, Math.floor(scale.chart.width / 80)));
        },
        ticks: { callback: (value) => tickLabel(value), maxRotation: 0, autoSkip: false },
        grid: { color: "#eef0f3" },
      },
      y: {
        grace: "5%", ticks: { callback: (value) => formatNumber(value) }, grid: { color: "#eef0f3" },
      },
    },
    plugins: {
      decimation: { enabled: false, algorithm: "lttb", samples: 1_000 },
      legend: { position: "bottom", labels: { boxWidth: 12, boxHeight: 12, usePointStyle: true } },
      tooltip: {
        callbacks: { title: (items) => (items.length ? formatTime(items[0].parsed.x) : ""),
          label: tooltipLabel },
      },
    },
  };
}

function renderChart() {
  if (!window.Chart) return;
  const { query, result, anomalies } = view;
  const datasets = seriesDatasets(result, query.rollup);
  if (anomalies) datasets.push(anomalyDataset(anomalies));
  if (!view.chart) {
    window.Chart.defaults.font.family = getComputedStyle(document.body).fontFamily;
    window.Chart.defaults.color = "#4b5563";
    view.chart = new window.Chart($("chart"), { type: "line", data: { datasets }, options: chartOptions() });
  } else {
    view.chart.data.datasets = datasets;
  }
  const { options } = view.chart;
  options.scales.x.min = query.start;
  options.scales.x.max = query.end;
  // Raw answers can hold many thousands of points per series: let Chart.js thin them for drawing.
  options.plugins.decimation.enabled = query.rollup === "raw";
  options.scales.y.display = datasets.some((dataset) => dataset.data.length > 0);
  view.chart.update("none");
}

// ---------------------------------------------------------------- table

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

function buildRows() {
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
  for (const value of values) cell(tr, formatNumber(value), "num");
  return tr;
}

function renderTable() {
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

// ---------------------------------------------------------------- page state

function render(background) {
  const { query, result, anomalies } = view;
  if (!background) view.page = 0;
  view.rows = buildRows();
  const points = view.rows.length;
  const rollupText = query.rollup === "raw" ? "raw" : `${query.rollup} avg`;
  const auto = state.rollup === "auto" ? " (auto)" : "";
  $("chart-title").textContent = `${result.metric_name} · ${rollupText}${auto}`;
  const parts = [`${result.series.length} series`, `${points.toLocaleString()} points`];
  if (anomalies) {
    const found = anomalies.series.reduce((sum, s) => sum + s.anomalies.length, 0);
    parts.push(`${found} ${found === 1 ? "anomaly" : "anomalies"}`);
  }
  if (query.rollup === "raw" && points >= RAW_LIMIT) parts.push(`cut at ${RAW_LIMIT.toLocaleString()}: pick a rollup`);
  $("summary").textContent = parts.join(" · ");
  if (points) $("empty").hidden = true;
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

function clearData(title, hint) {
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

function showNoMetrics() {
  clearData("No metrics yet", "Send samples to POST /metrics/ingest or POST /backfill/import.");
  $("chart-title").textContent = "No metrics yet";
}

function showError(err) {
  view.error = err.message;
  const box = $("error");
  const needsKey = err.status === 401 || err.status === 403;
  box.textContent = err.message + (needsKey ? " Set an API key (top right)." : "");
  box.hidden = false;
  if (needsKey) $("apikey-box").open = true;
}

function clearError() {
  view.error = null;
  $("error").hidden = true;
  $("error").textContent = "";
}

function setStatus(text) {
  $("status").textContent = text;
}

function updateStatus() {
  if (view.error) return setStatus("");
  const every = state.refresh === "off" ? "" : ` · refreshing every ${state.refresh}`;
  setStatus(view.result ? `Updated ${timeFmt.format(Date.now())}${every}` : "");
}

// ---------------------------------------------------------------- controls

function fillMetricSelect() {
  const select = $("metric");
  const names = [...view.names];
  if (state.metric && !names.includes(state.metric)) names.unshift(state.metric);
  select.replaceChildren(...names.map((name) => {
    const option = document.createElement("option");
    option.value = name;
    option.textContent = view.names.includes(name) ? name : `${name} (not found)`;
    return option;
  }));
  if (!names.length) {
    const option = document.createElement("option");
    option.textContent = "(no metrics yet)";
    option.value = "";
    select.append(option);
  }
  select.value = state.metric;
}

function syncControls() {
  fillMetricSelect();
  $("range").value = state.range;
  $("rollup").value = state.rollup;
  $("filter").value = state.filter;
  $("anomalies").checked = state.anomalies;
  $("threshold").value = String(state.threshold);
  $("threshold").disabled = !state.anomalies;
  $("refresh").value = state.refresh;
}

function readControls() {
  const threshold = Number($("threshold").value);
  return {
    metric: $("metric").value, range: $("range").value, rollup: $("rollup").value,
    filter: $("filter").value.trim(), anomalies: $("anomalies").checked,
    threshold: Number.isFinite(threshold) && threshold > 0 ? threshold : state.threshold,
    refresh: $("refresh").value,
  };
}

function restartTimer() {
  window.clearInterval(view.timer);
  const every = REFRESH[state.refresh];
  if (!every) return;
  view.timer = window.setInterval(async () => {
    if (document.hidden || view.busy) return;
    if (!state.metric) await loadNames(); // waiting for the first metric to arrive
    load({ background: true });
  }, every);
}

function applyControls(force) {
  const next = readControls();
  const changed = Object.keys(next).some((key) => next[key] !== state[key]);
  if (!changed && !force) return;
  Object.assign(state, next);
  $("threshold").disabled = !state.anomalies;
  writeUrl(true);
  restartTimer();
  load();
}

function setupApiKey() {
  const input = $("apikey");
  const summary = $("apikey-summary");
  const show = () => {
    input.value = storedKey();
    summary.textContent = input.value ? "API key ✓" : "API key";
  };
  const save = (key) => {
    storeKey(key);
    show();
    $("apikey-box").open = false;
    loadNames().then(() => load());
  };
  $("apikey-form").addEventListener("submit", (event) => {
    event.preventDefault();
    save(input.value.trim());
  });
  $("apikey-clear").addEventListener("click", () => save(""));
  show();
}

function setupControls() {
  const form = $("controls");
  form.addEventListener("change", () => applyControls(false));
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    applyControls(true);
    loadNames(); // pick up metrics created since the page was opened
  });
  $("prev").addEventListener("click", () => {
    view.page = Math.max(0, view.page - 1);
    renderTable();
  });
  $("next").addEventListener("click", () => {
    view.page += 1;
    renderTable();
  });
  window.addEventListener("popstate", () => {
    Object.assign(state, readUrl());
    syncControls();
    restartTimer();
    load();
  });
}

async function start() {
  if (!window.Chart) {
    $("assets-notice").hidden = false;
    document.querySelector(".chart-wrap").hidden = true;
  }
  Object.assign(state, readUrl());
  setupApiKey();
  setupControls();
  syncControls();
  await loadNames();
  syncControls();
  restartTimer();
  view.reload = () => load();
  await load();
}

start();
