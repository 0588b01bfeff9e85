// One WHEP session into a <video> element for the pages' secondary pictures (the slides, the classroom on
// stage, the teacher's grid tiles): `?source=` chooses what. It keeps itself connected (a new session after a
// failure, with back-off) until stop(). A session that carries nothing is normal here (no one on stage yet).
import { newPeerConnection, negotiate, deleteSession, endpointUrl, describeError, HttpError } from "./whip-client.js";

const POLL_MS = 500;
const CONNECT_TIMEOUT_MS = 10000;
const DISCONNECTED_GRACE_MS = 3000;
const ACTIVE_WINDOW_MS = 2500;      // frames decoded within this long: the picture is "active"
const BACKOFF_MS = [1000, 2000, 4000, 8000, 10000];
const PERMANENT_RETRY_MS = 30000;

export class WhepPlayer {
  /**
   * @param {object} o
   * @param {string} o.room
   * @param {string} o.token
   * @param {Record<string,string>} o.query   e.g. {source: "stage"}
   * @param {HTMLVideoElement} o.video
   * @param {string[]} [o.kinds]              what to receive: ["video", "audio"] by default
   * @param {(p: WhepPlayer) => void} [o.onChange]  called when state or activity changes
   */
  constructor({ room, token, query, video, kinds = ["video", "audio"], onChange = () => {} }) {
    this.room = room;
    this.token = token;
    this.query = query;
    this.video = video;
    this.kinds = kinds;
    this.onChange = onChange;
    this.state = "idle";        // idle | connecting | connected | retrying | refused | stopped
    this.detail = "";
    this.pc = null;
    this.resource = null;
    this.sessions = 0;
    this.framesDecoded = 0;     // in the current session
    this.totalFrames = 0;       // across sessions
    this.lastFrameAt = 0;
    this.active = false;
    this.stopped = true;
    this._session = null;
    this._wake = null;
  }

  start() {
    if (!this.stopped) return this;
    this.stopped = false;
    this._run().catch((e) => console.error("whep player", e));
    return this;
  }

  async stop() {
    this.stopped = true;
    if (this._wake) this._wake();
    const s = this._session;
    this._session = null;
    if (s) await this._teardown(s);
    this._set("stopped", "");
    this._setActive(false);
    if (this.video.srcObject) this.video.srcObject = null;
  }

  /** Best effort on page unload: DELETE with keepalive. */
  unload() {
    this.stopped = true;
    if (this._session) this._teardown(this._session, { keepalive: true });
  }

  _set(state, detail) {
    if (this.state === state && this.detail === detail) return;
    this.state = state;
    this.detail = detail;
    this.onChange(this);
  }

  _setActive(active) {
    if (this.active === active) return;
    this.active = active;
    this.onChange(this);
  }

  _sleep(ms) {
    return new Promise((resolve) => {
      const timer = setTimeout(done, ms);
      const self = this;
      function done() { clearTimeout(timer); self._wake = null; resolve(); }
      this._wake = done;
    });
  }

  async _run() {
    let failures = 0;
    while (!this.stopped) {
      const outcome = await this._once();
      if (this.stopped) break;
      let delay;
      if (outcome.reason === "refused" && outcome.error instanceof HttpError && outcome.error.permanent) {
        this._set("refused", describeError(outcome.error));
        delay = PERMANENT_RETRY_MS;
      } else {
        if (outcome.gotFrames) failures = 0;
        delay = BACKOFF_MS[Math.min(failures, BACKOFF_MS.length - 1)];
        failures += 1;
        this._set("retrying", outcome.error ? describeError(outcome.error) : outcome.reason);
      }
      await this._sleep(delay);
    }
  }

  async _teardown(s, { keepalive = false } = {}) {
    if (s.stopped) return;
    s.stopped = true;
    clearTimeout(s.timer);
    if (s.finish) s.finish("stopped");  // the session's watch loop will not run again: let _run go on
    const resource = s.resource;
    s.resource = null;
    if (this.resource === resource) this.resource = null;
    if (resource) await deleteSession(resource, this.token, { keepalive });
    try { s.pc.close(); } catch { /* closed */ }
  }

  async _once() {
    const pc = newPeerConnection();
    const s = (this._session = { pc, resource: null, stopped: false, timer: 0 });
    this.pc = pc;
    this.sessions += 1;
    this.framesDecoded = 0;
    this._set("connecting", "");
    const stream = new MediaStream();
    for (const kind of this.kinds) pc.addTransceiver(kind, { direction: "recvonly" });
    pc.addEventListener("track", (e) => {
      if (s.stopped) return;
      stream.addTrack(e.track);
      if (this.video.srcObject !== stream) {
        this.video.srcObject = stream;
        this.video.play().catch(() => {
          // autoplay with sound refused before a user gesture: play muted rather than not at all
          this.video.muted = true;
          this.video.play().catch(() => {});
        });
      }
    });
    try {
      const qs = new URLSearchParams(this.query).toString();
      s.resource = await negotiate(pc, endpointUrl("whep", this.room) + (qs ? `?${qs}` : ""), this.token);
      this.resource = s.resource;
    } catch (e) {
      await this._teardown(s);
      return { reason: "refused", error: e };
    }
    if (s.stopped) {  // stop() ran while the offer was out: release the session it did not know of
      await deleteSession(s.resource, this.token);
      return { reason: "stopped" };
    }
    if (this.stopped) {
      await this._teardown(s);
      return { reason: "stopped" };
    }
    return new Promise((resolve) => {
      const started = performance.now();
      let connectedAt = 0;
      let disconnectedAt = 0;
      let gotFrames = false;
      s.finish = (reason) => resolve({ reason, gotFrames });
      const end = async (reason) => {
        if (s.stopped) { resolve({ reason, gotFrames }); return; }
        s.finish = null;  // resolved below, with this reason
        await this._teardown(s);
        if (this._session === s) this._session = null;
        this._setActive(false);
        resolve({ reason, gotFrames });
      };
      const check = async () => {
        if (s.stopped) { resolve({ reason: "stopped", gotFrames }); return; }
        const now = performance.now();
        const st = pc.connectionState;
        if (st === "failed" || st === "closed") return end("failed");
        if (st === "disconnected") {
          disconnectedAt = disconnectedAt || now;
          if (now - disconnectedAt > DISCONNECTED_GRACE_MS) return end("disconnected");
        } else {
          disconnectedAt = 0;
        }
        if (st === "connected" && !connectedAt) {
          connectedAt = now;
          this._set("connected", "");
        }
        if (!connectedAt && now - started > CONNECT_TIMEOUT_MS) return end("connect-timeout");
        let frames = this.framesDecoded;
        try {
          frames = 0;
          (await pc.getStats()).forEach((r) => {
            if (r.type === "inbound-rtp" && r.kind === "video") frames += r.framesDecoded || 0;
          });
        } catch { /* closed meanwhile */ }
        if (s.stopped) { resolve({ reason: "stopped", gotFrames }); return; }
        if (frames > this.framesDecoded) {
          this.totalFrames += frames - this.framesDecoded;
          this.framesDecoded = frames;
          this.lastFrameAt = performance.now();
          gotFrames = true;
        }
        this._setActive(this.lastFrameAt > 0 && performance.now() - this.lastFrameAt < ACTIVE_WINDOW_MS);
        s.timer = setTimeout(check, POLL_MS);
      };
      s.timer = setTimeout(check, POLL_MS);
    });
  }
}
