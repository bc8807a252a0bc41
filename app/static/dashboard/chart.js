// The Chart.js line chart of the loaded series, with the anomaly overlay (Chart is the UMD global).

import { formatNumber, formatTime, labelText, tickLabel, timeTicks } from "./format.js";
import { $, ANOMALY_COLOR, PALETTE, state, view } from "./state.js";

function seriesDatasets(result, rollup) {
  return result.series.map((series, index) => {
    const color = PALETTE[index % PALETTE.length];
    // A stale marker, NaN or infinity arrives as value null: a gap that ends the line there.
    const data = series.points.map((point) => (rollup === "raw"
      ? { x: Date.parse(point.timestamp), y: point.value, special: point.special }
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
  return `${ctx.dataset.label}: ${raw.special ?? formatNumber(raw.y)}`;
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

export function renderChart() {
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
  // Raw answers can hold many thousands of points per series: let Chart.js thin them for drawing,
  // unless a line has gaps (its thinning would average them away and join the line again).
  const gaps = datasets.some((dataset) => dataset.data.some((point) => point.y === null));
  options.plugins.decimation.enabled = query.rollup === "raw" && !gaps;
  options.scales.y.display = datasets.some((dataset) => dataset.data.length > 0);
  view.chart.update("none");
}
