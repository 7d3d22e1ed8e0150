// Building the page without HTML strings: every value from the server becomes a text node or
// an attribute set through setAttribute, so titles, messages and tags (which senders control)
// can never become markup or script.

const SVG_NS = "http://www.w3.org/2000/svg";

function safeHref(v) {
  const s = String(v);
  // Links stay inside the console or go to http(s) pages; never javascript: or data:.
  return s.startsWith("#") || s.startsWith("/") || /^https?:\/\//i.test(s) ? s : "#";
}

function setAttrs(el, attrs) {
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on")) {
      // Event handlers are functions passed in code, never attribute text.
      if (typeof v === "function") el.addEventListener(k.slice(2), v);
      continue;
    }
    if (k === "class") el.setAttribute("class", Array.isArray(v) ? v.filter(Boolean).join(" ") : v);
    else if (k === "href") el.setAttribute("href", safeHref(v));
    else if (k === "dataset") Object.assign(el.dataset, v);
    else el.setAttribute(k, v === true ? "" : String(v));
  }
}

function append(el, children) {
  for (const c of children.flat(Infinity)) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

/** An HTML element: h("a", {href: "#/x", class: "y"}, "text", child, ...). */
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  setAttrs(el, attrs);
  return append(el, children);
}

/** An SVG element, the same way. */
export function s(tag, attrs, ...children) {
  const el = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || k.startsWith("on")) continue;
    el.setAttribute(k, String(v));
  }
  return append(el, children);
}

/** Replaces the children of `el`. */
export function fill(el, ...children) {
  el.replaceChildren();
  return append(el, children);
}

export function byId(id) {
  return document.getElementById(id);
}

let toastTimer;
/** A short message at the bottom of the page. */
export function toast(text, kind) {
  const t = byId("toast");
  t.textContent = text;
  t.className = "show " + (kind || "");
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => (t.className = ""), 5000);
}
