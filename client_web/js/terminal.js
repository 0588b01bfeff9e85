// Classroom terminal (the big screen): plays the room's lesson with WHEP, full window, and keeps itself
// playing: it waits while the lesson is not live, and tears the session down (DELETE) and starts a new one
// when the link fails or the picture stops.
import {
  pageParams, newPeerConnection, negotiate, deleteSession, endpointUrl, describeError, HttpError,
  sessionGone, transientError,
} from "./whip-client.js";
import { startLesson } from "./terminal-lesson.js";
import { startServerList, onServerChange, serverLabel, currentServer } from "./server-list.js";

const POLL_MS = 500;                 // how often the session is checked (getStats)
const CONNECT_TIMEOUT_MS = 10000;    // offer posted → ICE/DTLS connected
const DISCONNECTED_GRACE_MS = 3000;  // 'disconnected' often recovers by itself
const STALL_MS = 4000;               // frames were being decoded and stopped this long → new session
const WAITING_AFTER_MS = 2500;       // connected, no frames yet: say the lesson has not started
const WAIT_RECYCLE_MS = 20000;       // connected, nothing ever arrived: start a fresh session anyway
const BACKOFF_MS = [1000, 2000, 4000, 8000, 10000];
const PERMANENT_RETRY_MS = 30000;    // bad token or room: the page keeps trying, slowly
// the room's server went away (a cluster node died or drains): another node takes the room within seconds,
// answering 502/503 until then; these first retries come quickly
const FAST_RETRY_MS = 500;
const FAST_RETRIES = 8;

const { room, token } = pageParams();
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
  waiting: "Waiting for the lesson…",
  live: "Live",
  reconnecting: "Reconnecting…",
  error: "Cannot play the lesson",
};

// Debugging hook for tests and operators: the current peer connection and state.
const liveclass = (window.liveclass = {
  pc: null, state: "waiting", detail: "", sessions: 0, resource: null, firstFrameMs: null, error: null,
});

let everLive = false;       // this page has shown the lesson at some point
let lessonOver = false;     // the room WebSocket said the lesson ended (until the next one starts)
let soundBlocked = false;   // autoplay with sound was refused: waiting for a key press or tap
let wake = null;            // resolves the current back-off sleep early ("retry now")

function setState(state, detail = "") {
  if (liveclass.state === state && liveclass.detail === detail) return;
  liveclass.state = state;
  liveclass.detail = detail;
  liveclass.error = state === "error" ? detail : null;
  document.body.dataset.state = state;
  titleEl.textContent = state === "waiting" && lessonOver ? "The lesson has ended" : TITLES[state] || state;
  detailEl.textContent = detail;
  overlay.hidden = state === "live";
  badge.hidden = state !== "live";
  updateSoundHint();
}

function updateSoundHint() {
  soundHint.hidden = !(soundBlocked && liveclass.state === "live");
}

function sleep(ms) {
  return new Promise((resolve) => {
    const timer = setTimeout(done, ms);
    function done() { clearTimeout(timer); wake = null; resolve(); }
    wake = done;
  });
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
  if (wake) wake();  // waiting to retry: retry now
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

// --- one WHEP session -----------------------------------------------------------------------------------

async function framesDecoded(pc) {
  let frames = 0;
  const report = await pc.getStats();
  report.forEach((s) => {
    if (s.type === "inbound-rtp" && s.kind === "video") frames += s.framesDecoded || 0;
  });
  return frames;
}

async function teardown(s, { keepalive = false } = {}) {
  if (s.stopped) return;
  s.stopped = true;
  clearTimeout(s.timer);
  const resource = s.resource;
  s.resource = null;
  if (liveclass.resource === resource) liveclass.resource = null;
  // DELETE before closing (closing first lets the server end the session itself and the DELETE race it);
  // not when the session's server is known to be gone: its answer would never come
  if (resource && !s.gone) await deleteSession(resource, token, { keepalive });
  try { s.pc.close(); } catch { /* closed */ }
}

let current = null;

/** Runs one session until it has to be replaced; resolves with why ("stalled", "failed", ...). */
async function playOnce() {
  const pc = newPeerConnection();
  const s = (current = { pc, resource: null, stopped: false, timer: 0 });
  liveclass.pc = pc;
  liveclass.sessions += 1;
  const stream = new MediaStream();
  pc.addTransceiver("video", { direction: "recvonly" });
  pc.addTransceiver("audio", { direction: "recvonly" });
  pc.addEventListener("track", (e) => {
    if (s.stopped) return;
    stream.addTrack(e.track);
    if (video.srcObject !== stream) {
      video.srcObject = stream;
      startPlayback();
    }
  });

  try {
    const endpoint = endpointUrl("whep", room) + (MAX_HEIGHT ? `?max=${encodeURIComponent(MAX_HEIGHT)}` : "");
    s.resource = await negotiate(pc, endpoint, token);
    liveclass.resource = s.resource;
  } catch (e) {
    await teardown(s);
    return { reason: "refused", error: e };
  }

  return new Promise((resolve) => {
    const started = performance.now();
    let connectedAt = pc.connectionState === "connected" ? performance.now() : 0;
    let disconnectedAt = 0;
    let lastFrames = 0;
    let lastProgressAt = 0;
    let gotFrames = false;
    const end = async (reason) => {
      if (s.stopped) return;
      await teardown(s);
      resolve({ reason, gotFrames });
    };
    s.end = end;
    const firstFrame = () => {
      if (gotFrames || s.stopped) return;
      gotFrames = true;
      everLive = true;
      lastProgressAt = performance.now();
      if (connectedAt) liveclass.firstFrameMs = Math.round(lastProgressAt - connectedAt);
      setState("live");
    };
    if ("requestVideoFrameCallback" in HTMLVideoElement.prototype) {
      const onFrame = () => { if (!s.stopped && video.srcObject === stream) firstFrame(); };
      const arm = () => { if (video.srcObject === stream) video.requestVideoFrameCallback(onFrame); else if (!s.stopped) setTimeout(arm, 50); };
      arm();
    }
    const check = async () => {
      if (s.stopped) return;
      const now = performance.now();
      const st = pc.connectionState;
      if (st === "failed" || st === "closed") return end("failed");
      if (st === "disconnected") {
        disconnectedAt = disconnectedAt || now;
        if (now - disconnectedAt > DISCONNECTED_GRACE_MS) return end("disconnected");
      } else {
        disconnectedAt = 0;
      }
      if (st === "connected" && !connectedAt) connectedAt = now;
      if (!connectedAt && now - started > CONNECT_TIMEOUT_MS) return end("connect-timeout");
      let frames = lastFrames;
      try { frames = await framesDecoded(pc); } catch { /* closed meanwhile */ }
      if (s.stopped) return;
      if (frames > lastFrames) {
        lastFrames = frames;
        lastProgressAt = performance.now();
        firstFrame();
      } else if (gotFrames && now - lastProgressAt > STALL_MS) {
        return end("stalled");
      } else if (!gotFrames && connectedAt) {
        if (now - connectedAt > WAIT_RECYCLE_MS) return end("idle");
        if (now - connectedAt > WAITING_AFTER_MS) {
          setState("waiting", lessonOver ? "The picture will appear when the teacher starts again."
            : "The picture will appear as soon as the teacher goes live.");
        }
      }
      s.timer = setTimeout(check, POLL_MS);
    };
    pc.addEventListener("connectionstatechange", () => {
      if (pc.connectionState === "connected" && !connectedAt) connectedAt = performance.now();
      if (pc.connectionState === "failed") end("failed");
    });
    s.timer = setTimeout(check, POLL_MS);
  });
}

// --- the retry loop -------------------------------------------------------------------------------------

let fastRetries = 0;  // quick retries left after the room's server went away

// The room WebSocket closed with 1001 (going away) or abnormally: the server of our session may be gone (a
// cluster node died: the proxied socket closes at once, while ICE and the stall check take seconds). Ask the
// server about the session; if it is gone, start a new one now.
async function serverWentAway(code) {
  const s = current;
  if (!s || s.stopped || !s.end || (code !== 1001 && code !== 1006)) return;
  if (await sessionGone(s.resource, token) && current === s && !s.stopped) {
    s.gone = true;
    s.end("server-gone");
  }
}

async function run() {
  let failures = 0;
  for (;;) {
    const outcome = await playOnce();
    let delay;
    if (outcome.reason === "refused") {
      const e = outcome.error;
      const reason = describeError(e);
      if (e instanceof HttpError && e.permanent) {
        setState("error", `${reason} — trying again in ${PERMANENT_RETRY_MS / 1000} s.`);
        delay = PERMANENT_RETRY_MS;
      } else if (fastRetries > 0 && transientError(e)) {
        fastRetries -= 1;
        delay = FAST_RETRY_MS;
        setState(everLive ? "reconnecting" : "waiting", "The classroom server is moving the lesson. Connecting again…");
      } else {
        delay = BACKOFF_MS[Math.min(failures, BACKOFF_MS.length - 1)];
        failures += 1;
        const what = e instanceof HttpError ? `The server answered: ${reason}.` : `${reason[0].toUpperCase()}${reason.slice(1)}.`;
        setState(everLive ? "reconnecting" : "waiting", `${what} Trying again in ${Math.round(delay / 1000)} s.`);
      }
    } else if (outcome.reason === "server-gone") {
      failures = 0;
      fastRetries = FAST_RETRIES;
      delay = 0;
      setState("reconnecting", "The classroom server went away. Connecting again…");
    } else if (outcome.reason === "stalled") {
      failures = 0;
      delay = 300;
      setState("reconnecting", "The picture stopped. Connecting again…");
    } else if (outcome.reason === "lesson-ended") {
      failures = 0;
      delay = 1000;  // the server closed the teacher's publisher: wait for the next lesson in a fresh session
      setState("waiting", "The picture will appear when the teacher starts again.");
    } else if (outcome.reason === "idle") {
      failures = 0;
      delay = 300;  // a healthy session that carried nothing: just start a fresh one
    } else {
      if (outcome.gotFrames) failures = 0;
      delay = BACKOFF_MS[Math.min(failures, BACKOFF_MS.length - 1)];
      failures += 1;
      setState(everLive ? "reconnecting" : "waiting",
               `Lost the connection to the media server. Trying again in ${Math.round(delay / 1000)} s.`);
    }
    await sleep(delay);
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
      lines.push(`${v.frameWidth || "?"}×${v.frameHeight || "?"} · ${Math.round(v.framesPerSecond || 0)} fps · ${fmtRate(bps)} · loss ${lossPct.toFixed(1)} %`);
    }
  }
  const resource = liveclass.resource;
  const server = resource ? await serverView(resource) : null;
  const c = server && (server.consumers || []).find((x) => x.kind === "video");
  if (c) {
    liveclass.server = c;
    lines.push(`layer ${c.layer ?? "–"}${c.target_layer !== c.layer ? `→${c.target_layer}` : ""} T${c.temporal_limit} · estimate ${fmtRate(c.remb_bps)} · RTT ${c.rtt_ms ?? "–"} ms · switches ↑${c.switches_up} ↓${c.switches_down}`);
  }
  if (!lines.length) lines.push("no media yet");
  lines.push(`server ${serverLabel()}`);  // which cluster node this classroom uses now
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
window.addEventListener("pagehide", () => { if (current) teardown(current, { keepalive: true }); });
document.addEventListener("visibilitychange", keepScreenOn);

$("room-name").textContent = room;
// the server in use, in the overlay (and liveclass.serverUrl for tests): it changes when a cluster node dies
function showServer() {
  liveclass.serverUrl = currentServer();
  $("server-name").textContent = serverLabel();
}
onServerChange(showServer);
showServer();
if (query.get("stats") === "1") showStats(true);
setState("waiting", "Connecting to the classroom server…");
if (!room || !token) {
  setState("error", "This page needs ?room=…&token=… in its address (ask for a classroom link).");
} else {
  keepScreenOn();
  startServerList({ room, token });  // the cluster's nodes: where to go if this page's server dies
  run();
  // the room WebSocket: slides, stage, hand, chat, our camera; at the lesson's end the picture stops at once
  startLesson({
    room, token, liveclass,
    onLive: (live) => {
      lessonOver = !live;
      if (!live && current && current.end && !current.stopped) current.end("lesson-ended");
    },
  });
  liveclass.lesson.addEventListener("connection", (e) => { if (!e.detail.connected) serverWentAway(e.detail.code); });
}
