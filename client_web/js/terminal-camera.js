// The classroom's own camera and microphone, sent back to the teacher (WHIP with the terminal's token) while
// the lesson is live. Small on purpose (320x180 at 15 fps, ~150 kbit/s): the teacher's picture and everyone's
// sound come first on a thin school link. The microphone track is disabled unless the teacher opened it (the
// server drops a closed microphone's packets anyway).
import { describeError, HttpError } from "./whip-client.js";
import { publishStream } from "./whip-publish.js";
import { captureBlockedReason, CaptureBlocked } from "./secure-context.js";
import { Backoff } from "./backoff.js";
import { msg } from "./i18n.js";

const CAMERA = { width: { ideal: 320 }, height: { ideal: 180 }, frameRate: { ideal: 15, max: 15 } };
// L1T3: three VP8 temporal layers, so the SFU can halve a viewer's frame rate instead of freezing it
const VIDEO_ENCODING = { maxBitrate: 150_000, maxFramerate: 15, scalabilityMode: "L1T3" };
const BACKOFF_MS = [1000, 2000, 4000, 8000, 15000];
const DISCONNECTED_GRACE_MS = 4000;

export class ClassroomCamera {
  /**
   * @param {{room: string, token: string, sources: string[], preview: HTMLVideoElement,
   *          onChange: (c: ClassroomCamera) => void, onPublishing: (sources: string[]) => void}} o
   */
  constructor({ room, token, sources, preview, onChange = () => {}, onPublishing = () => {} }) {
    Object.assign(this, { room, token, sources, preview, onChange, onPublishing });
    this.wanted = false;
    this.micOpen = false;
    this.state = "off";   // off | starting | live | retrying | error
    this.detail = "";
    this.stream = null;
    this.session = null;
    this.backoff = new Backoff(BACKOFF_MS);
    this._retryTimer = 0;
    this._generation = 0;
  }

  _set(state, detail = "") {
    this.state = state;
    this.detail = detail;
    this.onChange(this);
  }

  setMicOpen(open) {
    this.micOpen = open;
    if (this.stream) for (const t of this.stream.getAudioTracks()) t.enabled = open;
    this.onChange(this);
  }

  async start() {
    if (this.wanted) return;
    this.wanted = true;
    this.backoff.reset();
    await this._attempt(++this._generation);
  }

  async stop({ serverEnded = false } = {}) {
    this.wanted = false;
    this._generation += 1;
    clearTimeout(this._retryTimer);
    const s = this.session;
    this.session = null;
    if (s) await s.stop({ skipDelete: serverEnded });
    if (this.stream) for (const t of this.stream.getTracks()) t.stop();
    this.stream = null;
    this.preview.srcObject = null;
    this.onPublishing([]);
    this._set("off");
  }

  unload() {
    if (this.session) this.session.stop({ keepalive: true });
  }

  async _openDevices() {
    const blocked = captureBlockedReason();
    if (blocked) throw new CaptureBlocked(blocked);  // plain http: no devices at all, retrying cannot help
    const wantVideo = this.sources.includes("camera");
    const wantAudio = this.sources.includes("microphone");
    try {
      return await navigator.mediaDevices.getUserMedia({ video: wantVideo ? CAMERA : false, audio: wantAudio });
    } catch (e) {
      if (wantVideo && wantAudio) {  // one of the two may still work
        try { return await navigator.mediaDevices.getUserMedia({ video: CAMERA, audio: false }); } catch { /* next */ }
        try { return await navigator.mediaDevices.getUserMedia({ video: false, audio: true }); } catch { /* none */ }
      }
      throw e;
    }
  }

  async _attempt(gen) {
    if (!this.wanted || gen !== this._generation) return;
    this._set(this.backoff.failures ? "retrying" : "starting", this.detail);
    try {
      if (!this.stream) {
        this.stream = await this._openDevices();
        this.preview.srcObject = this.stream;
        this.preview.play().catch(() => {});
      }
      for (const t of this.stream.getAudioTracks()) t.enabled = this.micOpen;
      const video = this.stream.getVideoTracks()[0];
      if (video && "contentHint" in video) video.contentHint = "motion";
      const session = await publishStream(this.stream, { room: this.room, token: this.token, video: VIDEO_ENCODING });
      if (!this.wanted || gen !== this._generation) { await session.stop(); return; }
      this.session = session;
      this.backoff.reset();
      session.pc.addEventListener("connectionstatechange", () => this._watch(session, gen));
      const sent = [];
      if (this.stream.getVideoTracks().length) sent.push("camera");
      if (this.stream.getAudioTracks().length) sent.push("microphone");
      this.onPublishing(sent);
      this._set("live", "");
    } catch (e) {
      if (!this.wanted || gen !== this._generation) return;
      const permanent = e instanceof HttpError && e.permanent;
      if (e instanceof CaptureBlocked) {  // the lesson still plays; only our camera stays off
        this.blocked = e.reason;
        this._set("error", msg("terminal.camera.blocked"));
        return;
      }
      if (e instanceof DOMException && !this.stream) {
        this._set("error", msg("terminal.camera.no_devices", { reason: e.message || e.name }));
        return;
      }
      if (permanent) {
        this._set("error", describeError(e));
        return;
      }
      this._retry(gen, describeError(e));
    }
  }

  _watch(session, gen) {
    if (this.session !== session || gen !== this._generation) return;
    const st = session.pc.connectionState;
    if (st === "failed" || st === "closed") {
      this._lost(session, gen);
    } else if (st === "disconnected") {
      clearTimeout(session.graceTimer);
      session.graceTimer = setTimeout(() => {
        if (session.pc.connectionState === "disconnected") this._lost(session, gen);
      }, DISCONNECTED_GRACE_MS);
    }
  }

  async _lost(session, gen) {
    if (this.session !== session) return;
    this.session = null;
    await session.stop();
    this.onPublishing([]);
    this._retry(gen, msg("terminal.camera.lost"));
  }

  _retry(gen, why) {
    const delay = this.backoff.next();
    this._set("retrying", msg("terminal.camera.retry", { reason: why, s: Math.round(delay / 1000) }));
    clearTimeout(this._retryTimer);
    this._retryTimer = setTimeout(() => this._attempt(gen), delay);
  }
}
