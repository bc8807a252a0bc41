// The anomaly detector's events (shaded spans) and firing alerts (dashed lines) on the chart:
// a Chart.js plugin drawing behind the lines. Its own module so the chart module stays small.

import { labelText } from "./format.js";
import { view } from "./state.js";

export const EVENT_COLORS = {
  spike: "rgba(220, 38, 38, 0.16)", dip: "rgba(220, 38, 38, 0.16)",
  level_shift: "rgba(234, 88, 12, 0.18)", deviation: "rgba(234, 88, 12, 0.14)",
  variance_change: "rgba(147, 51, 234, 0.16)", flatline: "rgba(75, 85, 99, 0.16)",
  missing: "rgba(75, 85, 99, 0.12)",
};
const ALERT_COLOR = "#b91c1c";
const MIN_WIDTH = 4; // px: an event of one point still shows

// The events of the loaded anomaly answer, as {start, end, kind, score, series}.
export function eventSpans() {
  if (!view.anomalies) return [];
  return view.anomalies.series.flatMap((series) => (series.events ?? []).map((e) => ({
    start: Date.parse(e.start), end: Date.parse(e.end), kind: e.kind, score: e.score,
    series: labelText(series.labels),
  })));
}

// Firing alerts of the shown metric, as {at, name, labels}.
export function alertMarks() {
  return (view.alerts ?? []).filter((a) => a.state === "firing" && a.fired_at)
    .map((a) => ({ at: Date.parse(a.fired_at), name: a.labels.alertname ?? a.rule, labels: a.labels }));
}

function drawSpans(chart) {
  const { ctx, chartArea: area, scales: { x } } = chart;
  let drawn = 0;
  for (const span of eventSpans()) {
    const left = Math.max(area.left, x.getPixelForValue(span.start));
    const right = Math.min(area.right, x.getPixelForValue(span.end));
    if (right < area.left || left > area.right) continue;
    const width = Math.max(MIN_WIDTH, right - left);
    ctx.fillStyle = EVENT_COLORS[span.kind] ?? EVENT_COLORS.spike;
    ctx.fillRect(Math.min(left, area.right - width), area.top, width, area.bottom - area.top);
    drawn += 1;
  }
  return drawn;
}

function drawAlerts(chart) {
  const { ctx, chartArea: area, scales: { x } } = chart;
  let drawn = 0;
  ctx.save();
  ctx.strokeStyle = ALERT_COLOR;
  ctx.fillStyle = ALERT_COLOR;
  ctx.setLineDash([5, 4]);
  ctx.font = "11px sans-serif";
  for (const mark of alertMarks()) {
    const at = Math.max(area.left, x.getPixelForValue(mark.at));
    if (at > area.right) continue;
    ctx.beginPath();
    ctx.moveTo(at, area.top);
    ctx.lineTo(at, area.bottom);
    ctx.stroke();
    ctx.fillText(`⚑ ${mark.name}`, Math.min(at + 3, area.right - 80), area.top + 12 + 13 * drawn);
    drawn += 1;
  }
  ctx.restore();
  return drawn;
}

export const eventsPlugin = {
  id: "anomalyEvents",
  beforeDatasetsDraw(chart) {
    const ctx = chart.ctx;
    ctx.save();
    const events = drawSpans(chart);
    ctx.restore();
    view.drawn = { events, alerts: drawAlerts(chart) };
  },
};
