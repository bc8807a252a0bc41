// The queries behind the page: which data to ask for, and loading it (newest request wins).

import { api } from "./api.js";
import { buildPromQuery, fromMatrix } from "./promql.js";
import { fillMetricSelect } from "./controls.js";
import { parseFilter } from "./filter.js";
import { formatTime } from "./format.js";
import {
  clearData, clearError, render, setStatus, showError, showNoMetrics, updateStatus,
} from "./page.js";
import { MAX_BUCKETS, RANGES, RAW_LIMIT, WINDOWS, state, view } from "./state.js";
import { writeUrl } from "./url.js";

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
    start, end, rollup, base, path: rollup === "raw" ? "/query/raw" : "/query/rollup", params: data,
    anomalyParams: state.anomalies ? anomaly : null,
  };
}

// Data older than a retention is not in the answer: raw answers say from when raw samples are
// kept (`raw_retained_from`), rollup answers from when their buckets are (`retained_from`).
const retainedFrom = (body) => Date.parse(body.raw_retained_from ?? body.retained_from);

// The finest rollup coarser than the query's that retains the whole range, else the one that
// reaches back furthest into it, else null (nothing more of the range is retained).
async function rollupHolding(query, signal) {
  const windows = Object.keys(WINDOWS);
  let best = null;
  for (const window of windows.slice(windows.indexOf(query.rollup) + 1)) {
    const params = new URLSearchParams(query.base);
    params.set("window", window);
    const body = await api("/query/rollup", params, signal);
    const from = retainedFrom(body);
    if (from <= query.start) return { window, params, body, from };
    if (from <= query.end && (!best || from < best.from)) best = { window, params, body, from };
  }
  return best;
}

// When the range reaches back before what the chosen data keeps: with "auto", switch to the
// coarser rollup that holds the range; otherwise (and when none holds it) say why.
async function coverRetention(query, result, signal) {
  const from = retainedFrom(result);
  if (!(from > query.start)) return { result, notice: "" };
  const kept = query.rollup === "raw" ? "Raw samples" : `${query.rollup} rollups`;
  const since = `${kept} of ${state.metric} are kept from ${formatTime(from)} on`;
  if (query.rollup === "1h") return { result, notice: `${since}.` };
  if (state.rollup !== "auto") {
    return { result, notice: `${since}: pick a coarser rollup for earlier data.` };
  }
  const picked = await rollupHolding(query, signal);
  if (!picked || picked.from >= from) {
    return { result, notice: `${since}, and no coarser rollup reaches back further.` };
  }
  Object.assign(query, { rollup: picked.window, path: "/query/rollup", params: picked.params });
  if (query.anomalyParams) query.anomalyParams.set("window", picked.window);
  const partly = picked.from > query.start ? `, kept from ${formatTime(picked.from)} on` : "";
  return { result: picked.body, notice: `${since}: showing ${picked.window} rollups${partly}.` };
}

export async function loadNames() {
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

export async function load({ background = false } = {}) {
  const seq = ++view.seq;
  view.controller?.abort();
  const controller = new AbortController();
  view.controller = controller;
  view.busy = true;
  setStatus("Loading…");
  try {
    if (state.expr) {
      const query = buildPromQuery();
      view.query = query;
      const body = await api(query.path, query.params, controller.signal);
      if (seq !== view.seq) return;
      Object.assign(view, { result: fromMatrix(body), anomalies: null });
      clearError();
      render(background);
      return;
    }
    if (!state.metric) {
      if (view.error) clearData("Nothing to show", "The request failed: see the message above.");
      else showNoMetrics();
      return;
    }
    const query = buildQuery();
    view.query = query;
    const [answer, scored] = await Promise.all([
      api(query.path, query.params, controller.signal),
      query.anomalyParams
        ? api("/anomaly/detect", query.anomalyParams, controller.signal)
        : Promise.resolve(null),
    ]);
    const { result, notice } = await coverRetention(query, answer, controller.signal);
    const anomalies = query.anomalyParams?.has("window") && result !== answer
      ? await api("/anomaly/detect", query.anomalyParams, controller.signal)
      : scored;
    if (seq !== view.seq) return;
    Object.assign(view, { result, anomalies, notice });
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
