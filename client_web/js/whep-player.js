// WHEP into a <video> element, kept connected until stop(): one session after another (whep-session.js), with
// a wait between them. The pages' secondary pictures (the slides, the classroom on stage, the teacher's grid
// tiles) use it as it is: `?source=` chooses what, and a session that carries nothing is normal there (no one
// on stage yet). The terminal's lesson picture adds its own stall and idle limits and its own retry policy.
import { describeError, HttpError } from "./whip-client.js";
import { WhepSession, playWithSoundOrMuted } from "./whep-session.js";
import { Backoff } from "./backoff.js";

const ACTIVE_WINDOW_MS = 2500;      // frames decoded within this long: the picture is "active"
export const BACKOFF_MS = [1000, 2000, 4000, 8000, 10000];
export const PERMANENT_RETRY_MS = 30000;  // bad token or room: keep trying, slowly

export class WhepPlayer {
  /**
   * @param {object} o
   * @param {string} o.room
   * @param {string} o.token
   * @param {Record<string,string>} [o.query]   e.g. {source: "stage"}
   * @param {HTMLVideoElement} o.video
   * @param {string[]} [o.kinds]              what to receive: ["video", "audio"] by default
   * @param {(p: WhepPlayer) => void} [o.onChange]  called when state or activity changes
   * @param {(video: HTMLVideoElement) => void} [o.play]  starts the video on a new stream (with sound, else muted)
   * @param {number} [o.stallMs]   frames stopped this long: a new session (never, by default)
   * @param {number} [o.idleMs]    connected without a frame this long: a new session (never, by default)
   * @param {(s: WhepSession) => void} [o.onFirstFrame]
   * @param {(s: WhepSession, now: number) => void} [o.onCheck]   after each check of the running session
   * @param {(outcome: {reason: string, gotFrames?: boolean, error?: Error}) => number} [o.retryDelay]
   *        how long to wait after a session ended, and what to say meanwhile (default: back-off, "retrying";
   *        a permanent refusal: "refused", slowly)
   */
  constructor({
    room, token, query = {}, video, kinds = ["video", "audio"], onChange = () => {},
    play = playWithSoundOrMuted, stallMs = Infinity, idleMs = Infinity, onFirstFrame = () => {},
    onCheck = () => {}, retryDelay = null,
  }) {
    Object.assign(this, { room, token, query, video, kinds, onChange });
    this._sessionOptions = { play, stallMs, idleMs, onFirstFrame };
    this._onCheck = onCheck;
    this._retryDelay = retryDelay || ((outcome) => this._defaultRetryDelay(outcome));
    this._backoff = new Backoff(BACKOFF_MS);
    this.state = "idle";        // idle | connecting | connected | retrying | refused | stopped
    this.detail = "";
    this.pc = null;             // the latest session's peer connection
    this.sessions = 0;
    this.framesDecoded = 0;     // in the current session
    this.totalFrames = 0;       // across sessions
    this.lastFrameAt = 0;
    this.active = false;
    this.stopped = true;
    this._session = null;
    this._wake = null;
  }

  /** The running session (null between sessions and once stopped). */
  get session() { return this._session; }

  /** Its resource URL, once the server answered the offer. */
  get resource() { return this._session ? this._session.resource : null; }

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
    if (s) await s.close();
    this._set("stopped", "");
    this._setActive(false);
    if (this.video.srcObject) this.video.srcObject = null;
  }

  /** Best effort on page unload: DELETE with keepalive. */
  unload() {
    this.stopped = true;
    if (this._session) this._session.close({ keepalive: true });
  }

  /** Waiting before the next session: start it now. */
  retryNow() {
    if (this._wake) this._wake();
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
    while (!this.stopped) {
      const outcome = await this._once();
      if (this.stopped) break;
      await this._sleep(this._retryDelay(outcome));
    }
  }

  _defaultRetryDelay(outcome) {
    if (outcome.reason === "refused" && outcome.error instanceof HttpError && outcome.error.permanent) {
      this._set("refused", describeError(outcome.error));
      return PERMANENT_RETRY_MS;
    }
    if (outcome.gotFrames) this._backoff.reset();
    this._set("retrying", outcome.error ? describeError(outcome.error) : outcome.reason);
    return this._backoff.next();
  }

  async _once() {
    const s = (this._session = new WhepSession({
      room: this.room, token: this.token, query: this.query, video: this.video, kinds: this.kinds,
      ...this._sessionOptions,
      onConnected: () => this._set("connected", ""),
      onCheck: (session, now) => this._checked(session, now),
    }));
    this.pc = s.pc;
    this.sessions += 1;
    this.framesDecoded = 0;
    this._set("connecting", "");
    const outcome = await s.run();
    if (outcome.reason !== "stopped") {  // ended by itself: stop() does its own bookkeeping
      if (this._session === s) this._session = null;
      this._setActive(false);
    }
    return outcome;
  }

  _checked(s, now) {
    if (s.frames > this.framesDecoded) {
      this.totalFrames += s.frames - this.framesDecoded;
      this.framesDecoded = s.frames;
      this.lastFrameAt = performance.now();
    }
    this._setActive(this.lastFrameAt > 0 && performance.now() - this.lastFrameAt < ACTIVE_WINDOW_MS);
    this._onCheck(s, now);
  }
}
