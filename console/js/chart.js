// An object's values as an SVG line chart: the check's window shaded, the rule thresholds as
// dashed lines in their status colour, the event's time as a marker. No library: a few
// elements are all an on-call person needs to see why a rule fired.

import { s, h } from "./dom.js";
import { time, num } from "./format.js";

const W = 720, H = 240, L = 56, R = 12, T = 12, B = 28;

function ticks(lo, hi, n) {
  if (hi <= lo) return [lo];
  const raw = (hi - lo) / n;
  const mag = Math.pow(10, Math.floor(Math.log10(raw)));
  const step = [1, 2, 5, 10].map((m) => m * mag).find((st) => st >= raw) || raw;
  const out = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + 1e-9; v += step) out.push(v);
  return out;
}

/**
 * points: [[unixSecs, value], ...]; opts: {from, to, window: [a, b], marker, thresholds:
 * [{status, op, value, label?}]} (label: the line's text instead of "status op value").
 */
export function lineChart(points, opts) {
  const from = opts.from, to = opts.to;
  const values = points.map((p) => p[1]);
  for (const t of opts.thresholds || []) values.push(t.value);
  let lo = Math.min(...values), hi = Math.max(...values);
  if (!isFinite(lo) || !isFinite(hi)) (lo = 0), (hi = 1);
  if (lo === hi) (lo -= 1), (hi += 1);
  const pad = (hi - lo) * 0.08;
  lo -= pad;
  hi += pad;
  const x = (t) => L + ((t - from) / (to - from)) * (W - L - R);
  const y = (v) => T + (1 - (v - lo) / (hi - lo)) * (H - T - B);
  const svg = s("svg", { viewBox: `0 0 ${W} ${H}`, class: "chart", role: "img", "aria-label": "values of the object over time" });
  if (opts.window) {
    const [a, b] = opts.window;
    svg.append(s("rect", { x: x(a), y: T, width: Math.max(1, x(b) - x(a)), height: H - T - B, class: "window" }));
  }
  for (const v of ticks(lo, hi, 4)) {
    svg.append(s("line", { x1: L, x2: W - R, y1: y(v), y2: y(v), class: "grid" }));
    svg.append(s("text", { x: L - 6, y: y(v) + 4, class: "axis", "text-anchor": "end" }, num(v)));
  }
  const span = to - from;
  const tstep = [60, 300, 600, 1800, 3600, 7200, 21600, 43200, 86400].find((st) => span / st <= 6) || 86400 * 7;
  for (let t = Math.ceil(from / tstep) * tstep; t <= to; t += tstep) {
    svg.append(s("text", { x: x(t), y: H - 8, class: "axis", "text-anchor": "middle" }, time(t).slice(span > 86400 ? 5 : 11, 16)));
  }
  for (const th of opts.thresholds || []) {
    svg.append(s("line", { x1: L, x2: W - R, y1: y(th.value), y2: y(th.value), class: "threshold st-" + th.status }));
    svg.append(s("text", { x: W - R - 4, y: y(th.value) - 4, class: "axis st-" + th.status, "text-anchor": "end" }, th.label || `${th.status} ${th.op} ${num(th.value)}`));
  }
  if (points.length) {
    const d = points.map((p, i) => (i ? "L" : "M") + x(p[0]).toFixed(1) + " " + y(p[1]).toFixed(1)).join(" ");
    svg.append(s("path", { d, class: "line" }));
    if (points.length < 80) for (const p of points) svg.append(s("circle", { cx: x(p[0]), cy: y(p[1]), r: 2.5, class: "dot" }));
  }
  if (opts.marker) svg.append(s("line", { x1: x(opts.marker), x2: x(opts.marker), y1: T, y2: H - B, class: "marker" }));
  const legend = h("p", { class: "muted legend" },
    opts.window ? "Shaded: the check's window. " : "",
    opts.marker ? "Vertical line: the event. " : "",
    points.length ? `${points.length} points.` : "No points in this range.");
  return h("figure", { class: "chart-box" }, svg, legend);
}

/** Horizontal bars for {name: count}, largest first. */
export function bars(counts, onPick) {
  const entries = Object.entries(counts).sort((a, b) => b[1] - a[1]);
  const max = Math.max(1, ...entries.map((e) => e[1]));
  if (!entries.length) return h("p", { class: "muted" }, "No events in this range.");
  return h("div", { class: "bars" }, entries.map(([name, n]) => {
    const bar = h("span", { class: "bar st-" + name });
    bar.style.width = ((100 * n) / max).toFixed(1) + "%";
    return h("div", { class: "bar-row", onclick: onPick ? () => onPick(name) : undefined },
      h("span", { class: "bar-name", title: name }, name || "(none)"),
      h("span", { class: "bar-track" }, bar),
      h("span", { class: "bar-n" }, String(n)));
  }));
}
