// Statistics: event counts by source, status, name, group and monitor over a chosen range,
// as bars; a bar opens the matching events.

import { h, fill } from "./dom.js";
import { read } from "./api.js";
import { bars } from "./chart.js";
import { nowSecs } from "./format.js";

const RANGES = [["1h", 3600], ["24h", 86400], ["7d", 7 * 86400], ["30d", 30 * 86400]];
const BY = [["status", "status"], ["source", "source"], ["monitor", "monitor"], ["name", "name"], ["group", "group"]];

/** #/stats?range=24h */
export async function statsView(main, params) {
  const range = params.get("range") || "24h";
  const secs = (RANGES.find((r) => r[0] === range) || RANGES[1])[1];
  const from = nowSecs() - secs;
  const boxes = BY.map(([by]) => h("div", { class: "stat", id: "stat-" + by }, h("h2", {}, "By " + by), h("p", { class: "muted" }, "…")));
  fill(main, h("section", {},
    h("div", { class: "head" }, h("h1", {}, "Statistics"),
      h("span", { class: "ranges" }, RANGES.map(([label]) => h("a", { class: ["chip", label === range && "on"], href: "#/stats?range=" + label }, label)))),
    h("p", { class: "muted", id: "stat-total" }, ""),
    h("div", { class: "stats" }, boxes)));
  await Promise.all(BY.map(async ([by, param], i) => {
    try {
      const r = await read("/api/v1/events/stats?" + new URLSearchParams({ by, from: String(from) }));
      if (by === "status") document.getElementById("stat-total").textContent = `${r.total} event(s) in the last ${range}.`;
      const pick = (name) => {
        // `name` and `group` have no list filter: those bars open the text search instead.
        const p = new URLSearchParams({ from: String(from) });
        if (["status", "source", "monitor"].includes(param)) p.set(param, name);
        else p.set("q", name);
        location.hash = "#/events?" + p;
      };
      fill(boxes[i], h("h2", {}, "By " + by), bars(r.counts, pick));
    } catch (e) {
      fill(boxes[i], h("h2", {}, "By " + by), h("p", { class: "error" }, e.message));
    }
  }));
}
