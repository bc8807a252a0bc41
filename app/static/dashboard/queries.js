// The queries behind the page: which data to ask for, and loading it (newest request wins).

import { api } from "./api.js";
import { buildPromQuery, fromMatrix } from "./promql.js";
import { fillMetricSelect } from "./controls.js";
import { parseFilter } from "./filter.js";
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
    start, end, rollup, path: rollup === "raw" ? "/query/raw" : "/query/rollup", params: data,
    anomalyParams: state.anomalies ? anomaly : null,
  };
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
