// The teacher's screen share (slides): getDisplayMedia, published as its own WHIP session with `?source=screen`,
// which every classroom plays as a second picture. Low frame rate and "detail" content: text must stay sharp,
// and the teacher's camera and voice keep their share of a thin uplink.
import { describeError } from "./whip-client.js";
import { publishStream } from "./whip-publish.js";
import { msg, setText } from "./i18n.js";

const SCREEN_ENCODING = { maxBitrate: 800_000, maxFramerate: 10, scalabilityMode: "L1T3" };

export class ScreenShare {
  /**
   * @param {{room: string, token: string, button: HTMLButtonElement, note: HTMLElement,
   *          onPublishing: (on: boolean) => void}} o
   */
  constructor({ room, token, button, note, onPublishing = () => {} }) {
    Object.assign(this, { room, token, button, note, onPublishing });
    this.stream = null;
    this.session = null;
    this.busy = false;
    button.addEventListener("click", () => (this.session || this.stream ? this.stop() : this.start()));
    this._render();
  }

  get sharing() { return !!this.session; }

  _render(message = null) {
    const on = !!this.session;
    setText(this.button, msg(on ? "teacher.share_end" : "teacher.share_screen"));
    this.button.setAttribute("aria-pressed", String(on));
    this.button.disabled = this.busy;
    if (message !== null) setText(this.note, message);
  }

  async start() {
    if (this.busy || this.session) return;
    if (!window.isSecureContext) {
      this._render(msg("teacher.share_needs_https"));
      return;
    }
    if (!navigator.mediaDevices || !navigator.mediaDevices.getDisplayMedia) {
      this._render(msg("teacher.share_unsupported"));
      return;
    }
    this.busy = true;
    this._render(msg("teacher.share_choose"));
    try {
      this.stream = await navigator.mediaDevices.getDisplayMedia({
        video: { frameRate: { ideal: 10, max: 15 } }, audio: false,
      });
      const track = this.stream.getVideoTracks()[0];
      if (track) {
        if ("contentHint" in track) track.contentHint = "detail";
        track.addEventListener("ended", () => this.stop());  // "Stop sharing" in the browser's own bar
      }
      this._render(msg("teacher.share_connecting"));
      this.session = await publishStream(this.stream, {
        room: this.room, token: this.token, query: { source: "screen" }, video: SCREEN_ENCODING,
      });
      this.session.pc.addEventListener("connectionstatechange", () => {
        const st = this.session && this.session.pc.connectionState;
        if (st === "failed" || st === "closed") this.stop({ message: msg("teacher.share_cut") });
      });
      this.busy = false;
      this.onPublishing(true);
      this._render(msg("teacher.share_live"));
    } catch (e) {
      this.busy = false;
      this._release();
      this._render(e && e.name === "NotAllowedError" ? msg("teacher.share_denied")
        : msg("teacher.share_failed", { reason: describeError(e) }));
    }
  }

  async stop({ serverEnded = false, message = msg("teacher.share_ended") } = {}) {
    const s = this.session;
    this.session = null;
    this._release();
    this._render(message);
    this.onPublishing(false);
    if (s) await s.stop({ skipDelete: serverEnded });
  }

  unload() {
    if (this.session) this.session.stop({ keepalive: true });
  }

  _release() {
    if (this.stream) for (const t of this.stream.getTracks()) t.stop();
    this.stream = null;
  }
}
