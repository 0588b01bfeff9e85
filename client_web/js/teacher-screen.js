// The teacher's screen share (slides): getDisplayMedia, published as its own WHIP session with `?source=screen`,
// which every classroom plays as a second picture. Low frame rate and "detail" content: text must stay sharp,
// and the teacher's camera and voice keep their share of a thin uplink.
import { describeError } from "./whip-client.js";
import { publishStream } from "./whip-publish.js";

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
    this.button.textContent = on ? "End screen share" : "Share screen";
    this.button.setAttribute("aria-pressed", String(on));
    this.button.disabled = this.busy;
    if (message !== null) this.note.textContent = message;
  }

  async start() {
    if (this.busy || this.session) return;
    if (!window.isSecureContext) {
      this._render("Screen sharing needs this page over https (see above).");
      return;
    }
    if (!navigator.mediaDevices || !navigator.mediaDevices.getDisplayMedia) {
      this._render("This browser cannot share a screen.");
      return;
    }
    this.busy = true;
    this._render("Choose the screen or window to share…");
    try {
      this.stream = await navigator.mediaDevices.getDisplayMedia({
        video: { frameRate: { ideal: 10, max: 15 } }, audio: false,
      });
      const track = this.stream.getVideoTracks()[0];
      if (track) {
        if ("contentHint" in track) track.contentHint = "detail";
        track.addEventListener("ended", () => this.stop());  // "Stop sharing" in the browser's own bar
      }
      this._render("Connecting the screen share…");
      this.session = await publishStream(this.stream, {
        room: this.room, token: this.token, query: { source: "screen" }, video: SCREEN_ENCODING,
      });
      this.session.pc.addEventListener("connectionstatechange", () => {
        const st = this.session && this.session.pc.connectionState;
        if (st === "failed" || st === "closed") this.stop({ message: "The screen share was cut off. Share it again." });
      });
      this.busy = false;
      this.onPublishing(true);
      this._render("Every classroom sees your screen.");
    } catch (e) {
      this.busy = false;
      this._release();
      this._render(e && e.name === "NotAllowedError" ? "Screen sharing was not allowed." : `Could not share the screen: ${describeError(e)}`);
    }
  }

  async stop({ serverEnded = false, message = "Screen sharing ended." } = {}) {
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
