// Events: the live list with its filters and server-side paging, and one event's page (every
// df_ field, the dimension tags, df_event_detail as a table, the chart of the object).

import { h, fill, toast } from "./dom.js";
import { read, follow } from "./api.js";
import { time, duration, tagPairs, num, STATUSES, nowSecs } from "./format.js";
import { lineChart } from "./chart.js";

const PAGE = 50;
const FILTERS = ["status", "source", "monitor", "tag", "q", "from", "to", "ref"];

export function statusBadge(status) {
  return h("span", { class: "badge st-" + status }, status || "?");
}

export function tagChips(text) {
  return h("span", { class: "tags" }, tagPairs(text).map(([k, v]) => h("span", { class: "tag" }, k + ":" + v)));
}

function toLocalInput(secs) {
  if (!secs) return "";
  const d = new Date(secs * 1000 - new Date().getTimezoneOffset() * 60000);
  return d.toISOString().slice(0, 16);
}

function fromLocalInput(v) {
  return v ? String(Math.floor(new Date(v).getTime() / 1000)) : "";
}

function eventRow(ev) {
  return h("a", { class: "row event-row", href: "#/events/" + encodeURIComponent(ev.df_event_id), dataset: { id: ev.df_event_id } },
    h("span", { class: "cell when" }, time(ev.date)),
    h("span", { class: "cell" }, statusBadge(ev.df_status)),
    h("span", { class: "cell title" }, ev.df_title || "(no title)"),
    h("span", { class: "cell monitor" }, ev.df_monitor_checker_name || ev.df_monitor_checker_id || ev.df_source || ""),
    h("span", { class: "cell" }, tagChips(ev.df_dimension_tags)));
}

/** The list at #/events?filters. Returns a cleanup function (stops the live stream). */
export async function eventsView(main, params) {
  const offset = Number(params.get("offset") || 0);
  const filter = new URLSearchParams();
  for (const k of FILTERS) if (params.get(k)) filter.set(k, params.get(k));

  const field = (name, el) => h("label", { class: "field" }, name, el);
  const status = h("select", { name: "status" }, h("option", { value: "" }, "any"), STATUSES.map((st) => h("option", { value: st, selected: params.get("status") === st }, st)));
  const source = h("input", { name: "source", value: params.get("source") || "", placeholder: "monitor, custom…" });
  const monitor = h("input", { name: "monitor", value: params.get("monitor") || "", placeholder: "monitor id" });
  const tag = h("input", { name: "tag", value: params.get("tag") || "", placeholder: "host:web01,region:eu" });
  const q = h("input", { name: "q", type: "search", value: params.get("q") || "", placeholder: "text in title or message" });
  const from = h("input", { name: "from", type: "datetime-local", value: toLocalInput(Number(params.get("from"))) });
  const to = h("input", { name: "to", type: "datetime-local", value: toLocalInput(Number(params.get("to"))) });
  const form = h("form", { class: "filters", id: "event-filters", onsubmit: (e) => {
    e.preventDefault();
    const p = new URLSearchParams();
    const set = (k, v) => v && p.set(k, v);
    set("status", status.value); set("source", source.value.trim()); set("monitor", monitor.value.trim());
    set("tag", tag.value.trim()); set("q", q.value.trim()); set("from", fromLocalInput(from.value)); set("to", fromLocalInput(to.value));
    if (params.get("ref")) p.set("ref", params.get("ref"));
    location.hash = "#/events" + (p.toString() ? "?" + p : "");
  } },
    field("Status", status), field("Source", source), field("Monitor", monitor), field("Tags", tag),
    field("Text", q), field("From", from), field("To", to),
    h("div", { class: "field buttons" }, h("button", { type: "submit", class: "primary" }, "Filter"), h("a", { href: "#/events", class: "button" }, "Clear")));

  const live = h("span", { class: "live" }, "");
  const list = h("div", { class: "table events", id: "event-list" });
  const pager = h("div", { class: "pager" });
  fill(main, h("section", {}, h("div", { class: "head" }, h("h1", {}, "Events"), live), form,
    params.get("ref") ? h("p", { class: "muted" }, "Only the events of one object (", h("a", { href: "#/events" }, "show all"), ")") : "",
    list, pager));

  const page = new URLSearchParams(filter);
  page.set("limit", String(PAGE));
  page.set("offset", String(offset));
  let shown = [];
  try {
    const r = await read("/api/v1/events?" + page);
    shown = r.events;
  } catch (e) {
    fill(list, h("p", { class: "error" }, "Cannot list events: " + e.message));
    return () => {};
  }
  const render = () => {
    fill(list, shown.length ? shown.map(eventRow) : h("p", { class: "muted empty" }, "No events match."));
  };
  render();
  const link = (label, off, on) => {
    const p = new URLSearchParams(filter);
    if (off) p.set("offset", String(off));
    return on ? h("a", { class: "button", href: "#/events?" + p }, label) : h("span", { class: "button disabled" }, label);
  };
  fill(pager, link("← Newer", Math.max(0, offset - PAGE), offset > 0),
    h("span", { class: "muted" }, `${offset + 1}–${offset + shown.length}`),
    link("Older →", offset + PAGE, shown.length === PAGE));

  if (offset > 0) {
    live.textContent = "paused on older pages";
    return () => {};
  }
  // Page one follows the stream: new events come in on top, the page keeps its length.
  return follow(filter, (ev) => {
    if (shown.some((x) => x.df_event_id === ev.df_event_id)) return;
    shown = [ev, ...shown].slice(0, PAGE);
    render();
    const row = list.querySelector(`[data-id="${CSS.escape(ev.df_event_id)}"]`);
    if (row) row.classList.add("fresh");
  }, (up) => {
    live.textContent = up ? "● live" : "○ reconnecting";
    live.className = "live " + (up ? "up" : "down");
  });
}

function detailTable(detail) {
  let v = detail;
  if (typeof v === "string") {
    try { v = JSON.parse(v); } catch (_) { return h("span", {}, v); }
  }
  if (v === null || typeof v !== "object") return h("span", {}, num(v));
  if (Array.isArray(v)) return h("span", {}, v.map((x) => (typeof x === "object" ? JSON.stringify(x) : num(x))).join(", "));
  return h("dl", { class: "kv inner" }, Object.entries(v).flatMap(([k, x]) => [h("dt", {}, k), h("dd", {}, detailTable(x))]));
}

const FIELD_ORDER = ["df_status", "df_title", "df_message", "date", "df_source", "df_monitor_checker_id", "df_monitor_checker_name", "df_dimension_tags", "df_event_detail", "df_issue_start_time", "df_issue_duration"];

function fieldValue(k, v) {
  if (k === "df_status" || k === "df_sub_status") return statusBadge(v);
  if (k === "df_dimension_tags") return tagChips(v);
  if (k === "df_event_detail") return detailTable(v);
  if ((k === "date" || k.endsWith("_time")) && typeof v === "number") return h("span", {}, time(v > 1e11 ? v / 1000 : v), h("span", { class: "muted" }, "  (" + v + ")"));
  if (k.endsWith("duration") && typeof v === "number") return h("span", {}, duration(v), h("span", { class: "muted" }, "  (" + v + " s)"));
  if (k === "df_monitor_checker_id") return h("a", { href: "#/monitors/" + encodeURIComponent(v) }, v);
  if (typeof v === "object") return h("code", {}, JSON.stringify(v));
  return h("span", { class: k === "df_message" ? "message" : "" }, String(v));
}

/** #/events/<id>: everything about one event. */
export async function eventView(main, id) {
  fill(main, h("p", { class: "muted" }, "Loading event…"));
  let ev;
  try {
    ev = await read("/api/v1/events/" + encodeURIComponent(id));
  } catch (e) {
    fill(main, h("p", { class: "error" }, "Cannot load event " + id + ": " + e.message));
    return;
  }
  const keys = Object.keys(ev).sort((a, b) => {
    const ia = FIELD_ORDER.indexOf(a), ib = FIELD_ORDER.indexOf(b);
    return (ia < 0 ? 99 : ia) - (ib < 0 ? 99 : ib) || a.localeCompare(b);
  });
  const chart = h("div", { id: "event-chart" });
  const ref = ev.df_monitor_checker_event_ref;
  fill(main, h("section", { class: "event-page" },
    h("div", { class: "head" }, statusBadge(ev.df_status), h("h1", { id: "event-title" }, ev.df_title || "(no title)")),
    ev.df_message ? h("p", { class: "message", id: "event-message" }, ev.df_message) : "",
    h("p", {}, h("a", { href: "#/events" }, "← all events"),
      ref ? h("a", { href: "#/events?ref=" + encodeURIComponent(ref) }, "events of this object") : "",
      ref ? h("a", { href: "#/issues?q=" + encodeURIComponent(ref) }, "its open issue") : ""),
    chart,
    h("h2", {}, "Fields"),
    h("dl", { class: "kv", id: "event-fields" }, keys.flatMap((k) => [h("dt", {}, k), h("dd", {}, fieldValue(k, ev[k]))]))));
  if (ev.df_monitor_checker_id) drawChart(chart, ev).catch((e) => fill(chart, h("p", { class: "muted" }, "No chart: " + e.message)));
}

async function drawChart(box, ev) {
  const m = await read("/api/v1/monitors/" + encodeURIComponent(ev.df_monitor_checker_id));
  if (!m.query) return;
  const end = ev.date - (m.delay || 0), start = end - (m.interval || 300);
  const span = Math.max(end - start, 60);
  const from = start - 4 * span;
  const to = Math.min(nowSecs(), end + 2 * span);
  const p = new URLSearchParams({ tags: ev.df_dimension_tags || "{}", from: String(from), to: String(Math.max(to, end + 1)) });
  const r = await read(`/api/v1/monitors/${encodeURIComponent(m.id)}/points?${p}`);
  // Thresholds compare Result; only for threshold rules is Result on the points' scale. The
  // detector kinds say in df_event_detail what they compared the values with: draw that.
  const thresholds = !m.kind || m.kind === "threshold" ? m.thresholds : detectorLines(ev);
  fill(box, h("h2", {}, "Values of ", m.query.field || m.query.promql || "", " (", r.source, ")"),
    lineChart(r.points, { from, to: Math.max(to, end + 1), window: [start, end], marker: ev.date, thresholds }),
    m.kind && m.kind !== "threshold" ? h("p", { class: "muted" }, `Rule kind ${m.kind}: Result is derived from these values; see df_event_detail.`) : "");
}

/** Lines on the points' scale from df_event_detail.detector: a band's edges, the past value a
 * change was measured against, a forecast's threshold. */
function detectorLines(ev) {
  let d;
  try {
    d = JSON.parse(ev.df_event_detail || "{}").detector;
  } catch (_) {
    return [];
  }
  if (!d || typeof d !== "object") return [];
  const line = (label, value) => (typeof value === "number" && isFinite(value) ? [{ status: "info", op: "", value, label: `${label} ${num(value)}` }] : []);
  if (d.kind === "range") return [...line("band upper", d.upper), ...line("band lower", d.lower)];
  if (d.kind === "mutation") return line("compared with", d.past);
  if (d.kind === "forecast") return line("forecast threshold", d.threshold);
  return [];
}

export function toastError(e) {
  toast(e.message, "error");
}
