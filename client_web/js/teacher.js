// Teacher page: camera + microphone preview, "Go live" publishes to the room with WHIP, "Stop" ends it.
// The lesson console (room WebSocket: lesson, grid, hands, stage, chat) and the screen share live in
// teacher-console.js and teacher-screen.js.
import {
  pageParams, newPeerConnection, negotiate, deleteSession, preferCodec, endpointUrl, describeError,
  mediaStats, HttpError, sessionGone, transientError,
} from "./whip-client.js";
import { startConsole } from "./teacher-console.js";
import { ScreenShare } from "./teacher-screen.js";
import { waitConnected } from "./whip-publish.js";
import { startServerList, onServerChange, serverLabel, currentServer } from "./server-list.js";
import { captureBlockedReason, showCaptureBlocked } from "./secure-context.js";
import { loadCatalogues, applyTranslations, mountLanguageSwitch, msg, setText, t, text } from "./i18n.js";

// Three encodings (about 320x180, 640x360 and 1280x720 from a 720p camera), each with three VP8 temporal
// layers: the server gives every classroom the one its link can carry. `?simulcast=0` sends one encoding.
const SIMULCAST = new URLSearchParams(window.location.search).get("simulcast") !== "0";
const SIMULCAST_ENCODINGS = [
  { rid: "l", scaleResolutionDownBy: 4, maxBitrate: 150_000, scalabilityMode: "L1T3" },
  { rid: "m", scaleResolutionDownBy: 2, maxBitrate: 500_000, scalabilityMode: "L1T3" },
  { rid: "h", scaleResolutionDownBy: 1, maxBitrate: 1_500_000, scalabilityMode: "L1T3" },
];

const CONNECT_TIMEOUT_MS = 15000;     // offer posted → ICE/DTLS connected
const DISCONNECTED_GRACE_MS = 5000;   // 'disconnected' often recovers by itself
const MAX_AUTO_RETRIES = 12;          // after a lost connection while live
// The room's server going away (a cluster node killed or drained) is answered by another node within seconds
// (502/503 until then): the first retries come quickly, then the back-off doubles up to 8 s.
const FAST_RETRY_MS = 500;
const FAST_RETRIES = 8;

function retryDelay(attempt, error = null) {
  if (attempt <= FAST_RETRIES && (!error || transientError(error))) return FAST_RETRY_MS;
  return Math.min(1000 * 2 ** Math.min(Math.max(attempt - 1, 0), 3), 8000);
}

const { room, token } = pageParams();
await loadCatalogues();
applyTranslations();
mountLanguageSwitch(document.getElementById("lang-slot"));
const $ = (id) => document.getElementById(id);
const stateEl = $("state");
const messageEl = $("message");
const statsEl = $("stats");
const goLiveBtn = $("go-live");
const stopBtn = $("stop");
const preview = $("preview");
const previewNote = $("preview-note");

const LABELS = {
  idle: "teacher.state.idle", connecting: "teacher.state.connecting", live: "teacher.state.live",
  error: "teacher.state.error",
};
const LIMITS = {  // the encoder's qualityLimitationReason
  cpu: "teacher.stats.limit_cpu", bandwidth: "teacher.stats.limit_bandwidth", other: "teacher.stats.limit_other",
};

// Debugging hook for tests and operators: the current peer connection and state.
const liveclass = (window.liveclass = { pc: null, state: "idle", error: null, resource: null, stream: null });

let stream = null;
let session = null;   // { pc, resource, stopped }
let retries = 0;
let lessonConsole = null;  // { lesson, setPublishing } once the page has its room and token

/** `message`: a msg() or plain text. */
function setState(state, message = "") {
  liveclass.state = state;
  stateEl.dataset.state = state;
  setText(stateEl, msg(LABELS[state]));
  setText(messageEl, message);
  liveclass.error = state === "error" ? messageEl.textContent : null;
  messageEl.classList.toggle("error", state === "error");
  document.body.dataset.state = state;
  const active = state === "connecting" || state === "live";
  goLiveBtn.disabled = !stream || active;
  stopBtn.disabled = !active;
}

async function startCamera() {
  const blocked = captureBlockedReason();
  if (blocked) {  // plain http on another machine's address: say so, with the https address to open
    setText(previewNote, msg("teacher.no_camera_http"));
    setState("error", "");
    liveclass.error = text(blocked.text);
    liveclass.captureBlocked = true;
    showCaptureBlocked(messageEl, blocked);
    return;
  }
  try {
    stream = await navigator.mediaDevices.getUserMedia({
      video: { width: { ideal: 1280 }, height: { ideal: 720 }, frameRate: { ideal: 30 } },
      audio: { echoCancellation: true, noiseSuppression: true, autoGainControl: true },
    });
  } catch (e) {
    setText(previewNote, msg("teacher.no_camera"));
    setState("error", msg("teacher.camera_failed", { reason: e.message || e.name }));
    return;
  }
  liveclass.stream = stream;
  preview.srcObject = stream;
  preview.play().catch(() => {});
  previewNote.hidden = true;
  setState("idle", msg("teacher.camera_ready"));
}

async function teardown(s, { keepalive = false, skipDelete = false } = {}) {
  if (!s) return;
  s.stopped = true;
  clearTimeout(s.disconnectTimer);
  const resource = s.resource;
  s.resource = null;
  // DELETE before closing: closing first makes the server end the session on its own (DTLS close), and the
  // DELETE would then race it and find nothing. (skipDelete: the server ended it already, at the lesson's end.)
  if (resource && !skipDelete) await deleteSession(resource, token, { keepalive });
  try { s.pc.close(); } catch { /* already closed */ }
}

async function goLive() {
  if (!stream || session) return;
  const s = (session = { pc: newPeerConnection(), resource: null, stopped: false, disconnectTimer: 0 });
  const pc = s.pc;
  liveclass.pc = pc;
  setState("connecting", retries ? msg("teacher.lost_reconnecting", { n: retries, max: MAX_AUTO_RETRIES })
    : msg("teacher.connecting_server"));
  for (const track of stream.getAudioTracks()) {
    pc.addTransceiver(track, { direction: "sendonly", streams: [stream] });
  }
  for (const track of stream.getVideoTracks()) {
    const init = { direction: "sendonly", streams: [stream] };
    if (SIMULCAST) init.sendEncodings = SIMULCAST_ENCODINGS;
    const t = pc.addTransceiver(track, init);
    preferCodec(t, "video", "video/VP8");
  }
  pc.addEventListener("connectionstatechange", () => onConnectionState(s));
  try {
    s.resource = await negotiate(pc, endpointUrl("whip", room), token);
    liveclass.resource = s.resource;
    if (s.stopped) { await deleteSession(s.resource, token); return; }
    await waitConnected(pc, CONNECT_TIMEOUT_MS);
    if (s.stopped) return;
    retries = 0;
    setState("live", msg("teacher.live_message"));
    if (lessonConsole) lessonConsole.setPublishing(sentSources(), true);
  } catch (e) {
    if (s.stopped) return;
    await teardown(s);
    if (session === s) session = null;
    const reason = describeError(e);
    const permanent = e instanceof HttpError && (e.permanent || e.status === 409);
    if (retries > 0 && retries < MAX_AUTO_RETRIES && !permanent) {  // an automatic reconnect failed: go on
      retries += 1;
      setState("connecting", msg("teacher.reconnecting_reason", { n: retries, max: MAX_AUTO_RETRIES, reason }));
      setTimeout(() => { if (!session && liveclass.state === "connecting") goLive(); }, retryDelay(retries, e));
      return;
    }
    const gaveUp = retries > 0;
    retries = 0;
    if (gaveUp) {
      setState("error", msg("teacher.reconnect_failed", { reason }));
    } else {
      setState("error", msg(e instanceof HttpError ? "teacher.server_refused" : "teacher.go_live_failed", { reason }));
    }
  }
}

function onConnectionState(s) {
  if (s.stopped || session !== s) return;
  const st = s.pc.connectionState;
  if (st === "connected") {
    clearTimeout(s.disconnectTimer);
    s.disconnectTimer = 0;
    if (liveclass.state === "live") setText(messageEl, msg("teacher.live_message"));
  } else if (st === "failed") {
    connectionLost(s);
  } else if (st === "disconnected" && liveclass.state === "live") {
    setText(messageEl, msg("teacher.unstable"));
    if (!s.disconnectTimer) s.disconnectTimer = setTimeout(() => connectionLost(s), DISCONNECTED_GRACE_MS);
  }
}

async function connectionLost(s) {
  // While still connecting, goLive() is waiting for this connection and reports the failure itself.
  if (s.stopped || session !== s || liveclass.state !== "live") return;
  await teardown(s, { skipDelete: !!s.gone });
  session = null;
  if (retries < MAX_AUTO_RETRIES) {
    retries += 1;
    setTimeout(() => { if (!session && liveclass.state !== "idle") goLive(); }, retryDelay(retries));
    setState("connecting", msg("teacher.lost_reconnecting", { n: retries, max: MAX_AUTO_RETRIES }));
  } else {
    retries = 0;
    setState("error", msg("teacher.lost"));
  }
}

// The room WebSocket closed with 1001 (going away) or abnormally: the server of our session may be gone (a
// cluster node died: its proxied socket closes at once, while ICE takes 5-10 s to notice). Ask the server
// about the session; if it is gone, publish again now.
async function serverWentAway(code) {
  const s = session;
  if (!s || s.stopped || liveclass.state !== "live" || (code !== 1001 && code !== 1006)) return;
  if (await sessionGone(s.resource, token)) {
    console.warn("the server of the publishing session went away: publishing again");
    s.gone = true;  // nothing to DELETE: do not wait for an answer that will not come
    connectionLost(s);
  }
}

function sentSources() {
  const out = [];
  if (stream && stream.getVideoTracks().length) out.push("camera");
  if (stream && stream.getAudioTracks().length) out.push("microphone");
  return out;
}

async function stop({ serverEnded = false } = {}) {
  const s = session;
  session = null;
  retries = 0;
  setState("idle", msg("teacher.stopping"));
  if (lessonConsole) lessonConsole.setPublishing(["camera", "microphone"], false);
  await teardown(s, { skipDelete: serverEnded });
  liveclass.pc = null;
  liveclass.resource = null;
  if (!session) {
    setState("idle", msg(serverEnded ? "teacher.ended_by_server" : "teacher.stopped"));
  }
}

async function showStats() {
  const pc = session && session.pc;
  if (!pc || liveclass.state !== "live") { statsEl.textContent = ""; return; }
  try {
    const now = performance.now();
    const { outbound } = await mediaStats(pc);
    const v = outbound.video;
    if (!v) return;
    const prev = showStats.prev;
    let rate = "";
    if (prev && prev.id === v.id && now > prev.at) {
      rate = ` · ${(((v.bytesSent - prev.bytes) * 8) / ((now - prev.at) / 1000) / 1e6).toFixed(2)} Mbit/s`;
    }
    showStats.prev = { id: v.id, bytes: v.bytesSent, at: now };
    const size = v.frameWidth ? `${v.frameWidth}×${v.frameHeight}` : "–";
    const fps = v.framesPerSecond ? ` · ${Math.round(v.framesPerSecond)} fps` : "";
    const why = LIMITS[v.qualityLimitationReason];
    const limit = why ? ` · ${t("teacher.stats.limited", { why: msg(why) })}` : "";
    statsEl.textContent = t("teacher.stats.sending", { what: `${size}${fps}${rate}${limit}` });
  } catch { /* pc closed meanwhile */ }
}

goLiveBtn.addEventListener("click", () => { retries = 0; goLive(); });
stopBtn.addEventListener("click", () => stop());
window.addEventListener("pagehide", () => { if (session) teardown(session, { keepalive: true }); });
setInterval(showStats, 1000);

$("room-name").textContent = room ? `· ${room}` : "";
// the server in use (and liveclass.serverUrl for tests): it changes when a cluster node dies
function showServer() {
  liveclass.serverUrl = currentServer();
  setText($("server-name"), msg("common.server_line", { server: serverLabel() }));
}
onServerChange(showServer);
showServer();
if (!room || !token) {
  setState("error", msg("teacher.needs_link"));
} else {
  startServerList({ room, token });  // the cluster's nodes: where to go if this page's server dies
  startCamera();
  let screen = null;
  lessonConsole = startConsole({
    room, token, liveclass,
    onLessonEnded: () => {  // the server closed every publisher of the room, this page's included
      if (session || liveclass.state === "connecting") stop({ serverEnded: true });
      if (screen && screen.sharing) screen.stop({ serverEnded: true, message: msg("teacher.lesson_over") });
    },
  });
  screen = new ScreenShare({
    room, token, button: $("share"), note: $("share-note"),
    onPublishing: (on) => lessonConsole.setPublishing(["screen"], on),
  });
  lessonConsole.lesson.addEventListener("connection", (e) => { if (!e.detail.connected) serverWentAway(e.detail.code); });
  liveclass.screen = screen;
  window.addEventListener("pagehide", () => screen.unload());
}
