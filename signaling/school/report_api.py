"""HTTP API of attendance and quality (model: attendance.py, quality.py, report.py; storage:
recorder/store/attendance.py).

    GET /api/lessons?from=&to=&room=            held lessons (an admin's; another token's: its room's)
    GET /api/lessons/{id}/report                JSON: an admin, or the teacher or an observer of its room
    GET /api/reports/attendance?from=&to=&school=&utc_offset=   CSV over a range, for a bureau (admin; ?token=
                                                allowed); dates and times on the bureau's clock
    GET /api/reports/start-rate?from=&to=&school=&utc_offset=   per teaching point and week (admin)
"""
from __future__ import annotations

import asyncio
import csv
import io
import time

from aiohttp import web

from recorder.store.attendance import AttendanceStore
from signaling.http import access
from signaling.school import params
from signaling.school.report import CSV_COLUMNS, at_offset, csv_rows, lesson_report, start_rate, state_of
from signaling.school.timetable import MAX_LESSON_S, Course, Occurrence, course_from_json, iso, occurrences
from signaling.school.timetable_api import ATTENDANCE, TIMETABLE

REPORT_ROLES = ("admin", "teacher", "observer")
WEEK_S = 7 * 86400
EXPORT_LIMIT = 1_000_000   # held lessons in one export (a range is at most 370 days)


def _report(request: web.Request, lesson_id: str) -> tuple[dict, dict]:
    store = request.app[ATTENDANCE]
    lesson = store.lesson(lesson_id)
    if lesson is None:
        raise web.HTTPNotFound(text="no such lesson")
    return lesson, lesson_report(lesson, store.rows(lesson_id), time.time())


async def lesson_report_view(request: web.Request) -> web.Response:
    grant = access.grant_of(request, query=True)
    lesson_id = params.lesson_id(request)
    lesson, report = _report(request, lesson_id)
    access.require(grant.role == "admin" or (grant.role in REPORT_ROLES and grant.allows_room(lesson["room"])),
                   "a lesson's report needs an admin token, or a teacher's or observer's of its room")
    return web.json_response(report)


async def list_lessons(request: web.Request) -> web.Response:
    grant = access.grant_of(request, query=True)
    t_from, t_to = params.time_range(request, WEEK_S)
    room = params.optional_room(request) if grant.role == "admin" else grant.room
    access.require(grant.role in REPORT_ROLES, "held lessons need an admin token, or a teacher's or observer's")
    limit = params.integer(request, "limit", 500, 1, 5000)
    rows = request.app[ATTENDANCE].lessons(t_from, t_to, room, limit)
    now = time.time()
    return web.json_response({"lessons": [
        {"id": h["id"], "room": h["room"], "state": state_of(h, now), "started_at": iso(h["started_at"]),
         "started_at_epoch": h["started_at"], "ended_at": iso(h["ended_at"]) if h["ended_at"] else None,
         "course_id": h["course_id"] or None, "slot_id": h["slot_id"] or None, "title": h["title"],
         "subject": h["subject"], "teacher": h["teacher"], "school": h["school"],
         "recording_id": h["recording_id"] or None, "report_url": f"/api/lessons/{h['id']}/report"}
        for h in rows]})


def _courses(request: web.Request) -> list[Course]:
    return [course_from_json(d) for d in request.app[TIMETABLE].all()]


async def attendance_csv(request: web.Request) -> web.Response:
    _query_admin(request)
    t_from, t_to = params.time_range(request, WEEK_S)
    school = params.text(request, "school")
    offset = params.integer(request, "utc_offset", 0, -14 * 60, 14 * 60)
    # a year of a county's lessons is many rows: read and written off the event loop, the lessons go on
    body = await asyncio.to_thread(_attendance_csv, request.app[ATTENDANCE], _courses(request), t_from, t_to,
                                   school, offset, time.time())
    name = f"attendance-{iso(t_from)[:10]}-{iso(t_to - 1)[:10]}.csv"
    return web.Response(body=body, headers={
        "Content-Type": "text/csv; charset=utf-8", "Content-Disposition": f'attachment; filename="{name}"'})


def _attendance_csv(store: AttendanceStore, courses: list[Course], t_from: float, t_to: float, school: str,
                    offset: int, now: float) -> bytes:
    out = io.StringIO()
    out.write("\ufeff")   # Excel reads UTF-8 (Chinese names) only with the BOM
    w = csv.writer(out)
    w.writerow(CSV_COLUMNS)
    held_keys = set()
    lessons = store.lessons(t_from, t_to, limit=EXPORT_LIMIT)
    rows = store.rows_of([x["id"] for x in lessons])
    for lesson in lessons:
        if lesson["course_id"]:
            held_keys.add((lesson["course_id"], lesson["slot_id"], float(lesson["occurrence_start"] or 0)))
        for row in csv_rows(lesson_report(lesson, rows[lesson["id"]], now), offset):
            if not school or school in (row[8], row[11]):
                w.writerow(row)
    for o in occurrences(courses, t_from, t_to):   # timetabled, never started: nobody came
        if (o.course.id, o.slot.id, float(o.start)) in held_keys or o.start > now:
            continue
        for row in _not_held(o, offset):
            if not school or school in (row[8], row[11]):
                w.writerow(row)
    return out.getvalue().encode()


def _not_held(o: Occurrence, utc_offset_min: int) -> list[list]:
    c = o.course
    base = [at_offset(iso(o.start), utc_offset_min)[:10], "", c.room, c.id, c.title, c.subject, c.grade, c.teacher,
            c.school]
    return [base + [x.identity, x.name, x.school, "yes", "no", "", "", 0, 0, "", "", "", "", "", "not_held"]
            for x in c.classrooms]


def _query_admin(request: web.Request) -> None:
    grant = access.grant_of(request, query=True)
    access.require(grant.role == "admin", "only an admin may export attendance")


async def start_rate_view(request: web.Request) -> web.Response:
    _query_admin(request)
    t_from, t_to = params.time_range(request, WEEK_S)
    school = params.text(request, "school")
    offset = params.integer(request, "utc_offset", 0, -14 * 60, 14 * 60)
    now = time.time()
    found = [o for o in occurrences(_courses(request), t_from, t_to) if o.start <= now]   # those due by now
    store = request.app[ATTENDANCE]

    def compute() -> dict:
        held = store.lessons(t_from - MAX_LESSON_S, t_to, limit=EXPORT_LIMIT)
        attended = store.attended([h["id"] for h in held])
        return start_rate(found, [{**h, "attended": attended[h["id"]]} for h in held], offset, school)

    result = await asyncio.to_thread(compute)   # off the event loop, as the CSV
    return web.json_response({"from": t_from, "to": t_to, "utc_offset": offset, "school": school, **result})


def add_routes(app: web.Application) -> None:
    r = app.router
    r.add_get("/api/lessons", list_lessons)
    r.add_get("/api/lessons/{id}/report", lesson_report_view)
    r.add_get("/api/reports/attendance", attendance_csv)
    r.add_get("/api/reports/start-rate", start_rate_view)
