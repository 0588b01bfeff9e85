// Lesson library and replay: search the library (GET /api/library), play a lesson with a seek bar, jump by
// chapter, and come back where this browser left off (localStorage). Everything from the server is put in the
// page as text (textContent, attributes), never as HTML.
import {
  loadCatalogues, applyTranslations, mountLanguageSwitch, currentLang, msg, onLangChange, setText, t,
} from "./i18n.js";

const PAGE_SIZE = 12;
const SAVE_EVERY_MS = 2000;
const RESUME_MIN_S = 5;         // positions this close to the start or the end are not worth resuming
const STORE_PREFIX = "liveclass.replay.";

const $ = (id) => document.getElementById(id);
const video = $("video");
const screenVideo = $("screen-video");   // the teacher's screen share, when the lesson has one
const SCREEN_DRIFT_S = 0.25;             // the screen is re-aligned to the lesson when further apart than this
const state = { offset: 0, total: 0, lesson: null, lastSaved: 0, lessons: [] };
const BADGES = { recording: "replay.badge.recording", recovered: "replay.badge.recovered", failed: "replay.badge.failed" };
// for tests and operators
window.liveclass = { video, screenVideo, state, resumedAt: null, error: null };

function fmtTime(s) {
  s = Math.max(0, Math.floor(s || 0));
  const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), sec = s % 60;
  const mm = String(m).padStart(h ? 2 : 1, "0"), ss = String(sec).padStart(2, "0");
  return h ? `${h}:${mm}:${ss}` : `${mm}:${ss}`;
}

function fmtDate(iso) {
  const d = new Date(iso);
  return isNaN(d) ? "" : d.toLocaleString(currentLang(), { dateStyle: "medium", timeStyle: "short" });
}

async function getJson(url) {
  const r = await fetch(url, { headers: { Accept: "application/json" } });
  if (!r.ok) throw new Error((await r.text()).trim() || `HTTP ${r.status}`);
  return r.json();
}

// ---- browsing ------------------------------------------------------------------------------------------

function filters() {
  const p = new URLSearchParams();
  for (const id of ["q", "teacher", "subject", "from", "to"]) {
    const v = $(id).value.trim();
    if (v) p.set(id, v);
  }
  return p;
}

async function loadList() {
  const p = filters();
  p.set("limit", PAGE_SIZE);
  p.set("offset", state.offset);
  const status = $("list-status");
  setText(status, msg("replay.loading"));
  try {
    const data = await getJson(`/api/library?${p}`);
    state.total = data.total;
    state.lessons = data.lessons;
    renderList(data.lessons);
    setText(status, !data.total ? msg("replay.none_found")
      : msg(data.total === 1 ? "replay.count_one" : "replay.count_other", { n: data.total }));
  } catch (e) {
    setText(status, msg("replay.load_failed", { reason: e.message }));
    window.liveclass.error = e.message;
  }
  const pages = Math.max(1, Math.ceil(state.total / PAGE_SIZE));
  setText($("page-info"), msg("replay.page_of", { page: Math.floor(state.offset / PAGE_SIZE) + 1, pages }));
  $("prev").disabled = state.offset === 0;
  $("next").disabled = state.offset + PAGE_SIZE >= state.total;
}

function renderList(lessons) {
  const list = $("lessons");
  list.replaceChildren();
  for (const l of lessons) {
    const li = $("lesson-card").content.firstElementChild.cloneNode(true);
    li.dataset.id = l.id;
    const img = li.querySelector("img");
    if (l.thumbnail_url) img.src = l.thumbnail_url; else img.remove();
    li.querySelector(".duration").textContent = fmtTime(l.duration_s);
    li.querySelector(".title").textContent = l.title;
    li.querySelector(".meta").textContent = [l.teacher, l.subject, l.grade && t("replay.grade", { grade: l.grade }),
      fmtDate(l.started_at)].filter(Boolean).join(" · ");
    const st = li.querySelector(".state");
    setText(st, BADGES[l.state] ? msg(BADGES[l.state]) : "");
    st.dataset.state = l.state;
    const open = li.querySelector(".open");
    open.disabled = !l.media_url;
    open.addEventListener("click", () => openLesson(l.id, true));
    list.append(li);
  }
}

// ---- playing -------------------------------------------------------------------------------------------

/** The library (or one lesson's) address, keeping a chosen ?lang=. */
function pageUrl(lessonId) {
  const u = new URL("replay.html", location.href);
  if (lessonId) u.searchParams.set("lesson", lessonId);
  const lang = new URLSearchParams(location.search).get("lang");
  if (lang) u.searchParams.set("lang", lang);
  return u.href;
}

function storeKey(id) { return STORE_PREFIX + id; }

function savedPosition(id) {
  try {
    const v = JSON.parse(localStorage.getItem(storeKey(id)) || "null");
    return v && typeof v.t === "number" ? v.t : null;
  } catch (e) { return null; }
}

function savePosition(force = false) {
  const l = state.lesson;
  if (!l || !isFinite(video.currentTime)) return;
  const now = Date.now();
  if (!force && now - state.lastSaved < SAVE_EVERY_MS) return;
  state.lastSaved = now;
  const d = video.duration || l.duration_s;
  try {
    if (video.ended || (d && video.currentTime > d - RESUME_MIN_S)) localStorage.removeItem(storeKey(l.id));
    else localStorage.setItem(storeKey(l.id), JSON.stringify({ t: video.currentTime, at: now }));
  } catch (e) { /* storage full or disabled: resuming is a convenience */ }
}

async function openLesson(id, push) {
  let l;
  try {
    l = await getJson(`/api/library/${encodeURIComponent(id)}`);
  } catch (e) {
    setText($("list-status"), msg("replay.open_failed", { reason: e.message }));
    window.liveclass.error = e.message;
    return;
  }
  if (push) history.pushState({ lesson: id }, "", pageUrl(id));
  state.lesson = l;
  $("browse").hidden = true;
  $("player").hidden = false;
  setText(document.querySelector("title"), msg("replay.lesson_title", { title: l.title }));
  $("lesson-title").textContent = l.title;
  renderLessonMeta(l);
  const st = $("lesson-state");
  st.hidden = l.state === "ready";
  setText(st, {
    recording: msg("replay.state.recording"),
    recovered: msg("replay.state.recovered"),
    failed: l.error ? msg("replay.state.failed_because", { reason: l.error }) : msg("replay.state.failed"),
  }[l.state] || "");
  renderChapters(l);
  $("resume-note").hidden = true;
  window.liveclass.resumedAt = null;
  setScreen(l);
  if (l.media_url) {
    video.src = l.media_url;
    if (l.thumbnail_url) video.poster = l.thumbnail_url; else video.removeAttribute("poster");
    const saved = savedPosition(l.id);
    if (saved !== null && saved > RESUME_MIN_S && (!l.duration_s || saved < l.duration_s - RESUME_MIN_S)) {
      video.addEventListener("loadedmetadata", () => {
        video.currentTime = saved;
        window.liveclass.resumedAt = saved;
        const note = $("resume-note");
        setText(note, msg("replay.resumed", { at: fmtTime(saved) }));
        note.hidden = false;
      }, { once: true });
    }
  } else {
    video.removeAttribute("src");
  }
}

function renderLessonMeta(l) {
  $("lesson-meta").textContent = [l.teacher, l.school, l.subject, l.grade && t("replay.grade", { grade: l.grade }),
    fmtDate(l.started_at), fmtTime(l.duration_s)].filter(Boolean).join(" · ");
}

// ---- the screen share: a second file on the lesson's timeline, `screen_offset_s` in ----------------------

function setScreen(l) {
  const has = Boolean(l && l.screen_url);
  $("screens").classList.toggle("with-screen", has);
  screenVideo.hidden = !has;
  if (has) screenVideo.src = l.screen_url;
  else { screenVideo.removeAttribute("src"); screenVideo.load(); }
}

function syncScreen(force) {
  const l = state.lesson;
  if (!l || !l.screen_url || screenVideo.readyState === 0) return;
  const t = video.currentTime - (l.screen_offset_s || 0);
  const end = isFinite(screenVideo.duration) ? screenVideo.duration : Infinity;
  if (t < 0 || t > end) {                   // the screen was not shared at this point of the lesson
    if (!screenVideo.paused) screenVideo.pause();
    return;
  }
  if (force || Math.abs(screenVideo.currentTime - t) > SCREEN_DRIFT_S) screenVideo.currentTime = t;
  screenVideo.playbackRate = video.playbackRate;
  if (video.paused && !screenVideo.paused) screenVideo.pause();
  else if (!video.paused && screenVideo.paused) screenVideo.play().catch(() => {});
}

for (const ev of ["play", "pause", "ratechange", "timeupdate"]) video.addEventListener(ev, () => syncScreen(false));
video.addEventListener("seeked", () => syncScreen(true));
screenVideo.addEventListener("loadedmetadata", () => syncScreen(true));

function renderChapters(l) {
  const list = $("chapters");
  list.replaceChildren();
  $("no-chapters").hidden = l.chapters.length > 0;
  for (const c of l.chapters) {
    const li = $("chapter-item").content.firstElementChild.cloneNode(true);
    const img = li.querySelector("img");
    if (c.thumbnail_url) img.src = c.thumbnail_url; else img.remove();
    li.querySelector(".at").textContent = fmtTime(c.t);
    li.querySelector(".name").textContent = c.title;
    li.querySelector("button").addEventListener("click", () => {
      video.currentTime = c.t;
      video.play().catch(() => {});
    });
    list.append(li);
  }
}

function highlightChapter() {
  const l = state.lesson;
  if (!l) return;
  const items = $("chapters").children;
  let current = -1;
  l.chapters.forEach((c, i) => { if (video.currentTime + 0.25 >= c.t) current = i; });
  for (let i = 0; i < items.length; i++) items[i].classList.toggle("current", i === current);
}

function showLibrary(push) {
  savePosition(true);
  video.pause();
  video.removeAttribute("src");
  video.load();
  setScreen(null);
  state.lesson = null;
  $("player").hidden = true;
  $("browse").hidden = false;
  setText(document.querySelector("title"), msg("replay.title"));
  if (push) history.pushState({}, "", pageUrl(null));
  loadList();
}

video.addEventListener("timeupdate", () => { savePosition(); highlightChapter(); });
video.addEventListener("pause", () => savePosition(true));
video.addEventListener("seeked", () => { savePosition(true); highlightChapter(); });
window.addEventListener("pagehide", () => savePosition(true));
video.addEventListener("error", () => {
  setText($("resume-note"), msg("replay.unplayable"));
  $("resume-note").hidden = false;
  window.liveclass.error = $("resume-note").textContent;
});

$("search").addEventListener("submit", (e) => { e.preventDefault(); state.offset = 0; loadList(); });
$("prev").addEventListener("click", () => { state.offset = Math.max(0, state.offset - PAGE_SIZE); loadList(); });
$("next").addEventListener("click", () => { state.offset += PAGE_SIZE; loadList(); });
$("back").addEventListener("click", () => showLibrary(true));
$("home").addEventListener("click", (e) => { e.preventDefault(); showLibrary(true); });
window.addEventListener("popstate", () => {
  const id = new URLSearchParams(location.search).get("lesson");
  if (id) openLesson(id, false); else showLibrary(false);
});

// the dates and grades in the cards and the lesson's line are drawn in the page's language
onLangChange(() => {
  if (state.lesson) renderLessonMeta(state.lesson);
  else renderList(state.lessons);
});

await loadCatalogues();
applyTranslations();
mountLanguageSwitch($("lang-slot"));
const initial = new URLSearchParams(location.search).get("lesson");
if (initial) openLesson(initial, false); else loadList();
