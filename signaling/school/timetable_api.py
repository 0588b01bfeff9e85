"""HTTP API of the timetable (model: timetable.py; storage: recorder/store/timetable.py).

    GET    /api/courses                 an admin's: every course; another token's: its room's (?room= for admins)
    POST   /api/courses                 create: an admin, or the teacher of the course's room
    GET    /api/courses/{id}            an admin, or a token of the course's room
    PUT    /api/courses/{id}            replace (lessons keep the ids sent back): as POST, for the old and new room
    DELETE /api/courses/{id}            as PUT
    GET    /api/timetable?from=&to=     the lessons in a range (default: 7 days from now), each with the held
                                        lessons that gave it (their report ids)

A course: {"title", "subject", "grade", "teacher", "school", "room", "classrooms": [{"identity", "name",
"school"}], "lessons": [{"start", "end", "weekly", "until"}]}, times ISO 8601 with their UTC offset.
"""
from __future__ import annotations

import secrets

from aiohttp import web

from recorder.store.attendance import AttendanceStore
from recorder.store.timetable import TimetableStore
from signaling.auth.tokens import Grant
from signaling.http import access
from signaling.school import params
from signaling.school.timetable import (MAX_LESSON_S, Course, TimetableError, course_from_json, occurrences,
                                        parse_course)

TIMETABLE = web.AppKey("timetable", TimetableStore)
ATTENDANCE = web.AppKey("attendance", AttendanceStore)
MANAGERS = ("teacher", "admin")
WEEK_S = 7 * 86400
COURSE_ID_LEN = 16


def _may_manage(grant: Grant, room: str) -> None:
    access.require(grant.role == "admin" or (grant.role in MANAGERS and grant.allows_room(room)),
                   "only an admin, or the teacher of the course's room, may change a course")


def _may_read(grant: Grant, room: str) -> None:
    access.require(grant.role == "admin" or grant.allows_room(room),
                   "courses need an admin token or a token of the course's room")


def _course(request: web.Request) -> Course:
    cid = request.match_info["id"]
    doc = request.app[TIMETABLE].get(cid) if params.ID_RE.match(cid) else None
    if doc is None:
        raise web.HTTPNotFound(text="no such course")
    return course_from_json(doc)


async def _parse(request: web.Request, course_id: str) -> Course:
    body = await params.json_body(request)
    if isinstance(body, dict) and isinstance(body.get("room"), str):
        access.valid_room(body["room"].strip())
    try:
        return parse_course(body, course_id, lambda: secrets.token_hex(4))
    except TimetableError as exc:
        raise web.HTTPBadRequest(text=str(exc)) from None


async def list_courses(request: web.Request) -> web.Response:
    grant = access.grant_of(request, query=True)
    room = params.optional_room(request) if grant.role == "admin" else grant.room
    docs = request.app[TIMETABLE].all(room)
    return web.json_response({"courses": docs})


async def create_course(request: web.Request) -> web.Response:
    grant = access.grant_of(request)
    course = await _parse(request, secrets.token_hex(COURSE_ID_LEN // 2))
    _may_manage(grant, course.room)
    request.app[TIMETABLE].put(course.to_json())
    return web.json_response(course.to_json(), status=201, headers={"Location": f"/api/courses/{course.id}"})


async def get_course(request: web.Request) -> web.Response:
    grant = access.grant_of(request, query=True)
    course = _course(request)
    _may_read(grant, course.room)
    return web.json_response(course.to_json())


async def replace_course(request: web.Request) -> web.Response:
    grant = access.grant_of(request)
    old = _course(request)
    _may_manage(grant, old.room)
    course = await _parse(request, old.id)
    _may_manage(grant, course.room)
    request.app[TIMETABLE].put(course.to_json())
    return web.json_response(course.to_json())


async def delete_course(request: web.Request) -> web.Response:
    grant = access.grant_of(request)
    course = _course(request)
    _may_manage(grant, course.room)
    request.app[TIMETABLE].delete(course.id)
    return web.Response(status=204)


async def timetable(request: web.Request) -> web.Response:
    grant = access.grant_of(request, query=True)
    t_from, t_to = params.time_range(request, WEEK_S)
    room = params.optional_room(request) if grant.role == "admin" else grant.room
    courses = [course_from_json(d) for d in request.app[TIMETABLE].all(room)]
    found = occurrences(courses, t_from, t_to)
    held: dict[tuple[str, str, float], list[str]] = {}
    for h in request.app[ATTENDANCE].lessons(t_from - MAX_LESSON_S, t_to, room):
        if h["course_id"]:
            held.setdefault((h["course_id"], h["slot_id"], float(h["occurrence_start"] or 0)), []).append(h["id"])
    return web.json_response({
        "from": t_from, "to": t_to,
        "lessons": [{**o.to_json(), "held": held.get((o.course.id, o.slot.id, float(o.start)), [])} for o in found]})


def add_routes(app: web.Application) -> None:
    r = app.router
    r.add_get("/api/courses", list_courses)
    r.add_post("/api/courses", create_course)
    r.add_get("/api/courses/{id}", get_course)
    r.add_put("/api/courses/{id}", replace_course)
    r.add_delete("/api/courses/{id}", delete_course)
    r.add_get("/api/timetable", timetable)
