// The room WebSocket (docs/room-protocol.md) for the pages: connects, comes back by itself after a lost
// connection (the server resumes our place, hand and stage), keeps a mirror of the lesson and tells listeners.
//
//   const lesson = new LessonSocket(room, token);
//   lesson.addEventListener("change", (e) => render(lesson.state, e.detail));  // after every server message
//   lesson.addEventListener("stage", (e) => ...);                               // or one message type
//   await lesson.request("hand_raise");                                         // rejects with {code, message}

import { checkServer, currentServer, wsServerUrl } from "./server-list.js";
import { has, msg } from "./i18n.js";

const STOP_CODES = new Set([1000, 4000, 4003, 4005, 4006]);  // the protocol says: do not reconnect
const BACKOFF_MS = [1000, 2000, 4000, 8000, 15000];
const BAD_TOKEN_RETRY_MS = 30000;
// 1001 "going away": the room's server stopped or died and the room moves to another one within seconds (a
// cluster): come back quickly a few times rather than after the long back-off
const GOING_AWAY = 1001;
const FAST_RETRY_MS = 500;
const FAST_RETRIES = 10;
// 1006: no close frame (the server process died, or the handshake failed): the server itself may be gone
const ABNORMAL = 1006;
const REQUEST_TIMEOUT_MS = 5000;
const CHAT_KEEP = 200;

export class LessonError extends Error {
  constructor(code, message) {
    super(message || code);
    this.name = "LessonError";
    this.code = code;
  }
}

/** What to show for an `error` from the server ({code, message}) or a LessonError: its code's text in the page's
 *  language (a msg()), else the server's own message. */
export function lessonErrorText(err) {
  const key = `common.room_error.${err.code}`;
  return has(key) ? msg(key) : err.message || String(err.code);
}

function emptyState() {
  return {
    live: false, on_stage: null, hands: [], muted: new Set(), recording: false,
    participants: new Map(), chat: [],
  };
}

export class LessonSocket extends EventTarget {
  constructor(room, token) {
    super();
    this.room = room;
    this.token = token;
    this.ws = null;
    this.you = null;            // {identity, name, role, can_publish, can_subscribe, sources, expires}
    this.connected = false;
    this.stopped = false;
    this.closeCode = null;
    this.lastError = null;      // the last error the server sent without a ref (e.g. why it closed)
    this.state = emptyState();
    this._pending = new Map();  // id -> {resolve, reject, timer}
    this._nextId = 1;
    this._failures = 0;
    this._fastRetries = 0;
    this._retryTimer = 0;
  }

  start() {
    if (!this.ws && !this.stopped) this._connect();
    return this;
  }

  /** Leave for good (or just drop the connection on page unload with leave=false). */
  stop({ leave = true } = {}) {
    this.stopped = true;
    clearTimeout(this._retryTimer);
    if (this.ws && this.ws.readyState === WebSocket.OPEN) {
      if (leave) this.send("leave");
      else this.ws.close(1000);
    }
  }

  get identity() { return this.you ? this.you.identity : null; }

  participant(identity) { return this.state.participants.get(identity) || null; }

  name(identity) {
    const p = this.participant(identity);
    return (p && p.name) || identity || "";
  }

  /** Fire and forget. */
  send(type, fields = {}) {
    if (!this.ws || this.ws.readyState !== WebSocket.OPEN) return false;
    this.ws.send(JSON.stringify({ type, ...fields }));
    return true;
  }

  /** Send and wait for the server's ack; rejects with a LessonError (its code) if refused or not connected. */
  request(type, fields = {}) {
    return new Promise((resolve, reject) => {
      if (!this.ws || this.ws.readyState !== WebSocket.OPEN || !this.connected) {
        reject(new LessonError("not_connected", "not connected to the classroom server"));
        return;
      }
      const id = `c${this._nextId++}`;
      const timer = setTimeout(() => {
        this._pending.delete(id);
        reject(new LessonError("timeout", "the classroom server did not answer"));
      }, REQUEST_TIMEOUT_MS);
      this._pending.set(id, { resolve, reject, timer });
      this.ws.send(JSON.stringify({ type, id, ...fields }));
    });
  }

  _connect() {
    // the page's current server (server-list.js): after it dies, another cluster node, cross-origin
    this._server = currentServer();
    const url = wsServerUrl(`/ws/${encodeURIComponent(this.room)}?token=${encodeURIComponent(this.token)}`);
    let ws;
    try {
      ws = new WebSocket(url);
    } catch (e) {
      this._scheduleRetry(BACKOFF_MS[BACKOFF_MS.length - 1]);
      return;
    }
    this.ws = ws;
    ws.addEventListener("message", (e) => { if (this.ws === ws) this._onMessage(e.data); });
    ws.addEventListener("close", (e) => { if (this.ws === ws) this._onClose(e); });
  }

  _onClose(e) {
    this.ws = null;
    this.connected = false;
    this.closeCode = e.code;
    for (const p of this._pending.values()) {
      clearTimeout(p.timer);
      p.reject(new LessonError("not_connected", "the connection to the classroom server closed"));
    }
    this._pending.clear();
    this._emit("connection", { connected: false, code: e.code, error: this.lastError });
    if (this.stopped || STOP_CODES.has(e.code)) {
      this.stopped = true;
      return;
    }
    const badToken = this.lastError && this.lastError.code === "token_invalid";
    if (e.code === GOING_AWAY) this._fastRetries = FAST_RETRIES;
    const fast = !badToken && this._fastRetries > 0;
    if (fast) this._fastRetries -= 1;
    const delay = badToken ? BAD_TOKEN_RETRY_MS : fast ? FAST_RETRY_MS
      : BACKOFF_MS[Math.min(this._failures, BACKOFF_MS.length - 1)];
    this._failures += 1;
    if (e.code === ABNORMAL && !badToken) {
      // is the server gone or only this socket? A probe that fails moves the page to another node: come
      // back there at once rather than after the back-off
      // (then quickly a few times, as after 1001: the new node answers 502 until the room is re-placed)
      checkServer(this._server).then((moved) => {
        if (!moved || this.stopped || this.ws) return;
        this._fastRetries = FAST_RETRIES;
        this._scheduleRetry(0);
      });
    }
    this._scheduleRetry(delay);
  }

  _scheduleRetry(ms) {
    clearTimeout(this._retryTimer);
    this._retryTimer = setTimeout(() => { if (!this.stopped && !this.ws) this._connect(); }, ms);
  }

  _onMessage(text) {
    let m;
    try { m = JSON.parse(text); } catch { return; }
    if (!m || typeof m.type !== "string") return;
    const s = this.state;
    switch (m.type) {
      case "welcome": {
        this.you = m.you;
        const st = m.state || {};
        this.state = {
          live: !!st.live, on_stage: st.on_stage ?? null, hands: st.hands || [], muted: new Set(st.muted || []),
          recording: !!st.recording, participants: new Map((st.participants || []).map((p) => [p.identity, p])),
          chat: (st.chat || []).slice(-CHAT_KEEP),
        };
        this.connected = true;
        this._failures = 0;
        this._fastRetries = 0;
        this.lastError = null;
        this._emit("connection", { connected: true, resumed: !!m.resumed });
        break;
      }
      case "joined":
        // a classroom's microphone is closed from the moment it joins (the server sends no `mute` for that)
        if (m.participant && m.participant.role === "terminal") s.muted.add(m.participant.identity);
        if (m.participant) s.participants.set(m.participant.identity, m.participant);
        break;
      case "participant":
        if (m.participant) s.participants.set(m.participant.identity, m.participant);
        break;
      case "left":
        s.participants.delete(m.identity);
        s.muted.delete(m.identity);
        break;
      case "hands": s.hands = m.queue || []; break;
      case "stage": s.on_stage = m.identity ?? null; break;
      case "mute": if (m.muted) s.muted.add(m.identity); else s.muted.delete(m.identity); break;
      case "lesson": s.live = !!m.live; break;
      case "recording": s.recording = !!m.active; break;
      case "chat":
        s.chat.push(m);
        if (s.chat.length > CHAT_KEEP) s.chat.splice(0, s.chat.length - CHAT_KEEP);
        break;
      case "ack":
      case "error": {
        const p = m.ref != null ? this._pending.get(m.ref) : null;
        if (p) {
          this._pending.delete(m.ref);
          clearTimeout(p.timer);
          if (m.type === "ack") p.resolve(m);
          else p.reject(new LessonError(m.code, m.message));
        } else if (m.type === "error") {
          this.lastError = m;
        }
        break;
      }
      default:
        break;
    }
    this._emit(m.type, m);
    this._emit("change", m);
  }

  _emit(type, detail) {
    try {
      this.dispatchEvent(new CustomEvent(type, { detail }));
    } catch (e) {
      console.error("lesson listener failed", e);
    }
  }
}
