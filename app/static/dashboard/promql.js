// PromQL mode: the expression box's value over the selected range, from the Prometheus API
// (GET /api/v1/query_range), turned into the shape the chart and the table draw (raw points).

import { RANGES, state } from "./state.js";

export const TARGET_POINTS = 500; // per series: the step is the range divided by this

export function stepSeconds(spanMs) {
  return Math.max(1, Math.ceil(spanMs / 1000 / TARGET_POINTS));
}

export function buildPromQuery() {
  const step = stepSeconds(RANGES[state.range]);
  // Like Grafana: start and end on multiples of the step, so refreshes keep the same steps.
  const end = Math.floor(Date.now() / 1000 / step) * step;
  const start = end - Math.floor(RANGES[state.range] / 1000 / step) * step;
  const params = new URLSearchParams({
    query: state.expr, start: String(start), end: String(end), step: String(step),
  });
  return {
    promql: true, start: start * 1000, end: end * 1000, step, rollup: "raw",
    path: "/api/v1/query_range", params, anomalyParams: null,
  };
}

// "NaN", "+Inf" and "-Inf" end a line (value null) and are shown as they are in the table.
function point(timestamp, text) {
  const value = Number(text);
  const iso = new Date(timestamp * 1000).toISOString();
  return Number.isFinite(value) ? { timestamp: iso, value } : { timestamp: iso, value: null, special: text };
}

export function fromMatrix(body) {
  const result = body.data.result;
  const series = (body.data.resultType === "matrix" ? result : []).map((item) => ({
    labels: item.metric, points: item.values.map(([t, v]) => point(t, v)),
  }));
  return { metric_name: state.expr, series };
}
