// The form controls <-> the selection in `state`.

import { $, state, view } from "./state.js";

export function fillMetricSelect() {
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

export function syncControls() {
  fillMetricSelect();
  $("range").value = state.range;
  $("rollup").value = state.rollup;
  $("filter").value = state.filter;
  $("anomalies").checked = state.anomalies;
  $("threshold").value = String(state.threshold);
  $("threshold").disabled = !state.anomalies;
  $("refresh").value = state.refresh;
  $("expr").value = state.expr;
  $("controls").classList.toggle("promql-mode", Boolean(state.expr));
}

export function readControls() {
  const threshold = Number($("threshold").value);
  return {
    metric: $("metric").value, range: $("range").value, rollup: $("rollup").value,
    filter: $("filter").value.trim(), anomalies: $("anomalies").checked,
    threshold: Number.isFinite(threshold) && threshold > 0 ? threshold : state.threshold,
    refresh: $("refresh").value, expr: $("expr").value.trim(),
  };
}
