// Attendance and quality: the start rate (开课率) of each teaching point per week (GET /api/reports/start-rate),
// the held lessons of a range (GET /api/lessons), one lesson's report (GET /api/lessons/{id}/report) with a
// chart per classroom of the picture's resolution and freezes over the lesson (inline SVG), and the bureau's CSV.
import { loadCatalogues, applyTranslations, mountLanguageSwitch, currentLang, msg, onLangChange, setText, t }
  from "./i18n.js";
import { api, showStatus, addDays, token, utcOffset, weekStart, ymd } from "./school-api.js";

const $ = (id) => document.getElementById(id);
const SVG = "http://www.w3.org/2000/svg";
const LIVE_REFRESH_MS = 5000;   // a live lesson's report is read again this often (the server writes every 2 s)
const state = { rate: null, lessons: [], report: null, refresh: 0 };
window.liveclass = { state, error: null };   // for tests and operators


function failed(e) {
  const key = { 401: "report.err.401", 403: "report.err.403", 404: "report.err.404" }[e.status];
  showStatus(msg(key || "report.err.other", { reason: e.message }), "error");
}

function range() {
  const from = new Date(`${$("from").value}T00:00:00`), to = addDays(new Date(`${$("to").value}T00:00:00`), 1);
  const p = new URLSearchParams({ from: from.toISOString(), to: to.toISOString() });
  const school = $("school").value.trim();
  if (school) p.set("school", school);
  return p;
}

const when = (iso) => (iso ? new Date(iso).toLocaleString(currentLang(), { dateStyle: "short", timeStyle: "short" }) : "—");
const hms = (iso) => (iso ? new Date(iso).toLocaleTimeString(currentLang(), { hour12: false }) : "—");

// ---- the start rate and the held lessons -----------------------------------------------------------------

async function query() {
  const p = range();
  const csv = new URLSearchParams(p);
  csv.set("token", token());
  csv.set("utc_offset", String(utcOffset()));   // the bureau's dates and times, as this browser's clock
  $("csv").href = `/api/reports/attendance?${csv}`;
  const rateQuery = new URLSearchParams(p);
  rateQuery.set("utc_offset", String(utcOffset()));
  try {
    const [rate, lessons] = await Promise.all([
      api("GET", `/api/reports/start-rate?${rateQuery}`).catch((e) => (e.status === 403 ? null : Promise.reject(e))),
      api("GET", `/api/lessons?${p}`)]);
    state.rate = rate;
    $("csv").hidden = rate === null;   // the start rate and the bureau's CSV are an admin's
    state.lessons = lessons.lessons;
    renderRate();
    renderLessons();
    showStatus("");
  } catch (e) { failed(e); }
}

function rateCell(d) {
  const td = document.createElement("td");
  td.className = "num rate";
  if (!d || !d.expected) { td.textContent = "—"; return td; }
  td.textContent = `${d.started}/${d.expected} (${Math.round(d.rate * 100)}%)`;
  td.dataset.level = d.rate < 0.6 ? "low" : d.rate < 0.9 ? "mid" : "high";
  return td;
}

function renderRate() {
  const head = $("rate-head"), body = $("rate-body");
  head.replaceChildren();
  body.replaceChildren();
  const r = state.rate;
  $("no-rate").hidden = !!(r && r.classrooms.length);
  $("rate-table").hidden = !(r && r.classrooms.length);
  if (!r) return;
  const th = (m) => { const x = document.createElement("th"); setText(x, m); return x; };
  head.append(th(msg("report.col.point")), th(msg("report.col.school")),
              ...r.weeks.map((w) => th(w)), th(msg("report.col.total")));
  for (const c of r.classrooms) {
    const tr = document.createElement("tr");
    const name = document.createElement("td");
    name.textContent = c.name === c.identity ? c.identity : `${c.name} (${c.identity})`;
    const school = document.createElement("td");
    school.textContent = c.school || "—";
    tr.append(name, school, ...r.weeks.map((w) => rateCell(c.weeks[w])), rateCell(c));
    body.append(tr);
  }
}

function renderLessons() {
  const list = $("lessons");
  list.replaceChildren();
  $("no-lessons").hidden = state.lessons.length > 0;
  for (const l of state.lessons) {
    const li = document.createElement("li");
    const b = document.createElement("button");
    b.type = "button";
    b.dataset.id = l.id;
    setText(b, msg(`report.lesson_line.${l.state}`, { when: when(l.started_at), room: l.room,
                                                     title: l.title || t("report.untimetabled") }));
    b.addEventListener("click", () => openReport(l.id, true));
    li.append(b);
    list.append(li);
  }
  markCurrent();
}

function markCurrent() {
  for (const b of $("lessons").querySelectorAll("button")) {
    b.setAttribute("aria-current", String(!!state.report && b.dataset.id === state.report.id));
  }
}

// ---- one lesson ------------------------------------------------------------------------------------------

async function openReport(id, push) {
  clearTimeout(state.refresh);
  try {
    state.report = await api("GET", `/api/lessons/${encodeURIComponent(id)}/report`);
  } catch (e) { failed(e); return; }
  if (state.report.state === "live") {
    state.refresh = setTimeout(() => { if (state.report && state.report.id === id) openReport(id, false); },
                               LIVE_REFRESH_MS);
  }
  if (push) {
    const u = new URL(window.location.href);
    u.searchParams.set("lesson", id);
    history.pushState({}, "", u);
  }
  const wasHidden = $("lesson").hidden;
  renderReport();
  markCurrent();
  $("lesson").hidden = false;
  if (push || wasHidden) $("lesson").scrollIntoView({ behavior: "smooth" });   // not on a live report's refresh
}

function renderReport() {
  const r = state.report;
  if (!r) return;
  const course = r.course;
  setText($("lesson-heading"), course ? msg("report.lesson_title", { title: course.title, when: when(r.started_at) })
    : msg("report.lesson_title_plain", { room: r.room, when: when(r.started_at) }));
  setText($("lesson-meta"), msg(`report.meta.${r.state}`, {
    room: r.room, teacher: (course && course.teacher) || "—", minutes: (r.duration_s / 60).toFixed(1) }));
  const s = r.summary;
  setText($("lesson-summary"), s.expected
    ? msg("report.summary", { came: s.attended_expected, expected: s.expected,
                              rate: Math.round((s.attendance_rate || 0) * 100), absent: r.absent.map((a) => a.name).join("、") || "—" })
    : msg("report.summary_plain", { n: s.attended }));
  const body = $("classrooms");
  body.replaceChildren();
  const cell = (v, num = false) => {
    const td = document.createElement("td");
    td.textContent = v === null || v === undefined || v === "" ? "—" : String(v);
    if (num) td.className = "num";
    return td;
  };
  for (const c of r.classrooms) {
    const q = c.quality || {};
    const tr = document.createElement("tr");
    tr.dataset.identity = c.identity;
    tr.append(cell(c.name), cell(t(c.expected ? "report.yes" : "report.no")), cell(hms(c.first_joined)),
              cell(hms(c.last_left)), cell(c.present_min.toFixed(1), true), cell(c.reconnects, true),
              cell(q.frozen_s, true), cell(q.loss_avg === null || q.loss_avg === undefined ? null
                : `${(q.loss_avg * 100).toFixed(1)}%`, true), cell(q.rtt_avg_ms, true));
    body.append(tr);
  }
  for (const a of r.absent) {
    const tr = document.createElement("tr");
    tr.dataset.identity = a.identity;
    tr.dataset.absent = "yes";
    tr.append(cell(a.name), cell(t("report.yes")), cell(t("report.absent")), cell(null), cell("0.0", true),
              cell(null), cell(null), cell(null), cell(null));
    body.append(tr);
  }
  drawChart(r);
}

// ---- the chart: a lane per classroom, bars as tall as the picture's lines, freezes in red ------------------

const COLORS = { frozen: "#e5383b", none: "#495057", idle: "#2b3644" };
function colorOf(stateName) {
  if (COLORS[stateName]) return COLORS[stateName];
  const lines = parseInt(stateName, 10) || 0;
  return lines >= 720 ? "#2f9e44" : lines >= 480 ? "#74b816" : lines >= 360 ? "#94d82d" : "#fab005";
}

function el(name, attrs, text) {
  const e = document.createElementNS(SVG, name);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, String(v));
  if (text !== undefined) e.textContent = text;
  return e;
}

function drawChart(r) {
  const W = 900, LABEL = 150, LANE = 34, TOP = 10, AXIS = 24;
  const rows = r.classrooms.filter((c) => c.quality && c.quality.segments);
  const dur = Math.max(1, r.duration_s);
  const svg = el("svg", { viewBox: `0 0 ${W} ${TOP + rows.length * LANE + AXIS}`, "data-lanes": rows.length });
  const x = (s) => LABEL + (Math.max(0, Math.min(dur, s)) / dur) * (W - LABEL - 10);
  let maxLines = 360;
  for (const c of rows) for (const seg of c.quality.segments) maxLines = Math.max(maxLines, parseInt(seg[2], 10) || 0);
  rows.forEach((c, i) => {
    const y = TOP + i * LANE, h = LANE - 8;
    svg.append(el("text", { x: 4, y: y + h / 2 + 5, fill: "#a9b3bf", "font-size": 13 }, c.name));
    svg.append(el("rect", { x: LABEL, y, width: W - LABEL - 10, height: h, fill: "#161d26" }));
    for (const [t0, t1, st] of c.quality.segments) {
      const lines = parseInt(st, 10);
      const bh = lines ? Math.max(4, h * lines / maxLines) : h;   // taller: more lines of picture
      const rect = el("rect", { x: x(t0), y: y + h - bh, width: Math.max(1, x(t1) - x(t0)), height: bh,
                                fill: colorOf(st), "data-state": st });
      rect.append(el("title", {}, `${t(`report.state.${lines ? "lines" : st}`, { lines })} · ${t0}–${t1} s`));
      svg.append(rect);
    }
  });
  const yAxis = TOP + rows.length * LANE;
  const step = [5, 10, 30, 60, 120, 300, 600, 900][[5, 10, 30, 60, 120, 300, 600, 900].findIndex((s) => dur / s <= 10)] || 1200;
  const label = (s) => (s >= 60 ? `${Math.floor(s / 60)}:${String(Math.round(s % 60)).padStart(2, "0")}` : `${Math.round(s)}s`);
  const ticks = [];
  for (let s = 0; s <= dur - step / 2; s += step) ticks.push(s);
  ticks.push(dur);   // the lesson's end
  for (const s of ticks) {
    svg.append(el("line", { x1: x(s), x2: x(s), y1: TOP, y2: yAxis, stroke: "#263241" }));
    svg.append(el("text", { x: x(s), y: yAxis + 16, fill: "#a9b3bf", "font-size": 12,
                            "text-anchor": s === dur ? "end" : "middle" }, label(s)));
  }
  $("chart").replaceChildren(svg);
  const legend = $("legend");
  legend.replaceChildren();
  for (const [key, color] of [["report.legend.hd", colorOf("720p")], ["report.legend.sd", colorOf("360p")],
                              ["report.legend.low", colorOf("180p")], ["report.legend.frozen", COLORS.frozen],
                              ["report.legend.none", COLORS.none], ["report.legend.idle", COLORS.idle]]) {
    const span = document.createElement("span");
    const i = document.createElement("i");
    i.style.background = color;
    const label = document.createElement("span");
    setText(label, msg(key));
    span.append(i, label);
    legend.append(span);
  }
}

// ---- start -----------------------------------------------------------------------------------------------

async function main() {
  await loadCatalogues(["common", "report"]);
  applyTranslations();
  mountLanguageSwitch($("lang-slot"));
  onLangChange(() => { renderRate(); renderLessons(); renderReport(); });
  const monday = weekStart(new Date());
  $("from").value = ymd(monday);
  $("to").value = ymd(addDays(monday, 6));
  $("range").addEventListener("submit", (e) => { e.preventDefault(); query(); });
  window.addEventListener("popstate", () => {
    const id = new URLSearchParams(location.search).get("lesson");
    if (id) openReport(id, false);
  });
  const id = new URLSearchParams(location.search).get("lesson");
  await Promise.all([query(), id ? openReport(id, false) : null]);
  window.liveclass.ready = true;
}

main().catch((e) => { window.liveclass.error = String(e); console.error(e); });
