// The teacher's console over the room WebSocket: start and end the lesson, the grid of classrooms (each one's
// return camera and microphone over WHEP `?source=classroom&identity=…`), the hand queue, the stage, microphones
// and chat. Names are user data and only ever set as text.
import { LessonSocket, lessonErrorText } from "./lesson-socket.js";
import { attachChat } from "./lesson-chat.js";
import { WhepPlayer } from "./whep-player.js";
import { msg, onLangChange, setText, t } from "./i18n.js";

const LINK_QUALITY = { good: "teacher.tile.link_good", fair: "teacher.tile.link_fair", poor: "teacher.tile.link_poor" };
// what a refused request was, for the note under the lesson controls
const ACTIONS = {
  lesson_start: "teacher.action.lesson_start", lesson_end: "teacher.action.lesson_end",
  stage_call: "teacher.action.stage_call", stage_end: "teacher.action.stage_end",
  mute: "teacher.action.mute", unmute: "teacher.action.unmute",
};

export function startConsole({ room, token, liveclass, onLessonEnded = () => {} }) {
  const $ = (id) => document.getElementById(id);
  const els = {
    console: $("console"), state: $("lesson-state"), start: $("lesson-start"), end: $("lesson-end"),
    note: $("lesson-note"), hands: $("hands"), handsEmpty: $("hands-empty"), grid: $("grid"),
    gridEmpty: $("grid-empty"), gridCount: $("grid-count"),
  };
  const lesson = new LessonSocket(room, token);
  const tiles = new Map();        // identity -> tile
  const publishing = new Set();   // what this page sends (roster `publishing`)
  let wasLive = false;
  liveclass.lesson = lesson;
  liveclass.tiles = tiles;

  attachChat(lesson, { list: $("chat-list"), form: $("chat-form"), input: $("chat-input"), note: $("chat-note") });

  function note(text, error = false) {
    setText(els.note, text);
    els.note.classList.toggle("error", error);
  }

  async function act(type, fields = {}) {
    try {
      await lesson.request(type, fields);
      note("");
    } catch (e) {
      note(msg("teacher.action_failed", { action: msg(ACTIONS[type]), reason: lessonErrorText(e) }), true);
    }
  }

  /** Tell the room what this page sends (camera and microphone, screen); re-sent after every reconnect. */
  function setPublishing(sources, on) {
    for (const s of sources) (on ? publishing.add(s) : publishing.delete(s));
    syncPublishing(on ? sources : null);
  }

  function syncPublishing(added) {
    if (!lesson.connected) return;
    if (added && added.length) lesson.send("publish", { sources: added });
    const mine = lesson.participant(lesson.identity);
    const gone = ((mine && mine.publishing) || []).filter((s) => !publishing.has(s));
    if (gone.length) lesson.send("unpublish", { sources: gone });
  }

  // --- the grid -----------------------------------------------------------------------------------------

  function makeTile(identity) {
    const el = document.createElement("article");
    el.className = "tile";
    el.dataset.identity = identity;
    const video = document.createElement("video");
    video.autoplay = true;
    video.playsInline = true;
    const body = document.createElement("div");
    body.className = "tile-body";
    const name = document.createElement("div");
    name.className = "tile-name";
    const info = document.createElement("div");
    info.className = "tile-info";
    const actions = document.createElement("div");
    actions.className = "tile-actions";
    const stageBtn = document.createElement("button");
    stageBtn.type = "button";
    stageBtn.className = "call";
    const muteBtn = document.createElement("button");
    muteBtn.type = "button";
    actions.append(stageBtn, muteBtn);
    body.append(name, info, actions);
    el.append(video, body);
    const player = new WhepPlayer({
      room, token, query: { source: "classroom", identity }, video, onChange: () => updateTile(tile),
    });
    const tile = { identity, el, video, name, info, stageBtn, muteBtn, player };
    stageBtn.addEventListener("click", () => {
      if (lesson.state.on_stage === identity) act("stage_end");
      else act("stage_call", { identity });
    });
    muteBtn.addEventListener("click", () => act(lesson.state.muted.has(identity) ? "unmute" : "mute", { identity }));
    return tile;
  }

  function updateTile(tile) {
    const s = lesson.state;
    const p = s.participants.get(tile.identity);
    if (!p) return;
    const onStage = s.on_stage === tile.identity;
    const muted = s.muted.has(tile.identity);
    const hand = s.hands.indexOf(tile.identity);
    tile.el.dataset.stage = String(onStage);
    tile.el.dataset.hand = String(hand >= 0);
    tile.el.dataset.connected = String(!!p.connected);
    tile.el.setAttribute("aria-label", t("teacher.tile.label", { name: p.name }));
    tile.name.textContent = p.name;
    tile.name.dataset.handNote = t("teacher.tile.hand_up");
    const parts = [];
    if (!p.connected) parts.push(t("teacher.tile.reconnecting"));
    if (onStage) parts.push(t("teacher.tile.on_stage"));
    if (hand >= 0) parts.push(t("teacher.tile.hand_raised", { n: hand + 1 }));
    parts.push(t(muted ? "teacher.tile.mic_off" : "teacher.tile.mic_on"));
    if (p.link && LINK_QUALITY[p.link.quality]) parts.push(t(LINK_QUALITY[p.link.quality]));
    if (s.live && !(p.publishing || []).includes("camera")) parts.push(t("teacher.tile.no_camera"));
    tile.info.textContent = parts.join(" · ");
    tile.info.dataset.quality = (p.link && p.link.quality) || "unknown";
    tile.stageBtn.textContent = t(onStage ? "teacher.tile.stage_end" : "teacher.tile.stage_call");
    tile.stageBtn.disabled = !lesson.connected || !s.live || !p.connected;
    tile.muteBtn.textContent = t(muted ? "teacher.tile.unmute" : "teacher.tile.mute");
    tile.muteBtn.disabled = !lesson.connected || !s.live;
    tile.video.dataset.playing = String(tile.player.active);
  }

  function renderGrid() {
    const s = lesson.state;
    const terminals = [...s.participants.values()].filter((p) => p.role === "terminal");
    const keep = new Set(terminals.map((p) => p.identity));
    for (const [identity, tile] of tiles) {
      if (!keep.has(identity)) {
        tile.player.stop();
        tile.el.remove();
        tiles.delete(identity);
      }
    }
    for (const p of terminals) {
      let tile = tiles.get(p.identity);
      if (!tile) {
        tile = makeTile(p.identity);
        tiles.set(p.identity, tile);
        els.grid.append(tile.el);
      }
      // classrooms send their camera only during the lesson: watch them then
      if (!lesson.stopped && s.live && p.connected) tile.player.start();
      else if (!tile.player.stopped) tile.player.stop();
      updateTile(tile);
    }
    els.gridEmpty.hidden = terminals.length > 0;
    els.gridCount.textContent = terminals.length ? `(${terminals.length})` : "";
  }

  function renderHands() {
    const s = lesson.state;
    els.hands.replaceChildren(...s.hands.map((identity) => {
      const li = document.createElement("li");
      li.dataset.identity = identity;
      const name = document.createElement("span");
      name.textContent = lesson.name(identity);
      const call = document.createElement("button");
      call.type = "button";
      call.textContent = t("teacher.tile.stage_call");
      call.disabled = !s.live;
      call.addEventListener("click", () => act("stage_call", { identity }));
      li.append(name, call);
      return li;
    }));
    els.handsEmpty.hidden = s.hands.length > 0;
  }

  function render() {
    const s = lesson.state;
    const c = lesson.connected;
    els.console.dataset.live = String(s.live);
    setText(els.state, !c ? (lesson.lastError
      ? msg("teacher.lesson.not_connected", { reason: lessonErrorText(lesson.lastError) }) : msg("common.connecting"))
      : msg(s.live ? "teacher.lesson.live" : wasLive ? "teacher.lesson.ended" : "teacher.lesson.not_started"));
    els.start.disabled = !c || s.live;
    els.end.disabled = !c || !s.live;
    renderHands();
    renderGrid();
  }

  els.start.addEventListener("click", () => act("lesson_start"));
  els.end.addEventListener("click", () => act("lesson_end"));
  lesson.addEventListener("connection", (e) => {
    if (e.detail.connected) syncPublishing([...publishing]);
  });
  lesson.addEventListener("lesson", (e) => {
    if (e.detail.live) wasLive = true;
    else if (wasLive) onLessonEnded();  // the server ended every publication, ours included
  });
  lesson.addEventListener("connection", () => { if (lesson.state.live) wasLive = true; });
  // The room moved to another server while the lesson was live (its node died or drained): the new server
  // starts the room afresh (not resumed, not live). The lesson goes on: start it again there.
  let liveWhenDropped = false;
  lesson.addEventListener("connection", (e) => {
    if (!e.detail.connected) { liveWhenDropped = liveWhenDropped || lesson.state.live; return; }
    if (!e.detail.resumed && liveWhenDropped && !lesson.state.live) act("lesson_start");
    liveWhenDropped = false;
  });
  lesson.addEventListener("change", render);
  lesson.addEventListener("connection", render);
  onLangChange(render);  // the tiles and the hand queue are drawn from the lesson's state, in the page's language
  window.addEventListener("pagehide", () => {
    for (const t of tiles.values()) t.player.unload();
    lesson.stop({ leave: false });
  });
  lesson.start();
  render();
  return { lesson, setPublishing };
}
