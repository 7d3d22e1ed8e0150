// The console's only way to the server: the public HTTP API. Reads carry the read token (when
// the server needs one); the admin token is sent to the admin endpoints only (recover, run).
// Both live in sessionStorage: gone when the tab closes.

import { byId } from "./dom.js";

const READ = "tocsin.read_token";
const ADMIN = "tocsin.admin_token";

export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

function headers(token) {
  const hs = { Accept: "application/json" };
  if (token) hs.Authorization = "Bearer " + token;
  return hs;
}

async function errorOf(res) {
  let msg = res.status + " " + res.statusText;
  try {
    const body = await res.json();
    if (body && body.error) msg = body.error.message || body.error;
    else if (body && body.message) msg = body.message;
  } catch (_) {
    /* not JSON */
  }
  return new ApiError(res.status, String(msg));
}

let pendingAsk = null;
/** Asks for a token in the page's dialog; resolves to the token, or null when cancelled. */
export function askToken(title, why) {
  if (pendingAsk) return pendingAsk;
  const dlg = byId("token-dialog");
  byId("token-title").textContent = title;
  byId("token-why").textContent = why;
  const input = byId("token-input");
  input.value = "";
  pendingAsk = new Promise((resolve) => {
    dlg.addEventListener(
      "close",
      () => {
        pendingAsk = null;
        resolve(dlg.returnValue === "ok" && input.value ? input.value : null);
      },
      { once: true },
    );
  });
  dlg.showModal();
  input.focus();
  return pendingAsk;
}

/** GET a read endpoint as JSON; asks for the read token once when the server wants one. */
export async function read(path) {
  for (let attempt = 0; attempt < 3; attempt++) {
    const sent = sessionStorage.getItem(READ);
    const res = await fetch(path, { headers: headers(sent) });
    if (res.ok) return res.json();
    if (res.status === 401 || res.status === 403) {
      // Another request may have got a token meanwhile: try that before asking again.
      const now = sessionStorage.getItem(READ);
      if (now && now !== sent) continue;
      sessionStorage.removeItem(READ);
      const t = await askToken(
        "Read token",
        "This server needs a token to show events and issues (its read_token).",
      );
      if (!t) throw await errorOf(res);
      sessionStorage.setItem(READ, t);
      continue;
    }
    throw await errorOf(res);
  }
  throw new ApiError(403, "the token was refused");
}

/** POST JSON to an admin endpoint with the admin token (asked once per tab). */
export async function admin(path, body) {
  for (let attempt = 0; attempt < 3; attempt++) {
    let token = sessionStorage.getItem(ADMIN);
    if (!token) {
      token = await askToken("Admin token", "Recovering issues and running monitors need the admin token.");
      if (!token) throw new ApiError(401, "cancelled: no admin token");
      sessionStorage.setItem(ADMIN, token);
    }
    const init = { method: "POST", headers: headers(token) };
    if (body !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    const res = await fetch(path, init);
    if (res.ok) return res.json();
    if (res.status === 401 || res.status === 403) {
      sessionStorage.removeItem(ADMIN);
      continue;
    }
    throw await errorOf(res);
  }
  throw new ApiError(403, "the admin token was refused");
}

/**
 * Follows /api/v1/events/stream with the filter `params` (URLSearchParams), calling
 * `onEvent(event)` for each new event; reconnects after a drop. Returns a function that stops it.
 * (EventSource cannot send a token header, so this reads the stream with fetch.)
 */
export function follow(params, onEvent, onState) {
  const ctl = new AbortController();
  let delay = 1000;
  const run = async () => {
    while (!ctl.signal.aborted) {
      try {
        const res = await fetch("/api/v1/events/stream?" + params, {
          headers: headers(sessionStorage.getItem(READ)),
          signal: ctl.signal,
        });
        if (!res.ok) throw await errorOf(res);
        onState && onState(true);
        delay = 1000;
        const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
        let buf = "";
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          buf += value;
          let i;
          while ((i = buf.indexOf("\n\n")) >= 0) {
            const block = buf.slice(0, i);
            buf = buf.slice(i + 2);
            let kind = "message";
            const data = [];
            for (const line of block.split("\n")) {
              if (line.startsWith("event:")) kind = line.slice(6).trim();
              else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
            }
            if (kind === "event" && data.length) {
              try {
                onEvent(JSON.parse(data.join("\n")));
              } catch (e) {
                console.warn("bad stream event", e);
              }
            }
          }
        }
      } catch (e) {
        if (ctl.signal.aborted) return;
      }
      onState && onState(false);
      await new Promise((r) => setTimeout(r, delay));
      delay = Math.min(delay * 2, 30000);
    }
  };
  run();
  return () => ctl.abort();
}
