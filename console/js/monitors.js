// Monitors: schedule, last and next run, last error, open issues and "run now"; a monitor's
// page with its definition, thresholds and recent events.

import { h, fill, toast } from "./dom.js";
import { read, admin } from "./api.js";
import { relative, time, duration } from "./format.js";
import { statusBadge, tagChips } from "./events.js";

function schedule(m) {
  const s = m.schedule || {};
  return s.every ? "every " + s.every : s.cron ? "cron " + s.cron : "manual";
}

async function runNow(id, out) {
  try {
    out.textContent = "running…";
    const r = await admin("/api/v1/monitors/" + encodeURIComponent(id) + "/run");
    const n = (r.events || []).length;
    out.textContent = `ran: ${r.objects} object(s), ${n} event(s)` + ((r.errors || []).length ? ", errors: " + r.errors.join("; ") : "");
    toast(`${id}: ${n} event(s)`, "ok");
  } catch (e) {
    out.textContent = "failed: " + e.message;
    toast("Run failed: " + e.message, "error");
  }
}

/** #/monitors */
export async function monitorsView(main) {
  fill(main, h("p", { class: "muted" }, "Loading monitors…"));
  let r;
  try {
    r = await read("/api/v1/monitors");
  } catch (e) {
    fill(main, h("p", { class: "error" }, "Cannot list monitors: " + e.message));
    return;
  }
  const rows = r.monitors.map((m) => {
    const out = h("span", { class: "muted run-out" });
    return h("div", { class: "row monitor-row", dataset: { id: m.id } },
      h("a", { class: "cell title", href: "#/monitors/" + encodeURIComponent(m.id) }, m.name, m.name !== m.id ? h("span", { class: "muted" }, " " + m.id) : ""),
      h("span", { class: "cell" }, m.type, m.kind ? " · " + m.kind : ""),
      h("span", { class: "cell" }, schedule(m)),
      h("span", { class: "cell", title: time(m.last_run) }, "last ", relative(m.last_run)),
      h("span", { class: "cell", title: time(m.next_run) }, "next ", relative(m.next_run)),
      h("a", { class: ["cell", m.open_issues && "hot"], href: "#/issues?q=" + encodeURIComponent(m.id) }, `${m.open_issues || 0} open`),
      h("span", { class: "cell error-text" }, m.last_error || ""),
      h("span", { class: "cell" }, h("button", { class: "small run-now", onclick: () => runNow(m.id, out) }, "Run now"), out));
  });
  fill(main, h("section", {}, h("div", { class: "head" }, h("h1", {}, "Monitors"), h("span", { class: "pill" }, String(r.monitors.length))),
    (r.errors || []).length ? h("div", { class: "error" }, h("strong", {}, "Monitor files with errors:"), h("ul", {}, r.errors.map((e) => h("li", {}, e)))) : "",
    h("div", { class: "table monitors" }, rows)));
}

/** #/monitors/<id> */
export async function monitorView(main, id) {
  fill(main, h("p", { class: "muted" }, "Loading monitor…"));
  let m, evs;
  try {
    [m, evs] = await Promise.all([
      read("/api/v1/monitors/" + encodeURIComponent(id)),
      read("/api/v1/events?" + new URLSearchParams({ monitor: id, limit: "20" })),
    ]);
  } catch (e) {
    fill(main, h("p", { class: "error" }, "Cannot load monitor " + id + ": " + e.message));
    return;
  }
  const out = h("span", { class: "muted run-out" });
  const kv = (k, v) => [h("dt", {}, k), h("dd", {}, v)];
  fill(main, h("section", {},
    h("div", { class: "head" }, h("h1", {}, m.name), h("button", { class: "primary run-now", onclick: () => runNow(m.id, out) }, "Run now"), out),
    m.last_error ? h("p", { class: "error" }, "Last error: " + m.last_error) : "",
    h("dl", { class: "kv" },
      kv("id", m.id), kv("type", m.type + (m.kind ? " · " + m.kind : "")), kv("schedule", schedule(m)),
      kv("window", duration(m.interval) + (m.delay ? ", delay " + duration(m.delay) : "")),
      kv("last run", time(m.last_run) + " (" + relative(m.last_run) + ")"), kv("next run", time(m.next_run)),
      kv("runs", `${m.runs} (${m.errors} with errors, ${m.skipped_ticks} ticks skipped)`),
      kv("objects", m.objects === null ? "busy" : String(m.objects)),
      kv("open issues", h("a", { href: "#/issues?q=" + encodeURIComponent(m.id) }, String(m.open_issues === undefined ? "see issues" : m.open_issues))),
      m.rules ? kv("rules", h("ul", { class: "plain" }, Object.entries(m.rules).map(([k, v]) => h("li", {}, h("strong", {}, k), " ", h("code", {}, v))))) : "",
      kv("file", m.file)),
    h("h2", {}, "Definition"),
    h("pre", { class: "definition", id: "monitor-definition" }, m.definition || "(the file cannot be read)"),
    h("h2", {}, "Recent events"),
    h("div", { class: "table events" }, evs.events.length ? evs.events.map((ev) =>
      h("a", { class: "row event-row", href: "#/events/" + encodeURIComponent(ev.df_event_id) },
        h("span", { class: "cell when" }, time(ev.date)), h("span", { class: "cell" }, statusBadge(ev.df_status)),
        h("span", { class: "cell title" }, ev.df_title || ""), h("span", { class: "cell" }, ev.df_exec_mode || ""),
        h("span", { class: "cell" }, tagChips(ev.df_dimension_tags)))) : h("p", { class: "muted" }, "No events yet."))));
}
