// Unrecovered issues: counts per status, groups by monitor (collapsible, like karma's alert
// groups), durations that count up, sort and filter, and manual recovery of one issue, a
// selection or a whole group.

import { h, fill, byId, toast } from "./dom.js";
import { read, admin } from "./api.js";
import { duration, time, tagPairs, severity, nowSecs } from "./format.js";
import { statusBadge, tagChips } from "./events.js";

const SORTS = {
  duration: ["longest first", (a, b) => a.issue_start - b.issue_start],
  recent: ["newest first", (a, b) => b.issue_start - a.issue_start],
  severity: ["worst first", (a, b) => severity(a.status) - severity(b.status) || a.issue_start - b.issue_start],
};

function groupKey(i) {
  return i.monitor ? "monitor:" + i.monitor : "source:" + i.source;
}

function matches(i, q) {
  if (!q) return true;
  const hay = [i.title, i.message, i.monitor, i.source, i.event_ref, ...tagPairs(i.dimension_tags).map((p) => p.join(":"))].join("\n").toLowerCase();
  return q.toLowerCase().split(/\s+/).filter(Boolean).every((w) => hay.includes(w));
}

/** Asks who recovers and why, then recovers `refs`; resolves to the number recovered. */
export async function recoverRefs(refs, what) {
  const dlg = byId("recover-dialog");
  byId("recover-what").textContent = what;
  const name = byId("recover-name"), email = byId("recover-email"), msg = byId("recover-message");
  name.value = sessionStorage.getItem("tocsin.user_name") || "";
  email.value = sessionStorage.getItem("tocsin.user_email") || "";
  msg.value = "";
  const ok = await new Promise((resolve) => {
    dlg.addEventListener("close", () => resolve(dlg.returnValue === "ok"), { once: true });
    dlg.showModal();
    (name.value ? msg : name).focus();
  });
  if (!ok) return 0;
  sessionStorage.setItem("tocsin.user_name", name.value.trim());
  sessionStorage.setItem("tocsin.user_email", email.value.trim());
  const r = await admin("/api/v1/issues/recover", {
    refs,
    user_id: email.value.trim(),
    user_name: name.value.trim(),
    user_email: email.value.trim(),
    message: msg.value.trim() || undefined,
  });
  return r.recovered;
}

/** #/issues */
export async function issuesView(main, params, onChange) {
  const state = { q: params.get("q") || "", status: params.get("status") || "", sort: params.get("sort") || "duration", selected: new Set(), collapsed: new Set() };
  let issues = [];
  const counts = h("div", { class: "counts", id: "issue-counts" });
  const search = h("input", { type: "search", placeholder: "filter: text, monitor, host:web01…", value: state.q, id: "issue-filter" });
  const sort = h("select", { id: "issue-sort" }, Object.entries(SORTS).map(([k, [label]]) => h("option", { value: k, selected: k === state.sort }, label)));
  const recoverBtn = h("button", { class: "primary", id: "recover-selected", disabled: true }, "Recover selected");
  const groupsBox = h("div", { id: "issue-groups" });
  fill(main, h("section", {}, h("div", { class: "head" }, h("h1", {}, "Unrecovered issues")), counts,
    h("div", { class: "toolbar" }, search, sort, recoverBtn), groupsBox));

  const doRecover = async (refs, what) => {
    try {
      const n = await recoverRefs(refs, what);
      if (n) toast(`Recovered ${n} issue(s).`, "ok");
      refs.forEach((r) => state.selected.delete(r));
      await load();
    } catch (e) {
      toast("Recovery failed: " + e.message, "error");
    }
  };
  recoverBtn.addEventListener("click", () => doRecover([...state.selected], `${state.selected.size} selected issue(s)`));
  search.addEventListener("input", () => { state.q = search.value; render(); });
  sort.addEventListener("change", () => { state.sort = sort.value; render(); });

  function render() {
    const byStatus = {};
    for (const i of issues) byStatus[i.status] = (byStatus[i.status] || 0) + 1;
    fill(counts, h("button", { class: ["chip", !state.status && "on"], onclick: () => { state.status = ""; render(); } }, `all ${issues.length}`),
      Object.entries(byStatus).sort((a, b) => severity(a[0]) - severity(b[0])).map(([st, n]) =>
        h("button", { class: ["chip", "st-" + st, state.status === st && "on"], dataset: { status: st }, onclick: () => { state.status = state.status === st ? "" : st; render(); } }, `${st} ${n}`)));
    const shown = issues.filter((i) => (!state.status || i.status === state.status) && matches(i, state.q));
    shown.sort(SORTS[state.sort][1]);
    const groups = new Map();
    for (const i of shown) {
      const k = groupKey(i);
      if (!groups.has(k)) groups.set(k, []);
      groups.get(k).push(i);
    }
    const ordered = [...groups.entries()].sort((a, b) => severity(a[1][0].status) - severity(b[1][0].status) || b[1].length - a[1].length);
    for (const [, list] of ordered) list.sort(SORTS[state.sort][1]);
    recoverBtn.disabled = state.selected.size === 0;
    recoverBtn.textContent = state.selected.size ? `Recover selected (${state.selected.size})` : "Recover selected";
    if (!shown.length) {
      fill(groupsBox, h("p", { class: "muted empty" }, issues.length ? "No issue matches the filter." : "Nothing is wrong: no open issues."));
      return;
    }
    fill(groupsBox, ordered.map(([key, list]) => {
      const src = key.slice(7);
      const label = key.startsWith("monitor:") ? key.slice(8) : src === "custom" ? "custom events" : "custom events from " + src;
      const worst = list.reduce((w, i) => (severity(i.status) < severity(w) ? i.status : w), "ok");
      const allSel = list.every((i) => state.selected.has(i.event_ref));
      const groupBox = h("input", { type: "checkbox", checked: allSel, "aria-label": "select the group", onclick: (e) => e.stopPropagation(), onchange: (e) => {
        for (const i of list) e.target.checked ? state.selected.add(i.event_ref) : state.selected.delete(i.event_ref);
        render();
      } });
      const det = h("details", { class: "group", open: !state.collapsed.has(key), dataset: { group: key } },
        h("summary", {}, groupBox, statusBadge(worst), h("strong", {}, label), h("span", { class: "pill" }, String(list.length)),
          h("button", { class: "small", onclick: (e) => { e.preventDefault(); doRecover(list.map((i) => i.event_ref), `all ${list.length} issue(s) of ${label}`); } }, "Recover group")),
        list.map((i) => h("div", { class: "row issue-row", dataset: { ref: i.event_ref } },
          h("input", { type: "checkbox", checked: state.selected.has(i.event_ref), "aria-label": "select", onchange: (e) => {
            e.target.checked ? state.selected.add(i.event_ref) : state.selected.delete(i.event_ref);
            render();
          } }),
          h("span", { class: "cell" }, statusBadge(i.status)),
          h("a", { class: "cell title", href: "#/events/" + encodeURIComponent(i.last_event_id) }, i.title || "(no title)"),
          h("span", { class: "cell tagcell" }, tagChips(i.dimension_tags)),
          h("span", { class: "cell dur", title: "since " + time(i.issue_start), dataset: { start: String(i.issue_start) } }, duration(nowSecs() - i.issue_start)),
          h("button", { class: "small", onclick: () => doRecover([i.event_ref], i.title || i.event_ref) }, "Recover"))));
      det.addEventListener("toggle", () => (det.open ? state.collapsed.delete(key) : state.collapsed.add(key)));
      return det;
    }));
  }

  async function load() {
    try {
      const r = await read("/api/v1/issues");
      issues = r.issues;
      const open = new Set(issues.map((i) => i.event_ref));
      for (const ref of [...state.selected]) if (!open.has(ref)) state.selected.delete(ref);
      onChange && onChange(issues.length);
      render();
    } catch (e) {
      fill(groupsBox, h("p", { class: "error" }, "Cannot list issues: " + e.message));
    }
  }
  await load();
  // Durations count up every second; the table reloads every 10 s (recoveries by others too).
  const tick = setInterval(() => {
    for (const el of groupsBox.querySelectorAll(".dur")) el.textContent = duration(nowSecs() - Number(el.dataset.start));
  }, 1000);
  const poll = setInterval(load, 10000);
  return () => { clearInterval(tick); clearInterval(poll); };
}
