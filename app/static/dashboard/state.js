// Shared state of the metrics dashboard: the constants, the current selection (`state`) and
// `view`. Every module imports these same objects and changes them in place, never a copy.

export const RANGES = { "1h": 3_600_000, "24h": 86_400_000, "7d": 604_800_000 };
export const WINDOWS = { "1m": 60_000, "5m": 300_000, "1h": 3_600_000 };
export const ROLLUPS = ["auto", "raw", ...Object.keys(WINDOWS)];
export const REFRESH = { off: 0, "10s": 10_000, "1m": 60_000 };
export const DEFAULTS = Object.freeze({
  metric: "", range: "1h", rollup: "auto", filter: "", anomalies: false, threshold: 3, refresh: "off",
  expr: "",
});
export const RAW_LIMIT = 100_000; // points per raw query; reaching it means the answer was cut short
export const MAX_BUCKETS = 1_500; // "auto": the finest window giving at most this many points per series
export const PAGE_SIZE = 25;
export const KEY_STORAGE = "metrics-dashboard.api-key";
export const PALETTE = ["#2563eb", "#16a34a", "#9333ea", "#ea580c", "#0891b2", "#ca8a04", "#db2777",
  "#4f46e5", "#65a30d", "#0d9488", "#b45309", "#7c3aed"];
export const ANOMALY_COLOR = "#dc2626";

export const $ = (id) => document.getElementById(id);

export const state = { ...DEFAULTS };
// Everything the page currently shows; exposed as window.__dashboard for tests and debugging.
export const view = {
  state, chart: null, names: [], query: null, result: null, anomalies: null, rows: [], page: 0,
  seq: 0, loads: 0, busy: false, controller: null, timer: 0, error: null,
  notice: "", // why part of the range shows nothing: it is older than a retention
};
window.__dashboard = view;
