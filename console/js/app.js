// The console's router: the part of the URL after # picks the view (#/events, #/events/<id>,
// #/issues, #/monitors, #/monitors/<id>, #/stats), so every page has a link (df_event_url
// points at #/events/<id>).

import { byId } from "./dom.js";
import { read } from "./api.js";
import { eventsView, eventView } from "./events.js";
import { issuesView } from "./issues.js";
import { monitorsView, monitorView } from "./monitors.js";
import { statsView } from "./stats.js";

let cleanup = null;

function setIssueCount(n) {
  const el = byId("issue-count");
  el.textContent = n ? String(n) : "";
  el.className = n ? "pill hot" : "pill";
}

async function route() {
  if (cleanup) {
    cleanup();
    cleanup = null;
  }
  const hash = location.hash.replace(/^#\/?/, "");
  const [path, query] = hash.split("?");
  const params = new URLSearchParams(query || "");
  const parts = path.split("/").filter(Boolean).map(decodeURIComponent);
  const view = parts[0] || "events";
  for (const a of byId("nav").querySelectorAll("a")) a.classList.toggle("on", a.dataset.view === view);
  const main = byId("main");
  window.scrollTo(0, 0);
  let c;
  if (view === "events" && parts[1]) c = await eventView(main, parts[1]);
  else if (view === "issues") c = await issuesView(main, params, setIssueCount);
  else if (view === "monitors" && parts[1]) c = await monitorView(main, parts[1]);
  else if (view === "monitors") c = await monitorsView(main);
  else if (view === "stats") c = await statsView(main, params);
  else c = await eventsView(main, params);
  cleanup = typeof c === "function" ? c : null;
  document.body.dataset.view = view;
  document.body.dataset.ready = "1";
}

window.addEventListener("hashchange", () => {
  document.body.dataset.ready = "";
  route();
});
route();
read("/api/v1/issues").then((r) => setIssueCount(r.issues.length), () => {});
