// The classroom terminal's part in the live lesson, over the room WebSocket: the teacher's slides when shared,
// the classroom on stage (inset), raise hand, chat, status, and the classroom's own camera and microphone sent
// back while the lesson is live (microphone closed until the teacher calls the class on stage).
// Remote-control friendly: every control is a large focusable button; H raises the hand, C opens the chat.
import { LessonSocket, lessonErrorText } from "./lesson-socket.js";
import { attachChat } from "./lesson-chat.js";
import { WhepPlayer } from "./whep-player.js";
import { ClassroomCamera } from "./terminal-camera.js";
import { showCaptureBlocked } from "./secure-context.js";
import { msg, onLangChange, setText } from "./i18n.js";

const CONSOLE_ROLES = new Set(["teacher", "admin"]);
// "Lower hand (1st in line)": English ordinals differ for the first three
const HAND_PLACES = ["terminal.hand_lower_1", "terminal.hand_lower_2", "terminal.hand_lower_3"];

export function startLesson({ room, token, liveclass, onLive = () => {} }) {
  const $ = (id) => document.getElementById(id);
  const els = {
    status: $("lesson-status"), mic: $("mic-state"), cameraState: $("camera-state"), hand: $("hand"),
    chatToggle: $("chat-toggle"), chat: $("chat"), chatInput: $("chat-input"), unread: $("chat-unread"),
    stageBox: $("stage-box"), stageVideo: $("stage-video"), stageName: $("stage-name"), banner: $("on-stage-banner"),
    screen: $("screen"), selfView: $("self-view"),
  };
  const lesson = new LessonSocket(room, token);
  let everLive = false;
  let unread = 0;

  const render = () => renderAll();
  const screenPlayer = new WhepPlayer({ room, token, query: { source: "screen" }, video: els.screen, kinds: ["video"], onChange: render });
  const stagePlayer = new WhepPlayer({ room, token, query: { source: "stage" }, video: els.stageVideo, onChange: render });
  const camera = new ClassroomCamera({
    room, token, sources: [], preview: els.selfView, onChange: render,
    onPublishing: (sources) => {
      if (sources.length) lesson.send("publish", { sources });
      else lesson.send("unpublish");
    },
  });
  Object.assign(liveclass, { lesson, screenPlayer, stagePlayer, camera });

  attachChat(lesson, { list: $("chat-list"), form: $("chat-form"), input: els.chatInput, note: $("chat-note") });

  const me = () => lesson.identity;
  const isTerminal = () => !!lesson.you && lesson.you.role === "terminal";

  function teacherSharesScreen() {
    for (const p of lesson.state.participants.values()) {
      if (CONSOLE_ROLES.has(p.role) && (p.publishing || []).includes("screen")) return true;
    }
    return false;
  }

  function mayPublish() {
    const you = lesson.you;
    return !!you && you.role === "terminal" && you.can_publish
      && (you.sources.includes("camera") || you.sources.includes("microphone"));
  }

  // --- what should run, from the lesson's state ---------------------------------------------------------

  function follow() {
    const s = lesson.state;
    // while reconnecting, the last known lesson holds (the server resumes it); once refused for good, nothing
    const usable = !lesson.stopped && !!lesson.you;
    if (s.live) everLive = true;
    // slides: while the teacher says it shares its screen
    if (usable && teacherSharesScreen()) screenPlayer.start();
    else if (!screenPlayer.stopped) screenPlayer.stop();
    // the classroom on stage, unless it is us (we would hear ourselves)
    const stageOther = s.live && s.on_stage && s.on_stage !== me();
    if (usable && stageOther) stagePlayer.start();
    else if (!stagePlayer.stopped) stagePlayer.stop();
    // our camera and microphone go back while the lesson is live
    if (usable && s.live && mayPublish()) {
      camera.sources = lesson.you.sources;
      camera.setMicOpen(!s.muted.has(me()));
      camera.start();
    } else if (camera.wanted) {
      camera.stop({ serverEnded: !s.live });  // the server ended our session at the lesson's end
    }
  }

  // --- what the classroom sees ----------------------------------------------------------------------------

  function statusText() {
    const s = lesson.state;
    if (!lesson.connected) {
      const err = lesson.lastError;
      if (lesson.stopped && err) return msg("terminal.lesson.refused", { reason: lessonErrorText(err) });
      return err ? msg("terminal.lesson.reconnecting", { reason: lessonErrorText(err) })
        : msg("terminal.lesson.connecting");
    }
    if (s.live) return msg("terminal.lesson.live");
    return msg(everLive ? "terminal.lesson.ended" : "terminal.lesson.not_started");
  }

  function renderAll() {
    const s = lesson.state;
    const id = me();
    document.body.dataset.lesson = !lesson.connected ? "offline" : s.live ? "live" : everLive ? "ended" : "waiting";
    setText(els.status, statusText());

    // hand
    els.hand.hidden = !isTerminal();
    const pos = s.hands.indexOf(id);
    const onStage = !!id && s.on_stage === id;
    els.hand.setAttribute("aria-pressed", String(pos >= 0));
    setText(els.hand, pos < 0 ? msg("terminal.hand_raise")
      : msg(HAND_PLACES[pos] || "terminal.hand_lower_n", { n: pos + 1 }));
    els.hand.disabled = !lesson.connected || onStage;

    // microphone and camera
    const micOpen = !!id && isTerminal() && !s.muted.has(id) && s.live;
    els.mic.dataset.open = String(micOpen);
    setText(els.mic, !isTerminal() ? "" : msg(micOpen ? "terminal.mic_on" : "terminal.mic_off"));
    els.mic.hidden = !isTerminal();
    const camText = {
      off: "", starting: msg("terminal.camera.starting"), live: msg("terminal.camera.live"),
      retrying: msg("terminal.camera.detail", { detail: camera.detail }),
      error: msg("terminal.camera.detail", { detail: camera.detail }),
    };
    if (camera.blocked && camera.state === "error") {  // plain http: say why, with the https address
      const text = msg("terminal.camera.off", { reason: camera.blocked.text });
      showCaptureBlocked(els.cameraState, { ...camera.blocked, text });
    } else {
      setText(els.cameraState, camText[camera.state] || "");
      delete els.cameraState.dataset.blocked;
    }
    els.selfView.hidden = camera.state !== "live";

    // stage
    els.banner.hidden = !(onStage && s.live);
    const stageOther = s.live && s.on_stage && s.on_stage !== id;
    els.stageBox.hidden = !stageOther;
    els.stageName.textContent = stageOther ? lesson.name(s.on_stage) : "";
    els.stageBox.dataset.playing = String(stagePlayer.active);

    // slides: full screen, the teacher in a corner
    const slides = !screenPlayer.stopped && screenPlayer.totalFrames > 0;
    els.screen.hidden = !slides;
    document.body.classList.toggle("slides", slides);

    // chat
    els.unread.hidden = unread === 0;
    els.unread.textContent = unread ? String(unread) : "";
    liveclass.lessonState = document.body.dataset.lesson;
  }

  // --- controls -----------------------------------------------------------------------------------------

  async function toggleHand() {
    if (!isTerminal() || els.hand.disabled) return;
    const raised = lesson.state.hands.includes(me());
    try {
      await lesson.request(raised ? "hand_lower" : "hand_raise");
    } catch (e) {
      setText(els.status, msg(raised ? "terminal.hand_lower_failed" : "terminal.hand_raise_failed", { reason: lessonErrorText(e) }));
    }
  }

  function showChat(open) {
    els.chat.hidden = !open;
    els.chatToggle.setAttribute("aria-expanded", String(open));
    if (open) {
      unread = 0;
      els.chatInput.focus();
    } else {
      els.chatToggle.focus();
    }
    renderAll();
  }

  els.hand.addEventListener("click", toggleHand);
  els.chatToggle.addEventListener("click", () => showChat(els.chat.hidden));
  lesson.addEventListener("chat", (e) => {
    if (els.chat.hidden && e.detail.from !== me()) unread += 1;
  });
  window.addEventListener("keydown", (e) => {
    const typing = e.target instanceof HTMLInputElement || e.target instanceof HTMLTextAreaElement;
    if (e.key === "Escape" && !els.chat.hidden) { showChat(false); return; }
    if (typing || e.ctrlKey || e.altKey || e.metaKey) return;
    if (e.key === "h" || e.key === "H") { toggleHand(); return; }
    if (e.key === "c" || e.key === "C") { e.preventDefault(); showChat(els.chat.hidden); }
  });
  window.addEventListener("pagehide", () => {
    screenPlayer.unload();
    stagePlayer.unload();
    camera.unload();
    lesson.stop({ leave: false });
  });

  lesson.addEventListener("lesson", (e) => {
    if (e.detail.live) onLive(true);
    else if (everLive) onLive(false);  // ended (not merely "not started")
  });
  lesson.addEventListener("change", () => { follow(); renderAll(); });
  onLangChange(renderAll);
  lesson.addEventListener("connection", () => { follow(); renderAll(); });
  lesson.start();
  renderAll();
  return lesson;
}
