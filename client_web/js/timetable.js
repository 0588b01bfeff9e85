// The timetable desk: a week of timetabled lessons (GET /api/timetable), the courses (GET/POST/PUT/DELETE
// /api/courses) and a form to make or change one: its master classroom's room, its receiving classrooms and
// its lessons. Server data is shown as text (textContent), never as HTML.
import { loadCatalogues, applyTranslations, mountLanguageSwitch, currentLang, msg, onLangChange, setText, t }
  from "./i18n.js";
import { api, showStatus, addDays, weekStart, ymd } from "./school-api.js";

const $ = (id) => document.getElementById(id);
const state = { monday: weekStart(new Date()), week: [], courses: [], editing: null };
window.liveclass = { state, error: null };   // for tests and operators


function failed(e) {
  const key = { 401: "timetable.err.401", 403: "timetable.err.403" }[e.status];
  showStatus(key ? msg(key, { reason: e.message }) : msg("timetable.err.other", { reason: e.message }), "error");
}

const hm = (d) => d.toLocaleTimeString(currentLang(), { hour: "2-digit", minute: "2-digit", hour12: false });
const hhmm = (d) => `${String(d.getHours()).padStart(2, "0")}:${String(d.getMinutes()).padStart(2, "0")}`;  // <input type=time>

// ---- the week ------------------------------------------------------------------------------------------

async function loadWeek() {
  const from = state.monday, to = addDays(state.monday, 7);
  try {
    const data = await api("GET", `/api/timetable?from=${encodeURIComponent(from.toISOString())}` +
                                  `&to=${encodeURIComponent(to.toISOString())}`);
    state.week = data.lessons;
    renderWeek();
  } catch (e) { failed(e); }
}

function renderWeek() {
  const fmt = new Intl.DateTimeFormat(currentLang(), { weekday: "short", month: "numeric", day: "numeric" });
  const end = addDays(state.monday, 6);
  $("week-label").textContent = `${ymd(state.monday)} – ${ymd(end)}`;
  const grid = $("week");
  grid.replaceChildren();
  const now = Date.now();
  for (let i = 0; i < 7; i++) {
    const day = addDays(state.monday, i);
    const col = document.createElement("div");
    col.className = "day";
    const h = document.createElement("h3");
    h.textContent = fmt.format(day);
    col.append(h);
    for (const l of state.week.filter((x) => ymd(new Date(x.start_epoch * 1000)) === ymd(day))) {
      col.append(slotCard(l, now));
    }
    grid.append(col);
  }
}

function slotCard(l, now) {
  const box = document.createElement("div");
  box.className = "slot";
  box.dataset.held = l.held.length ? "yes" : (l.end_epoch * 1000 < now ? "missed" : "planned");
  const when = document.createElement("div");
  when.className = "when";
  when.textContent = `${hm(new Date(l.start_epoch * 1000))}–${hm(new Date(l.end_epoch * 1000))}`;
  const title = document.createElement("div");
  title.textContent = l.title;
  const sub = document.createElement("div");
  sub.className = "sub";
  setText(sub, msg("timetable.slot_sub", { room: l.room, teacher: l.teacher || "—", n: l.classrooms.length }));
  box.append(when, title, sub);
  for (const id of l.held) {
    const a = document.createElement("a");
    a.href = `report.html?lesson=${encodeURIComponent(id)}`;
    setText(a, msg("timetable.open_report"));
    box.append(a);
  }
  if (!l.held.length && box.dataset.held === "missed") {
    const s = document.createElement("div");
    s.className = "sub";
    setText(s, msg("timetable.not_held"));
    box.append(s);
  }
  return box;
}

// ---- courses -------------------------------------------------------------------------------------------

async function loadCourses() {
  try {
    state.courses = (await api("GET", "/api/courses")).courses;
    renderCourses();
  } catch (e) { failed(e); }
}

function renderCourses() {
  const body = $("courses");
  body.replaceChildren();
  $("no-courses").hidden = state.courses.length > 0;
  for (const c of state.courses) {
    const tr = document.createElement("tr");
    tr.dataset.id = c.id;
    for (const v of [c.title, c.subject, c.grade, c.teacher, c.room, c.classrooms.length, c.lessons.length]) {
      const td = document.createElement("td");
      td.textContent = String(v ?? "");
      tr.append(td);
    }
    const td = document.createElement("td");
    const edit = document.createElement("button");
    edit.type = "button";
    edit.className = "quiet";
    setText(edit, msg("timetable.edit"));
    edit.addEventListener("click", () => fillEditor(c));
    const del = document.createElement("button");
    del.type = "button";
    del.className = "quiet";
    setText(del, msg("timetable.delete"));
    del.addEventListener("click", () => removeCourse(c));
    td.append(edit, " ", del);
    tr.append(td);
    body.append(tr);
  }
}

async function removeCourse(c) {
  if (!window.confirm(t("timetable.confirm_delete", { title: c.title }))) return;
  try {
    await api("DELETE", `/api/courses/${encodeURIComponent(c.id)}`);
    showStatus(msg("timetable.deleted", { title: c.title }));
    if (state.editing === c.id) resetEditor();
    await Promise.all([loadCourses(), loadWeek()]);
  } catch (e) { failed(e); }
}

// ---- the editor ----------------------------------------------------------------------------------------

function addLessonRow(lesson = null) {
  const row = $("lesson-row").content.firstElementChild.cloneNode(true);
  applyTranslations(row);
  if (lesson) {
    const s = new Date(lesson.start_epoch * 1000), e = new Date(lesson.end_epoch * 1000);
    row.querySelector(".l-date").value = ymd(s);
    row.querySelector(".l-start").value = hhmm(s);
    row.querySelector(".l-end").value = hhmm(e);
    row.querySelector(".l-weekly").checked = lesson.weekly;
    if (lesson.until) row.querySelector(".l-until").value = ymd(new Date(lesson.until));
    row.dataset.id = lesson.id;
  } else {
    row.querySelector(".l-date").value = ymd(new Date());
  }
  row.querySelector(".l-remove").addEventListener("click", () => row.remove());
  $("lesson-rows").append(row);
}

function parseClassrooms(textValue) {
  return textValue.split("\n").map((line) => line.split(/[,，\t]/).map((x) => x.trim()))
    .filter((parts) => parts[0]).map(([identity, name, school]) => ({ identity, name: name || identity, school: school || "" }));
}

function lessonsOfForm() {
  return [...document.querySelectorAll(".lesson-row")].map((row) => {
    const date = row.querySelector(".l-date").value;
    const start = new Date(`${date}T${row.querySelector(".l-start").value}`);
    const end = new Date(`${date}T${row.querySelector(".l-end").value}`);
    const until = row.querySelector(".l-until").value;
    const weekly = row.querySelector(".l-weekly").checked;
    const lesson = { start: start.toISOString(), end: end.toISOString(), weekly };
    if (weekly && until) lesson.until = new Date(`${until}T23:59:59`).toISOString();
    if (row.dataset.id) lesson.id = row.dataset.id;
    return lesson;
  });
}

function fillEditor(c) {
  state.editing = c.id;
  setText($("editor-heading"), msg("timetable.edit_course", { title: c.title }));
  for (const k of ["title", "subject", "grade", "teacher", "school", "room"]) $(`f-${k}`).value = c[k] || "";
  $("f-classrooms").value = c.classrooms.map((x) => [x.identity, x.name, x.school].filter(Boolean).join(", ")).join("\n");
  $("lesson-rows").replaceChildren();
  for (const l of c.lessons) addLessonRow(l);
  $("editor").scrollIntoView({ behavior: "smooth" });
}

function resetEditor() {
  state.editing = null;
  setText($("editor-heading"), msg("timetable.new_course"));
  $("editor").reset();
  $("lesson-rows").replaceChildren();
  addLessonRow();
}

async function save(e) {
  e.preventDefault();
  const body = {};
  for (const k of ["title", "subject", "grade", "teacher", "school", "room"]) body[k] = $(`f-${k}`).value.trim();
  body.classrooms = parseClassrooms($("f-classrooms").value);
  try {
    body.lessons = lessonsOfForm();
  } catch {
    showStatus(msg("timetable.err.bad_time"), "error");
    return;
  }
  try {
    const saved = state.editing
      ? await api("PUT", `/api/courses/${encodeURIComponent(state.editing)}`, body)
      : await api("POST", "/api/courses", body);
    showStatus(msg("timetable.saved", { title: saved.title }));
    resetEditor();
    await Promise.all([loadCourses(), loadWeek()]);
  } catch (err) { failed(err); }
}

// ---- start -----------------------------------------------------------------------------------------------

function moveWeek(days) {
  state.monday = days === 0 ? weekStart(new Date()) : addDays(state.monday, days);
  loadWeek();
}

async function main() {
  await loadCatalogues(["common", "timetable"]);
  applyTranslations();
  mountLanguageSwitch($("lang-slot"));
  onLangChange(() => { renderWeek(); renderCourses(); });
  $("prev-week").addEventListener("click", () => moveWeek(-7));
  $("this-week").addEventListener("click", () => moveWeek(0));
  $("next-week").addEventListener("click", () => moveWeek(7));
  $("add-lesson").addEventListener("click", () => addLessonRow());
  $("cancel").addEventListener("click", resetEditor);
  $("editor").addEventListener("submit", save);
  resetEditor();
  await Promise.all([loadWeek(), loadCourses()]);
  window.liveclass.ready = true;
}

main().catch((e) => { window.liveclass.error = String(e); console.error(e); });
