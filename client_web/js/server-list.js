// Which classroom server this page talks to, and where it goes when that server dies.
//
// A page starts on the server it was loaded from (or the first of `?servers=url1,url2`). It asks that server for
// the cluster's live nodes (GET /api/cluster/nodes) at start and every 30 s. When its server stops answering —
// a request fails with a network error, the room WebSocket closes abnormally and a probe fails too, or POSTs get
// 5xx answers many times in a row — it moves to the next live node of the list: every later WHIP/WHEP POST,
// session request, /api/ice-servers and room WebSocket goes to that node's base URL (any node serves any room).
// One list per page (module state): the page's players, publishers and socket all follow the same server.

import { msg } from "./i18n.js";

const REFRESH_MS = 30000;
const FETCH_TIMEOUT_MS = 3000;
// a node that failed is skipped this long: another node lists it as live until its Redis key expires (3 s)
const FAILED_HOLD_MS = 15000;
// 5xx answers in a row (POSTs) before the server counts as broken; the cluster answers 502/503 for a few
// seconds while it re-places a dead node's room (every node alike), which must not make pages hop around
const FIVE_XX_LIMIT = 8;

const query = new URLSearchParams(window.location.search);
const explicit = parseServers(query.get("servers") || "");
let servers = explicit.length ? explicit : [{ id: null, url: window.location.origin }];
let current = servers[0];
const failedAt = new Map();  // node id (or URL before the id is known) -> performance.now() of its failure
const listeners = new Set();
let fiveXX = 0;
let ctx = null;              // { room, token } once started
let refreshTimer = 0;

function parseServers(text) {
  const out = [];
  for (const part of text.split(",")) {
    const url = baseOf(part.trim());
    if (url && !out.some((s) => s.url === url)) out.push({ id: url, url });
  }
  return out;
}

/** The origin (scheme://host:port) of a URL, relative ones against the page; null when it is not http(s). */
export function baseOf(url) {
  if (!url) return null;
  try {
    const u = new URL(url, window.location.href);
    return u.protocol === "http:" || u.protocol === "https:" ? u.origin : null;
  } catch {
    return null;
  }
}

const keyOf = (s) => s.id || s.url;

/** The base URL of the server in use now (no trailing slash). */
export function currentServer() { return current.url; }

/** A short label for status overlays: host:port, and the node id when the server told it (a msg(), i18n.js). */
export function serverLabel() {
  const host = new URL(current.url).host;
  return current.id && current.id !== current.url ? msg("common.server_node", { host, node: current.id }) : host;
}

/** An absolute URL on the server in use: serverUrl("/whep/room"). */
export function serverUrl(path) { return current.url + path; }

/** The same for a WebSocket (ws: or wss:). */
export function wsServerUrl(path) { return current.url.replace(/^http/, "ws") + path; }

/** Called with the server's base URL whenever the page moves (or learns the node id of its server). */
export function onServerChange(cb) {
  listeners.add(cb);
  return () => listeners.delete(cb);
}

function recentlyFailed(s, now) {
  const t = failedAt.get(keyOf(s));
  return t != null && now - t < FAILED_HOLD_MS;
}

/** The next server after the current one in list order, skipping those that failed lately; null if none. */
function nextServer(now) {
  const start = Math.max(0, servers.indexOf(current));
  const others = [];
  for (let i = 1; i <= servers.length; i += 1) {
    const s = servers[(start + i) % servers.length];
    if (s !== current && keyOf(s) !== keyOf(current)) others.push(s);
  }
  const fresh = others.find((s) => !recentlyFailed(s, now));
  if (fresh) return fresh;
  // every other one failed lately too: the one that failed longest ago has had the most time to come back
  return others.sort((a, b) => (failedAt.get(keyOf(a)) || 0) - (failedAt.get(keyOf(b)) || 0))[0] || null;
}

function notify() {
  for (const cb of listeners) {
    try { cb(current.url); } catch (e) { console.error("server change listener failed", e); }
  }
}

function moveTo(next, why) {
  const from = current.url;
  const probe = !recentlyFailed(next, performance.now());
  current = next;
  fiveXX = 0;
  console.warn(`classroom server ${from} ${why}: moving to ${next.url}`);
  notify();
  // the new server's view of the cluster (and a check that it answers); not for one that failed lately: when
  // every node is down, probing on each move would hop between them as fast as the network errors come
  if (probe) refresh();
}

/**
 * The server at `url` did not answer (network error, timeout). If it is the one in use, the page moves to the
 * next live node; returns whether it moved. Failures of a server the page already left change nothing.
 */
export function serverFailed(url, why = "does not answer") {
  if (baseOf(url) !== current.url) return false;
  const now = performance.now();
  failedAt.set(keyOf(current), now);
  const next = nextServer(now);
  if (!next) return false;  // nowhere else to go: keep trying this one
  moveTo(next, why);
  return true;
}

/** The server at `url` answered a POST with `status`: many 5xx in a row count as a failure. */
export function serverAnswered(url, status) {
  if (baseOf(url) !== current.url) return;
  if (status >= 500) {
    fiveXX += 1;
    if (fiveXX >= FIVE_XX_LIMIT) serverFailed(url, `answered ${status} ${fiveXX} times in a row`);
  } else {
    fiveXX = 0;
  }
}

function listUrl(base) {
  return `${base}/api/cluster/nodes?room=${encodeURIComponent(ctx ? ctx.room : "")}`;
}

/** Take the list a server gave: its own entry keeps the URL the page reaches it at (it may differ). */
function adopt(base, body) {
  if (!body || !Array.isArray(body.nodes)) return;
  const list = [];
  for (const n of body.nodes) {
    const url = n && n.id === body.self ? base : baseOf(n && n.url);
    if (url && typeof n.id === "string" && !list.some((s) => s.url === url || s.id === n.id)) {
      list.push({ id: n.id, url });
    }
  }
  if (!list.length || base !== current.url) return;  // the page moved meanwhile: that list is not about it
  const same = list.find((s) => s.url === current.url);
  const learned = same && same.id !== current.id;  // the node id of the server in use, for the overlays
  if (same) current = same;
  servers = list;
  if (learned) notify();
}

/**
 * Ask the server in use for the cluster's live nodes. A network error (or timeout) means it is gone: the page
 * moves on. Resolves with whether the server answered.
 */
export async function refresh() {
  if (!ctx || explicit.length) return true;  // an explicit ?servers= list is kept as given
  const base = current.url;
  const ctrl = new AbortController();
  const timer = setTimeout(() => ctrl.abort(), FETCH_TIMEOUT_MS);
  try {
    const r = await fetch(listUrl(base), {
      headers: { Authorization: `Bearer ${ctx.token}` }, signal: ctrl.signal, cache: "no-store",
    });
    if (r.ok) adopt(base, await r.json());
    else await r.text().catch(() => "");
    return true;
  } catch {
    serverFailed(base);
    return false;
  } finally {
    clearTimeout(timer);
  }
}

/**
 * The room WebSocket to `url` closed abnormally: is the server there, or only the socket gone? Probes it (the
 * node list); a network error moves the page. Resolves with whether the page now uses another server.
 */
export async function checkServer(url) {
  if (baseOf(url) !== current.url) return true;  // already moved
  if (!ctx) return false;
  const before = current.url;
  if (explicit.length) {  // no list to fetch: probe the server with a plain request
    try { await fetch(`${before}/healthz`, { mode: "no-cors", cache: "no-store" }); } catch { serverFailed(before); }
  } else {
    await refresh();
  }
  return current.url !== before;
}

/** Start: fetch the list now and every REFRESH_MS (once per page; later calls only return the state). */
export function startServerList({ room, token }) {
  if (!ctx) {
    ctx = { room, token };
    refresh();
    refreshTimer = setInterval(refresh, REFRESH_MS);
  }
  return { current: currentServer, label: serverLabel, servers: () => servers.map((s) => ({ ...s })) };
}

/** For tests and operators: stop refreshing. */
export function stopServerList() {
  clearInterval(refreshTimer);
}
