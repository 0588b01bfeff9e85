// Classroom terminal (the big screen): plays the room's lesson with WHEP, full window, and keeps itself
// playing: it waits while the lesson is not live, and tears the session down (DELETE) and starts a new one
// when the link fails or the picture stops. The sessions and their checks are the WHEP player's
// (whep-player.js); this page adds the stall and idle limits, its retry policy and what the screen says.
import { pageParams, describeError, HttpError, sessionGone, transientError } from "./whip-client.js";
import { WhepPlayer, BACKOFF_MS, PERMANENT_RETRY_MS } from "./whep-player.js";
import { Backoff } from "./backoff.js";
import { startLesson } from "./terminal-lesson.js";
import { startServerList, onServerChange, serverLabel, currentServer } from "./server-list.js";
import { loadCatalogues, applyTranslations, mountLanguageSwitch, msg, setText, t } from "./i18n.js";

const STALL_MS = 4000;               // frames were being decoded and stopped this long → new session
const WAITING_AFTER_MS = 2500;       // connected, no frames yet: say the lesson has not started
const WAIT_RECYCLE_MS = 20000;       // connected, nothing ever arrived: start a fresh session anyway
// the room's server went away (a cluster node died or drains): another node takes the room within seconds,
// answering 502/503 until then; these first retries come quickly
const FAST_RETRY_MS = 500;
const FAST_RETRIES = 8;

const { room, token } = pageParams();
await loadCatalogues();
applyTranslations();
mountLanguageSwitch(document.getElementById("lang-slot"));
const query = new URLSearchParams(window.location.search);
// `?max=360`: this classroom never wants more than 360 lines (a small screen or a link known to be thin).
const MAX_HEIGHT = query.get("max") || "";
const STATS_MS = 2000;
const $ = (id) => document.getElementById(id);
const video = $("video");
const overlay = $("overlay");
const titleEl = $("overlay-title");
const detailEl = $("overlay-detail");
const badge = $("badge");
const soundHint = $("sound-hint");

const TITLES = {
  waiting: "terminal.state.waiting",
  live: "terminal.state.live",
  reconnecting: "terminal.state.reconnecting",
  error: "terminal.state.error",
};

// Debugging hook for tests and operators: the current peer connection and state (pc, sessions and resource
// are the player's, defined below).
const liveclass = (window.liveclass = { state: "waiting", detail: "", firstFrameMs: null, error: null });

let everLive = false;       // this page has shown the lesson at some point
let lessonOver = false;     // the room WebSocket said the lesson ended (until the next one starts)
let soundBlocked = false;   // autoplay with sound was refused: waiting for a key press or tap

/** `detail`: a msg() or plain text. */
function setState(state, detail = "") {
  if (liveclass.state === state && JSON.stringify(liveclass.detail) === JSON.stringify(detail)) return;
  liveclass.state = state;
  liveclass.detail = detail;
  document.body.dataset.state = state;
  setText(titleEl, msg(state === "waiting" && lessonOver ? "terminal.state.ended" : TITLES[state]));
  setText(detailEl, detail);
  liveclass.error = state === "error" ? detailEl.textContent : null;
  overlay.hidden = state === "live";
  badge.hidden = state !== "live";
  updateSoundHint();
}

function updateSoundHint() {
  soundHint.hidden = !(soundBlocked && liveclass.state === "live");
}

// --- playback -------------------------------------------------------------------------------------------

async function startPlayback() {
  if (!video.srcObject) return;
  video.muted = false;
  try {
    await video.play();
    soundBlocked = false;
  } catch (e) {
    if (e && e.name === "AbortError") return;  // a newer srcObject replaced this one
    // Autoplay with sound refused until the first user gesture: play muted (audio RTP flows anyway).
    soundBlocked = true;
    video.muted = true;
    try { await video.play(); } catch { /* replaced meanwhile */ }
  }
  updateSoundHint();
}

function userGesture() {
  if (soundBlocked || video.muted) {
    video.muted = false;
    video.play().then(() => { soundBlocked = false; updateSoundHint(); }).catch(() => {});
  }
  player.retryNow();  // waiting to retry: retry now
}

async function toggleFullscreen() {
  try {
    if (document.fullscreenElement) await document.exitFullscreen();
    else await document.documentElement.requestFullscreen();
  } catch { /* not allowed here */ }
}

async function keepScreenOn() {
  try {
    if ("wakeLock" in navigator && document.visibilityState === "visible") await navigator.wakeLock.request("screen");
  } catch { /* not supported or refused */ }
}

// --- the lesson's picture: the player's sessions, this page's limits and retry policy -------------------

const backoff = new Backoff(BACKOFF_MS);
let fastRetries = 0;  // quick retries left after the room's server went away

function firstFrame(s) {
  everLive = true;
  if (s.connectedAt) liveclass.firstFrameMs = Math.round(s.lastProgressAt - s.connectedAt);
  setState("live");
}

function checked(s, now) {
  if (!s.gotFrames && s.connectedAt && now - s.connectedAt > WAITING_AFTER_MS) {
    setState("waiting", msg(lessonOver ? "terminal.detail.next_lesson" : "terminal.detail.waiting_teacher"));
  }
}

/** How long to wait after a session ended (why: outcome.reason), and what the screen says meanwhile. */
function retryDelay(outcome) {
  if (outcome.reason === "refused") {
    const e = outcome.error;
    const reason = describeError(e);
    if (e instanceof HttpError && e.permanent) {
      setState("error", msg("terminal.detail.refused", { reason, s: PERMANENT_RETRY_MS / 1000 }));
      return PERMANENT_RETRY_MS;
    }
    if (fastRetries > 0 && transientError(e)) {
      fastRetries -= 1;
      setState(everLive ? "reconnecting" : "waiting", msg("terminal.detail.moving"));
      return FAST_RETRY_MS;
    }
    const delay = backoff.next();
    const s = Math.round(delay / 1000);
    const key = e instanceof HttpError ? "terminal.detail.answered_retry" : "terminal.detail.failed_retry";
    setState(everLive ? "reconnecting" : "waiting", msg(key, { reason, s }));
    return delay;
  }
  if (outcome.reason === "server-gone") {
    backoff.reset();
    fastRetries = FAST_RETRIES;
    setState("reconnecting", msg("terminal.detail.server_gone"));
    return 0;
  }
  if (outcome.reason === "stalled") {
    backoff.reset();
    setState("reconnecting", msg("terminal.detail.stalled"));
    return 300;
  }
  if (outcome.reason === "lesson-ended") {
    backoff.reset();
    // the server closed the teacher's publisher: wait for the next lesson in a fresh session
    setState("waiting", msg("terminal.detail.next_lesson"));
    return 1000;
  }
  if (outcome.reason === "idle") {
    backoff.reset();
    return 300;  // a healthy session that carried nothing: just start a fresh one
  }
  if (outcome.gotFrames) backoff.reset();
  const delay = backoff.next();
  setState(everLive ? "reconnecting" : "waiting", msg("terminal.detail.lost", { s: Math.round(delay / 1000) }));
  return delay;
}

const player = new WhepPlayer({
  room, token, video, query: MAX_HEIGHT ? { max: MAX_HEIGHT } : {},
  play: startPlayback, stallMs: STALL_MS, idleMs: WAIT_RECYCLE_MS, onFirstFrame: firstFrame, onCheck: checked,
  retryDelay,
});
for (const key of ["pc", "sessions", "resource"]) {
  Object.defineProperty(liveclass, key, { get: () => player[key], enumerable: true });
}

// The room WebSocket closed with 1001 (going away) or abnormally: the server of our session may be gone (a
// cluster node died: the proxied socket closes at once, while ICE and the stall check take seconds). Ask the
// server about the session; if it is gone, start a new one now.
async function serverWentAway(code) {
  const s = player.session;
  if (!s || !s.watching || (code !== 1001 && code !== 1006)) return;
  if (await sessionGone(s.resource, token) && player.session === s && s.watching) {
    s.gone = true;
    s.end("server-gone");
  }
}

// --- status overlay (S key or ?stats=1): what this classroom receives and what the server chose ---------

const statsBox = $("stats");
let statsTimer = 0;
let lastInbound = null;

function fmtRate(bps) {
  if (bps == null) return "–";
  return bps >= 1e6 ? `${(bps / 1e6).toFixed(2)} Mbit/s` : `${Math.round(bps / 1e3)} kbit/s`;
}

async function serverView(resource) {
  try {
    const r = await fetch(resource, { headers: { Authorization: `Bearer ${token}` }, cache: "no-store" });
    return r.ok ? await r.json() : null;
  } catch { return null; }
}

async function refreshStats() {
  const pc = liveclass.pc;
  const lines = [];
  if (pc && pc.connectionState !== "closed") {
    let v = null;
    try { (await pc.getStats()).forEach((s) => { if (s.type === "inbound-rtp" && s.kind === "video") v = s; }); } catch { /* closed */ }
    if (v) {
      let bps = null;
      if (lastInbound && v.timestamp > lastInbound.timestamp) {
        bps = (8 * (v.bytesReceived - lastInbound.bytesReceived) * 1000) / (v.timestamp - lastInbound.timestamp);
      }
      lastInbound = v;
      const lossPct = v.packetsReceived ? (100 * (v.packetsLost || 0)) / (v.packetsReceived + (v.packetsLost || 0)) : 0;
      lines.push(t("terminal.stats.inbound", {
        size: `${v.frameWidth || "?"}×${v.frameHeight || "?"}`, fps: Math.round(v.framesPerSecond || 0), rate: fmtRate(bps),
        loss: lossPct.toFixed(1),
      }));
    }
  }
  const resource = liveclass.resource;
  const server = resource ? await serverView(resource) : null;
  const c = server && (server.consumers || []).find((x) => x.kind === "video");
  if (c) {
    liveclass.server = c;
    lines.push(t("terminal.stats.server_view", {
      layer: `${c.layer ?? "–"}${c.target_layer !== c.layer ? `→${c.target_layer}` : ""}`, temporal: c.temporal_limit,
      estimate: fmtRate(c.estimate_bps), rtt: c.rtt_ms ?? "–", up: c.switches_up, down: c.switches_down,
    }));
  }
  if (!lines.length) lines.push(t("terminal.stats.no_media"));
  lines.push(t("terminal.stats.server", { server: serverLabel() }));  // which cluster node this classroom uses now
  statsBox.textContent = lines.join("\n");
}

function showStats(on) {
  statsBox.hidden = !on;
  clearInterval(statsTimer);
  if (on) { refreshStats(); statsTimer = setInterval(refreshStats, STATS_MS); }
}

// --- page wiring ----------------------------------------------------------------------------------------

window.addEventListener("keydown", (e) => {
  if (e.target instanceof HTMLInputElement || e.target instanceof HTMLTextAreaElement) return;  // typing in the chat
  if (e.key === "f" || e.key === "F") { toggleFullscreen(); return; }
  if (e.key === "m" || e.key === "M") { video.muted = !video.muted; if (!video.muted) userGesture(); return; }
  if (e.key === "s" || e.key === "S") { showStats(statsBox.hidden); return; }
  userGesture();
});
window.addEventListener("pointerdown", userGesture);
window.addEventListener("dblclick", toggleFullscreen);
window.addEventListener("pagehide", () => player.unload());
document.addEventListener("visibilitychange", keepScreenOn);

$("room-name").textContent = room;
// the server in use, in the overlay (and liveclass.serverUrl for tests): it changes when a cluster node dies
function showServer() {
  liveclass.serverUrl = currentServer();
  setText($("server-name"), serverLabel());
}
onServerChange(showServer);
showServer();
if (query.get("stats") === "1") showStats(true);
setState("waiting", msg("terminal.detail.connecting"));
if (!room || !token) {
  setState("error", msg("terminal.needs_link"));
} else {
  keepScreenOn();
  startServerList({ room, token });  // the cluster's nodes: where to go if this page's server dies
  player.start();
  // the room WebSocket: slides, stage, hand, chat, our camera; at the lesson's end the picture stops at once
  startLesson({
    room, token, liveclass,
    onLive: (live) => {
      lessonOver = !live;
      if (!live && player.session) player.session.end("lesson-ended");
    },
  });
  liveclass.lesson.addEventListener("connection", (e) => { if (!e.detail.connected) serverWentAway(e.detail.code); });
}
