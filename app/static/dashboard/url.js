// The selection <-> the query string, so a view can be shared by its URL.

import { DEFAULTS, RANGES, REFRESH, ROLLUPS, state } from "./state.js";

export function readUrl() {
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
  next.expr = params.get("expr") ?? "";
  return next;
}

export function writeUrl(push) {
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
  if (state.expr) params.set("expr", state.expr);
  const url = `${window.location.pathname}?${params}`;
  if (url === window.location.pathname + window.location.search) return;
  if (push) window.history.pushState(null, "", url);
  else window.history.replaceState(null, "", url);
}
