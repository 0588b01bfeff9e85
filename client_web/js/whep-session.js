// One WHEP session played into a <video>: the offer, then a check every POLL_MS until the session has to be
// replaced (the link failed or never came up, the picture stalled, nothing ever arrived) or is ended from
// outside. What comes after it (when to try again, what the page says) is the caller's: see whep-player.js.
import { newPeerConnection, negotiate, deleteSession, endpointUrl } from "./whip-client.js";

const POLL_MS = 500;                 // how often the session is checked (getStats)
const CONNECT_TIMEOUT_MS = 10000;    // offer posted → ICE/DTLS connected
const DISCONNECTED_GRACE_MS = 3000;  // 'disconnected' often recovers by itself

async function framesDecoded(pc) {
  let frames = 0;
  (await pc.getStats()).forEach((r) => {
    if (r.type === "inbound-rtp" && r.kind === "video") frames += r.framesDecoded || 0;
  });
  return frames;
}

/** Start a new stream with sound; where autoplay with sound is refused before a user gesture, muted. */
export function playWithSoundOrMuted(video) {
  video.play().catch(() => {
    video.muted = true;
    video.play().catch(() => {});
  });
}

export class WhepSession {
  /**
   * @param {object} o
   * @param {string} o.room
   * @param {string} o.token
   * @param {Record<string,string>} o.query
   * @param {HTMLVideoElement} o.video
   * @param {string[]} o.kinds                    what to receive, e.g. ["video", "audio"]
   * @param {(video: HTMLVideoElement) => void} o.play   starts the video once it has the session's stream
   * @param {number} o.stallMs     frames were decoded and stopped this long: ended as "stalled"
   * @param {number} o.idleMs      connected and no frame ever decoded this long: ended as "idle"
   * @param {(s: WhepSession) => void} o.onConnected
   * @param {(s: WhepSession) => void} o.onFirstFrame
   * @param {(s: WhepSession, now: number) => void} o.onCheck   after each check that did not end the session
   */
  constructor({ room, token, query, video, kinds, play, stallMs, idleMs, onConnected, onFirstFrame, onCheck }) {
    Object.assign(this, { room, token, query, video, kinds, play, stallMs, idleMs, onConnected, onFirstFrame, onCheck });
    this.pc = newPeerConnection();
    this.resource = null;
    this.stopped = false;
    this.gone = false;          // its server is known to be gone: nothing to DELETE there
    this.connectedAt = 0;
    this.gotFrames = false;
    this.frames = 0;            // video frames decoded in this session
    this.lastProgressAt = 0;
    this._finish = null;        // resolves run() while the session is watched
    this._timer = 0;
    this._disconnectedAt = 0;
  }

  /** Being watched: end() can end it. */
  get watching() { return this._finish !== null; }

  /** Runs the session until it has to be replaced; resolves with why: {reason, gotFrames, error?}. */
  async run() {
    const { pc, video } = this;
    const stream = new MediaStream();
    for (const kind of this.kinds) pc.addTransceiver(kind, { direction: "recvonly" });
    pc.addEventListener("track", (e) => {
      if (this.stopped) return;
      stream.addTrack(e.track);
      if (video.srcObject !== stream) {
        video.srcObject = stream;
        this.play(video);
      }
    });
    try {
      const qs = new URLSearchParams(this.query).toString();
      this.resource = await negotiate(pc, endpointUrl("whep", this.room) + (qs ? `?${qs}` : ""), this.token);
    } catch (e) {
      await this.close();
      return { reason: "refused", error: e };
    }
    if (this.stopped) {  // closed while the offer was out: release the session close() did not know of
      await deleteSession(this.resource, this.token);
      return { reason: "stopped" };
    }
    return new Promise((resolve) => {
      this._finish = resolve;
      this._watch(stream);
    });
  }

  /** Ends a watched session now (an outside reason: the lesson ended, the server went away). */
  async end(reason) {
    const finish = this._finish;
    if (this.stopped || !finish) return;
    this._finish = null;  // resolved below, with this reason
    await this.close();
    finish({ reason, gotFrames: this.gotFrames });
  }

  /** DELETE (keepalive: while the page unloads) and close; run() resolves with "stopped" if it has not yet. */
  async close({ keepalive = false } = {}) {
    if (this.stopped) return;
    this.stopped = true;
    clearTimeout(this._timer);
    if (this._finish) {
      this._finish({ reason: "stopped", gotFrames: this.gotFrames });
      this._finish = null;
    }
    const resource = this.resource;
    this.resource = null;
    // DELETE before closing (closing first lets the server end the session itself and the DELETE race it);
    // not when the session's server is known to be gone: its answer would never come
    if (resource && !this.gone) await deleteSession(resource, this.token, { keepalive });
    try { this.pc.close(); } catch { /* closed */ }
  }

  _watch(stream) {
    const { pc, video } = this;
    this._startedAt = performance.now();
    if (pc.connectionState === "connected") this._connected(performance.now());
    // the first frame on screen, sooner than the next getStats would tell
    if ("requestVideoFrameCallback" in HTMLVideoElement.prototype) {
      const onFrame = () => { if (!this.stopped && video.srcObject === stream) this._firstFrame(); };
      const arm = () => { if (video.srcObject === stream) video.requestVideoFrameCallback(onFrame); else if (!this.stopped) setTimeout(arm, 50); };
      arm();
    }
    pc.addEventListener("connectionstatechange", () => {
      if (pc.connectionState === "connected") this._connected(performance.now());
      if (pc.connectionState === "failed") this.end("failed");
    });
    this._timer = setTimeout(() => this._check(), POLL_MS);
  }

  _connected(now) {
    if (this.connectedAt) return;
    this.connectedAt = now;
    this.onConnected(this);
  }

  _firstFrame() {
    if (this.gotFrames || this.stopped) return;
    this.gotFrames = true;
    this.lastProgressAt = performance.now();
    this.onFirstFrame(this);
  }

  async _check() {
    if (this.stopped) return;
    const now = performance.now();
    const st = this.pc.connectionState;
    if (st === "failed" || st === "closed") return this.end("failed");
    if (st === "disconnected") {
      this._disconnectedAt = this._disconnectedAt || now;
      if (now - this._disconnectedAt > DISCONNECTED_GRACE_MS) return this.end("disconnected");
    } else {
      this._disconnectedAt = 0;
    }
    if (st === "connected") this._connected(now);
    if (!this.connectedAt && now - this._startedAt > CONNECT_TIMEOUT_MS) return this.end("connect-timeout");
    let frames = this.frames;
    try { frames = await framesDecoded(this.pc); } catch { /* closed meanwhile */ }
    if (this.stopped) return;
    if (frames > this.frames) {
      this.frames = frames;
      this.lastProgressAt = performance.now();
      this._firstFrame();
    } else if (this.gotFrames && now - this.lastProgressAt > this.stallMs) {
      return this.end("stalled");
    } else if (!this.gotFrames && this.connectedAt && now - this.connectedAt > this.idleMs) {
      return this.end("idle");
    }
    this.onCheck(this, now);
    this._timer = setTimeout(() => this._check(), POLL_MS);
  }
}
