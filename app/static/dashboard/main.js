// The metrics dashboard: one metric at a time as a chart, a table and an anomaly overlay.
// Every selection lives in the query string, so a view can be shared by its URL.
// Plain ES modules, no build step; Chart.js (UMD, window.Chart) is served from /vendor/.
// This entry module wires the controls, the API key box, the auto-refresh timer and history.

import { storeKey, storedKey } from "./api.js";
import { readControls, syncControls } from "./controls.js";
import { load, loadNames } from "./queries.js";
import { $, REFRESH, state, view } from "./state.js";
import { renderTable } from "./table.js";
import { readUrl, writeUrl } from "./url.js";

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
  $("controls").classList.toggle("promql-mode", Boolean(state.expr));
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
