// Times, durations and statuses as people read them.

export const STATUSES = ["critical", "error", "warning", "nodata", "info", "ok", "nodata_ok", "nodata_as_ok", "manual_ok"];

/** Lower is worse: the order issues and groups sort by. */
export function severity(status) {
  const i = ["critical", "error", "warning", "nodata"].indexOf(status);
  return i < 0 ? 9 : i;
}

function pad(n) {
  return String(n).padStart(2, "0");
}

/** Unix seconds as local "YYYY-MM-DD HH:MM:SS". */
export function time(secs) {
  if (secs === undefined || secs === null) return "—";
  const d = new Date(secs * 1000);
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

/** Seconds as "3d 4h", "2h 5m", "4m 10s", "9s". */
export function duration(secs) {
  if (secs === undefined || secs === null || isNaN(secs)) return "—";
  secs = Math.max(0, Math.floor(secs));
  const d = Math.floor(secs / 86400), hr = Math.floor((secs % 86400) / 3600);
  const m = Math.floor((secs % 3600) / 60), s = secs % 60;
  if (d) return `${d}d ${hr}h`;
  if (hr) return `${hr}h ${m}m`;
  if (m) return `${m}m ${s}s`;
  return `${s}s`;
}

/** "5m ago" / "in 20s" relative to now. */
export function relative(secs) {
  if (secs === undefined || secs === null) return "—";
  const diff = secs - Date.now() / 1000;
  return diff >= 0 ? "in " + duration(diff) : duration(-diff) + " ago";
}

export function nowSecs() {
  return Math.floor(Date.now() / 1000);
}

/** A JSON text of tags ({"host":"web01"}) as [key, value] pairs; anything else as no tags. */
export function tagPairs(text) {
  if (!text) return [];
  try {
    const o = typeof text === "string" ? JSON.parse(text) : text;
    return o && typeof o === "object" ? Object.entries(o).map(([k, v]) => [k, String(v)]) : [];
  } catch (_) {
    return [];
  }
}

/** A number for people: at most 4 significant digits after the point. */
export function num(v) {
  if (typeof v !== "number") return String(v);
  if (Number.isInteger(v)) return String(v);
  return String(Math.round(v * 1e4) / 1e4);
}
