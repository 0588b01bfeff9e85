// What the timetable and report pages share: the admin's (or teacher's) token, given as ?token= once and kept
// for this tab (sessionStorage, then dropped from the address bar), and JSON requests that carry it.
import { setText } from "./i18n.js";

const TOKEN_KEY = "liveclass.school.token";

export function token() {
  const url = new URL(window.location.href);
  const given = url.searchParams.get("token");
  if (given) {
    try { sessionStorage.setItem(TOKEN_KEY, given); } catch { /* storage disabled: keep it in the URL */ return given; }
    url.searchParams.delete("token");
    history.replaceState(history.state, "", url);
    return given;
  }
  try { return sessionStorage.getItem(TOKEN_KEY) || ""; } catch { return ""; }
}

export class ApiError extends Error {
  constructor(status, reason) { super(reason || `HTTP ${status}`); this.status = status; }
}

export async function api(method, path, body = undefined) {
  const headers = { Accept: "application/json" };
  const tok = token();
  if (tok) headers.Authorization = `Bearer ${tok}`;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const r = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  if (!r.ok) throw new ApiError(r.status, (await r.text()).trim());
  return r.status === 204 ? null : r.json();
}

/** Monday 00:00 (local time) of the week holding `d`. */
export function weekStart(d) {
  const m = new Date(d.getFullYear(), d.getMonth(), d.getDate());
  m.setDate(m.getDate() - ((m.getDay() + 6) % 7));
  return m;
}

export function addDays(d, n) {
  const x = new Date(d);
  x.setDate(x.getDate() + n);
  return x;
}

/** A local date as YYYY-MM-DD (for <input type=date> and the page's address). */
export function ymd(d) {
  return `${d.getFullYear()}-${String(d.getMonth() + 1).padStart(2, "0")}-${String(d.getDate()).padStart(2, "0")}`;
}

/** Minutes this browser's clock is ahead of UTC (the server counts weeks on the school's clock). */
export function utcOffset() { return -new Date().getTimezoneOffset(); }

/** The page's status line (#status): a message, and an error one also for tests and operators. */
export function showStatus(m, kind = "") {
  const el = document.getElementById("status");
  setText(el, m);
  el.dataset.kind = kind;
  if (kind === "error" && window.liveclass) window.liveclass.error = el.textContent;
}
