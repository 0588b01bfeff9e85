// WHIP (publish) and WHEP (play) over plain HTTP + SDP, shared by the teacher and terminal pages.
//
// The server does not do trickle ICE (PATCH answers 405), so every offer is sent only once ICE gathering
// has completed, with all candidates in it. Sessions end with DELETE on the Location the server returned.
// Every request goes to the page's current server (server-list.js), which moves to another cluster node when
// this one stops answering: endpoint URLs are absolute, and network errors and 5xx are reported to it.
import { serverUrl, serverFailed, serverAnswered } from "./server-list.js";
import { has, msg } from "./i18n.js";

export class HttpError extends Error {
  constructor(status, reason) {
    super(reason || `HTTP ${status}`);
    this.name = "HttpError";
    this.status = status;
    this.reason = reason || `HTTP ${status}`;
  }
  // 4xx answers that will not change by retrying the same request (token, room name, rights).
  get permanent() {
    return [400, 401, 403, 413, 415].includes(this.status);
  }
}

export function pageParams() {
  const q = new URLSearchParams(window.location.search);
  return { room: q.get("room") || "", token: q.get("token") || "" };
}

export function newPeerConnection() {
  // No STUN by default: the server announces its own reachable addresses. One transport for everything.
  // TURN, when the server has some (GET /api/ice-servers), is added by negotiate() before the offer.
  return new RTCPeerConnection({ iceServers: [], bundlePolicy: "max-bundle", rtcpMuxPolicy: "require" });
}

const iceServersByRoom = new Map();  // room -> Promise<iceServers[]>, asked once per page and room

/** The TURN servers (time-limited credentials) the server hands out for `room`; [] when none or on any error. */
export function fetchIceServers(room, token, { timeoutMs = 2000 } = {}) {
  if (!room) return Promise.resolve([]);
  if (!iceServersByRoom.has(room)) {
    const t = withTimeout(timeoutMs);
    const p = fetch(serverUrl(`/api/ice-servers?room=${encodeURIComponent(room)}`), {
      headers: { "Authorization": `Bearer ${token}` }, signal: t.signal, cache: "no-store",
    })
      .then((r) => (r.ok ? r.json() : { iceServers: [] }))
      .then((body) => (Array.isArray(body && body.iceServers) ? body.iceServers : []))
      .catch(() => [])
      .finally(() => t.clear());
    p.then((servers) => { if (!servers.length) iceServersByRoom.delete(room); });  // ask again next time
    iceServersByRoom.set(room, p);
  }
  return iceServersByRoom.get(room);
}

function roomOfEndpoint(endpoint) {
  try {
    const m = new URL(endpoint, window.location.href).pathname.match(/^\/(?:whip|whep)\/([^/]+)/);
    return m ? decodeURIComponent(m[1]) : "";
  } catch {
    return "";
  }
}

async function addIceServers(pc, endpoint, token) {
  const servers = await fetchIceServers(roomOfEndpoint(endpoint), token);
  if (!servers.length) return;
  try {
    pc.setConfiguration({ iceServers: servers, bundlePolicy: "max-bundle", rtcpMuxPolicy: "require" });
  } catch (e) {
    console.warn("could not add the TURN servers", e);  // go on without: direct paths still work
  }
}

/** Resolves when ICE gathering is complete, or after timeoutMs with whatever has been gathered. */
export function iceGatheringComplete(pc, timeoutMs = 3000) {
  if (pc.iceGatheringState === "complete") return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      pc.removeEventListener("icegatheringstatechange", check);
      pc.removeEventListener("icecandidate", onCandidate);
      resolve();
    };
    const check = () => { if (pc.iceGatheringState === "complete") done(); };
    const onCandidate = (e) => { if (!e.candidate) done(); };
    const timer = setTimeout(done, timeoutMs);
    pc.addEventListener("icegatheringstatechange", check);
    pc.addEventListener("icecandidate", onCandidate);
  });
}

/** Put codecs whose MIME type is `mime` (e.g. "video/VP8") first, keeping the others as fallbacks. */
export function preferCodec(transceiver, kind, mime) {
  if (!transceiver.setCodecPreferences || !RTCRtpReceiver.getCapabilities) return;
  const caps = RTCRtpReceiver.getCapabilities(kind);
  if (!caps) return;
  const want = mime.toLowerCase();
  const first = caps.codecs.filter((c) => c.mimeType.toLowerCase() === want);
  if (!first.length) return;
  const rest = caps.codecs.filter((c) => c.mimeType.toLowerCase() !== want);
  try {
    transceiver.setCodecPreferences([...first, ...rest]);
  } catch (e) {
    console.warn("setCodecPreferences failed", e);
  }
}

async function readReason(response) {
  try {
    const text = (await response.text()).trim();
    return text || `${response.status} ${response.statusText}`;
  } catch {
    return `${response.status} ${response.statusText}`;
  }
}

function withTimeout(ms) {
  const ctrl = new AbortController();
  const timer = setTimeout(() => ctrl.abort(), ms);
  return { signal: ctrl.signal, clear: () => clearTimeout(timer) };
}

/**
 * Offer → (wait for ICE gathering) → POST endpoint → apply the answer.
 * Returns the session resource URL (absolute) to DELETE later. Throws HttpError with the server's
 * plain-text reason on a non-201 answer, or a TypeError/AbortError when the server cannot be reached.
 */
export async function negotiate(pc, endpoint, token, { timeoutMs = 10000 } = {}) {
  await addIceServers(pc, endpoint, token);
  const offer = await pc.createOffer();
  await pc.setLocalDescription(offer);
  await iceGatheringComplete(pc);
  const t = withTimeout(timeoutMs);
  let response;
  try {
    response = await fetch(endpoint, {
      method: "POST",
      headers: { "Content-Type": "application/sdp", "Authorization": `Bearer ${token}` },
      body: pc.localDescription.sdp,
      signal: t.signal,
      cache: "no-store",
    });
  } catch (e) {
    serverFailed(endpoint);  // no answer at all: the next attempt goes to another node
    throw e;
  } finally {
    t.clear();
  }
  serverAnswered(endpoint, response.status);
  if (response.status !== 201) {
    throw new HttpError(response.status, await readReason(response));
  }
  const location = response.headers.get("Location");
  const answer = await response.text();
  if (!location) throw new HttpError(response.status, "server answered without a Location header");
  const resource = new URL(location, new URL(endpoint, window.location.href)).href;
  try {
    await pc.setRemoteDescription({ type: "answer", sdp: answer });
  } catch (e) {
    // The server holds a session for us that we cannot use: release it before reporting.
    deleteSession(resource, token);
    throw i18nError(msg("common.err.sdp_answer", { detail: (e && e.message) || String(e) }));
  }
  return resource;
}

/** End a session (best effort; never throws). keepalive lets it run while the page unloads. */
export async function deleteSession(resource, token, { keepalive = false, timeoutMs = 3000 } = {}) {
  if (!resource) return false;
  const t = keepalive ? null : withTimeout(timeoutMs);
  try {
    const r = await fetch(resource, {
      method: "DELETE",
      headers: { "Authorization": `Bearer ${token}` },
      keepalive,
      signal: t ? t.signal : undefined,
    });
    await r.text().catch(() => "");  // read the (empty) body so the request completes cleanly
    return r.ok || r.status === 404;
  } catch {
    if (!keepalive) serverFailed(resource);
    return false;
  } finally {
    if (t) t.clear();
  }
}

/**
 * Whether a session is gone from the server: asked when the room WebSocket says the server went away (a
 * cluster node died or is draining), which is seconds before ICE notices. True on 404 (the room's node does
 * not know it), 502/503/504 (the room's node does not answer) or no answer at all; false while it is there
 * (and on answers that say nothing about it, such as 401).
 */
export async function sessionGone(resource, token, { timeoutMs = 2000 } = {}) {
  if (!resource) return true;
  const t = withTimeout(timeoutMs);
  try {
    const r = await fetch(resource, { headers: { "Authorization": `Bearer ${token}` }, signal: t.signal, cache: "no-store" });
    await r.text().catch(() => "");
    return [404, 410, 502, 503, 504].includes(r.status);
  } catch {
    serverFailed(resource);  // the session's server itself is gone: the new session goes to another node
    return true;
  } finally {
    t.clear();
  }
}

/** 502/503/504 or no answer: the server (or the room's node) is away for now; worth retrying soon. */
export function transientError(e) {
  return (e instanceof HttpError && [502, 503, 504].includes(e.status)) || e instanceof TypeError
    || (e && e.name === "AbortError");
}

export function endpointUrl(kind, room) {
  return serverUrl(`/${kind}/${encodeURIComponent(room)}`);
}

/** An Error that says what it means as a msg() (describeError shows it in the page's language). */
export function i18nError(m) {
  return Object.assign(new Error(m.key), { i18n: m });
}

/** A short description of any error thrown while connecting: a msg() (i18n.js), or the error's own text. An
 *  HTTP refusal reads by its status; English keeps the server's own words (`{reason}`). */
export function describeError(e) {
  if (e instanceof HttpError) {
    const key = `common.http.${e.status >= 500 ? "5xx" : e.status}`;
    return msg(has(key) ? key : "common.http.other", { reason: e.reason, status: e.status });
  }
  if (e && e.i18n) return e.i18n;
  if (e && e.name === "AbortError") return msg("common.err.timeout");
  if (e instanceof TypeError) return msg("common.err.unreachable");
  return (e && e.message) || String(e);
}

/** Sum up the stats of one peer connection by kind and direction (the fields the pages show). */
export async function mediaStats(pc) {
  const out = { inbound: {}, outbound: {} };
  if (!pc) return out;
  const report = await pc.getStats();
  report.forEach((s) => {
    if (s.type === "inbound-rtp") out.inbound[s.kind] = s;
    else if (s.type === "outbound-rtp" && !out.outbound[s.kind]) out.outbound[s.kind] = s;
  });
  return out;
}
