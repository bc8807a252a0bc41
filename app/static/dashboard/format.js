// Formatting of numbers, times, label sets and the chart's time-axis ticks (browser locale and time zone).

export const timeFmt = new Intl.DateTimeFormat(undefined, { hour: "2-digit", minute: "2-digit" });
const dayFmt = new Intl.DateTimeFormat(undefined, { month: "short", day: "numeric" });
const FULL = {
  month: "short", day: "numeric", hour: "2-digit", minute: "2-digit", second: "2-digit",
};
const fullFmt = new Intl.DateTimeFormat(undefined, FULL);
const fullMsFmt = new Intl.DateTimeFormat(undefined, { ...FULL, fractionalSecondDigits: 3 });
const numberFmt = new Intl.NumberFormat(undefined, { maximumFractionDigits: 4 });

export function sortedLabels(labels) {
  return Object.entries(labels ?? {}).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
}

export function labelText(labels) {
  return sortedLabels(labels).map(([key, value]) => `${key}=${value}`).join(", ");
}

export function formatNumber(value) {
  return value === null || value === undefined ? "–" : numberFmt.format(value);
}

export function formatTime(ms) {
  return ms % 1000 ? fullMsFmt.format(ms) : fullFmt.format(ms);
}

const TICK_STEPS = [1, 2, 5, 10, 15, 30].map((m) => m * 60_000)
  .concat([1, 2, 3, 6, 12].map((h) => h * 3_600_000), [1, 2, 7].map((d) => d * 86_400_000));

// Tick positions on round local times (whole minutes, hours, local midnights).
export function timeTicks(min, max, count) {
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

export function tickLabel(ms) {
  const date = new Date(ms);
  const midnight = date.getHours() === 0 && date.getMinutes() === 0;
  return midnight ? dayFmt.format(ms) : timeFmt.format(ms);
}
