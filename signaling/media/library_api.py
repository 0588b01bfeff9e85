"""HTTP API of the recorder and the resource library (storage logic: recorder/).

    POST   /api/rooms/{room}/recording      start (Bearer token of the room's teacher, or an admin); JSON body
                                            optional: title, teacher, school, subject, grade
    DELETE /api/rooms/{room}/recording      stop and finalize
    GET    /api/library                     ?q=&teacher=&subject=&from=&to=&state=&limit=&offset=
    GET    /api/library/{id}                one lesson
    GET    /api/library/{id}/media          the WebM file, with HTTP Range (seeking)
    GET    /api/library/{id}/screen         the screen share's WebM file (when there was one), `screen_offset_s`
                                            seconds into the lesson
    GET    /api/library/{id}/thumbnail      poster (JPEG)
    GET    /api/library/{id}/chapters/{n}/thumbnail
    PATCH  /api/library/{id}                admin: edit title, teacher, school, subject, grade
    DELETE /api/library/{id}                admin: delete the lesson and its files

Reading the library needs no token: it is the public resource library. Errors are short plain text.
"""
from __future__ import annotations

import asyncio
import calendar
import json
import logging
import time
from pathlib import Path
from typing import Any, Iterable, Optional

from aiohttp import web

from recorder.store.catalogue import STATES, Query
from recorder.store.library import Library
from recorder.service import MEDIA_NAME, Recorder, RecorderError
from recorder.session import SessionConfig

from signaling.http import access
from signaling.http.request_body import read_body
from signaling.http.app_keys import SFU
from signaling.cluster.cluster_routes import REGISTRY
from signaling.live.room_ws import HUB
from signaling.auth.tokens import Grant

log = logging.getLogger(__name__)

RECOVERY_SWEEP_S = 5.0    # cluster mode: how often a node looks for lessons whose recording node died
MAX_LIMIT = 100
MAX_BODY = 16 * 1024
RECORDER = web.AppKey("recorder", Recorder)  # setup; the room WebSocket's hub records through it too
CONSOLE_ROLES = ("teacher", "admin")




def _console(request: web.Request, room: str) -> Grant:
    grant = access.grant_of(request)
    if grant.role not in CONSOLE_ROLES:
        raise web.HTTPForbidden(text="only the room's teacher or an admin may start or stop recording")
    if not grant.allows_room(room):
        raise web.HTTPForbidden(text="token is for another room")
    return grant


def _admin(request: web.Request) -> Grant:
    grant = access.grant_of(request)
    if grant.role != "admin":
        raise web.HTTPForbidden(text="only an admin may edit or delete lessons")
    return grant


def _iso(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


def present(lesson: dict) -> dict:
    """A catalogue row as the API shows it."""
    lid = lesson["id"]
    base = f"/api/library/{lid}"
    playable = lesson["state"] != "failed" or lesson.get("duration_s", 0) > 0
    return {
        "id": lid, "title": lesson["title"], "room": lesson["room"], "teacher": lesson["teacher"],
        "school": lesson["school"], "subject": lesson["subject"], "grade": lesson["grade"],
        "started_at": _iso(lesson["started_at"]), "started_at_epoch": round(lesson["started_at"], 3),
        "duration_s": round(lesson["duration_s"], 3), "state": lesson["state"], "tracks": lesson["tracks"],
        "size": lesson["size"], "error": lesson.get("error"),
        "course_id": lesson.get("course_id") or None, "lesson_id": lesson.get("lesson_id") or None,
        "media_url": f"{base}/media" if playable else None,
        "screen_url": f"{base}/screen" if playable and lesson.get("screen_file") else None,
        "screen_offset_s": round(lesson.get("screen_offset_s") or 0.0, 3),
        "thumbnail_url": f"{base}/thumbnail" if lesson.get("thumbnail") else None,
        "chapters": [{"index": c.get("index", i), "t": c["t"], "title": c.get("title", f"Chapter {i + 1}"),
                      "thumbnail_url": f"{base}/chapters/{i}/thumbnail" if c.get("thumbnail") else None}
                     for i, c in enumerate(lesson.get("chapters") or [])],
    }


def _date(value: str, name: str, end: bool) -> float:
    """YYYY-MM-DD (whole day, UTC), an ISO date-time in UTC, or epoch seconds."""
    v = value.strip()
    try:
        if len(v) == 10 and v[4] == "-" and v[7] == "-":
            t = calendar.timegm(time.strptime(v, "%Y-%m-%d"))
            return t + 86400 if end else t
        if "T" in v:
            return calendar.timegm(time.strptime(v.rstrip("Z")[:19], "%Y-%m-%dT%H:%M:%S"))
        t = float(v)
        if t != t or abs(t) > 1e11:
            raise ValueError
        return t
    except (ValueError, IndexError, OverflowError):
        raise web.HTTPBadRequest(text=f"{name} must be a date (YYYY-MM-DD), an ISO time or epoch seconds") from None


def _int(value: Optional[str], name: str, default: int, lo: int, hi: int) -> int:
    if value is None or value == "":
        return default
    try:
        n = int(value)
    except ValueError:
        raise web.HTTPBadRequest(text=f"{name} must be an integer") from None
    if not lo <= n <= hi:
        raise web.HTTPBadRequest(text=f"{name} must be between {lo} and {hi}")
    return n


def _text(value: Optional[str], name: str) -> str:
    v = (value or "").strip()
    if len(v) > 200:
        raise web.HTTPBadRequest(text=f"{name} is too long")
    return v


async def _json_body(request: web.Request) -> dict:
    if not request.can_read_body:
        return {}
    raw = await read_body(request, MAX_BODY, "body")
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise web.HTTPBadRequest(text="body must be JSON") from None
    if not isinstance(body, dict):
        raise web.HTTPBadRequest(text="body must be a JSON object")
    return body


def _recorder(request: web.Request) -> Recorder:
    return request.app[RECORDER]


def _lesson(request: web.Request) -> dict:
    lid = request.match_info["id"]
    rec = _recorder(request)
    lesson = rec.library.catalogue.get(lid) if Library.valid_id(lid) else None
    if lesson is None:
        raise web.HTTPNotFound(text="no such lesson")
    return lesson


# ---- recording ---------------------------------------------------------------------------------------------

async def start_recording(request: web.Request) -> web.Response:
    room = access.room_of(request)
    grant = _console(request, room)
    meta = await _json_body(request)
    rec = _recorder(request)
    already = rec.recording(room) is not None
    try:
        lesson = await rec.start(room, grant, meta)
    except RecorderError as exc:
        raise _status(exc) from None
    return web.json_response(present(lesson), status=200 if already else 201)


async def stop_recording(request: web.Request) -> web.Response:
    room = access.room_of(request)
    _console(request, room)
    lesson = await _recorder(request).stop(room)
    if lesson is None:
        raise web.HTTPNotFound(text="this room is not being recorded")
    return web.json_response(present(lesson))


def _status(exc: RecorderError) -> web.HTTPException:
    cls = {400: web.HTTPBadRequest, 404: web.HTTPNotFound, 409: web.HTTPConflict, 503: web.HTTPServiceUnavailable,
           507: web.HTTPInsufficientStorage}.get(exc.status, web.HTTPConflict)
    return cls(text=str(exc))


# ---- library -----------------------------------------------------------------------------------------------

async def list_lessons(request: web.Request) -> web.Response:
    q = request.query
    state = _text(q.get("state"), "state")
    if state and state not in STATES:
        raise web.HTTPBadRequest(text=f"state must be one of {', '.join(STATES)}")
    query = Query(text=_text(q.get("q"), "q"), teacher=_text(q.get("teacher"), "teacher"),
                  subject=_text(q.get("subject"), "subject"), state=state,
                  date_from=_date(q["from"], "from", False) if q.get("from") else None,
                  date_to=_date(q["to"], "to", True) if q.get("to") else None,
                  limit=_int(q.get("limit"), "limit", 20, 1, MAX_LIMIT),
                  offset=_int(q.get("offset"), "offset", 0, 0, 10**9))
    rows, total = _recorder(request).library.catalogue.search(query)
    return web.json_response({"lessons": [present(r) for r in rows], "total": total,
                              "limit": query.limit, "offset": query.offset})


async def get_lesson(request: web.Request) -> web.Response:
    return web.json_response(present(_lesson(request)))


def _file(request: web.Request, lesson: dict, name: str) -> Path:
    path = _recorder(request).library.file(lesson["id"], name)
    if path is None:
        raise web.HTTPNotFound(text="not available for this lesson (yet)")
    return path


async def media(request: web.Request) -> web.StreamResponse:
    lesson = _lesson(request)
    return _serve_media(request, lesson, Path(lesson["media_file"]).name or MEDIA_NAME)


async def screen(request: web.Request) -> web.StreamResponse:
    lesson = _lesson(request)
    if not lesson.get("screen_file"):
        raise web.HTTPNotFound(text="this lesson has no screen share")
    return _serve_media(request, lesson, lesson["screen_file"])


def _serve_media(request: web.Request, lesson: dict, name: str) -> web.StreamResponse:
    path = _file(request, lesson, name)
    if "Range" in request.headers:
        size = path.stat().st_size
        try:
            rng = request.http_range
        except ValueError:
            raise web.HTTPRequestRangeNotSatisfiable(text="malformed or unsupported Range header",
                                                     headers={"Content-Range": f"bytes */{size}"}) from None
        if rng.start is not None and rng.start >= size:
            raise web.HTTPRequestRangeNotSatisfiable(text="the range starts beyond the end of the file",
                                                     headers={"Content-Range": f"bytes */{size}"})
    webm = all(t.get("codec") in ("VP8", "VP9", "opus") for t in lesson.get("tracks") or [])
    return web.FileResponse(path, headers={
        "Content-Type": "video/webm" if webm else "video/x-matroska",
        "Cache-Control": "no-cache" if lesson["state"] == "recording" else "public, max-age=60",
        "Access-Control-Allow-Origin": "*"})


async def thumbnail(request: web.Request) -> web.StreamResponse:
    lesson = _lesson(request)
    if not lesson.get("thumbnail"):
        raise web.HTTPNotFound(text="no thumbnail for this lesson (yet)")
    return web.FileResponse(_file(request, lesson, lesson["thumbnail"]), headers={"Content-Type": "image/jpeg"})


async def chapter_thumbnail(request: web.Request) -> web.StreamResponse:
    lesson = _lesson(request)
    raw = request.match_info["n"]
    chapters = lesson.get("chapters") or []
    if not raw.isdigit() or len(raw) > 6 or int(raw) >= len(chapters) or not chapters[int(raw)].get("thumbnail"):
        raise web.HTTPNotFound(text="no such chapter")
    return web.FileResponse(_file(request, lesson, chapters[int(raw)]["thumbnail"]),
                            headers={"Content-Type": "image/jpeg"})


async def edit_lesson(request: web.Request) -> web.Response:
    _admin(request)
    lesson = _lesson(request)
    changes = await _json_body(request)
    try:
        updated = _recorder(request).edit(lesson["id"], changes)
    except RecorderError as exc:
        raise _status(exc)
    if updated is None:
        raise web.HTTPNotFound(text="no such lesson")
    return web.json_response(present(updated))


async def delete_lesson(request: web.Request) -> web.Response:
    _admin(request)
    lesson = _lesson(request)
    try:
        _recorder(request).delete(lesson["id"])
    except RecorderError as exc:
        raise _status(exc)
    return web.Response(status=204)


def setup(app: web.Application, library_dir: str | Path, config: SessionConfig = SessionConfig(),
          analyze: bool = True, auto_rooms: Iterable[str] = (), node_id: str = "") -> Recorder:
    """The library at `library_dir`, the recorder at app[RECORDER] (also the recorder of the room WebSocket's hub,
    for its recording messages: set up after room_ws) and the routes. Unfinished recordings are recovered when the
    app starts. Lessons of the rooms in `auto_rooms` ('*': every room) are recorded from `lesson_start` to
    `lesson_end` without anyone asking.

    `node_id` (cluster mode): the nodes share the folder and its catalogue, so any node answers the library API
    for every lesson; each recovers its own lessons at start, and, every few seconds, those of a dead node."""
    library = Library(library_dir, shared=bool(node_id))
    recorder = Recorder(library, app[SFU], config, analyze, node_id=node_id)
    app[RECORDER] = recorder
    hub = app.get(HUB)
    if hub is not None:
        hub.recorder = recorder
    r = app.router
    r.add_post("/api/rooms/{room}/recording", start_recording)
    r.add_delete("/api/rooms/{room}/recording", stop_recording)
    r.add_get("/api/library", list_lessons)
    r.add_get("/api/library/{id}", get_lesson)
    r.add_patch("/api/library/{id}", edit_lesson)
    r.add_delete("/api/library/{id}", delete_lesson)
    r.add_get("/api/library/{id}/media", media)
    r.add_get("/api/library/{id}/screen", screen)
    r.add_get("/api/library/{id}/thumbnail", thumbnail)
    r.add_get("/api/library/{id}/chapters/{n}/thumbnail", chapter_thumbnail)

    sweeper: list[asyncio.Task] = []

    async def recover() -> None:
        registry = app.get(REGISTRY)   # set up after us (cluster_routes.setup)
        is_alive = registry.is_alive if node_id and registry is not None else None
        confirm = 2 * registry.config.ttl_s if is_alive is not None else 0.0
        recovered = await recorder.recover(is_alive, confirm)
        if recovered:
            log.info("recovered %d unfinished recording(s): %s", len(recovered),
                     ", ".join(f"{x['id']} ({x['state']})" for x in recovered))

    async def sweep() -> None:
        while True:  # the node's lifetime, cancelled at shutdown
            await asyncio.sleep(RECOVERY_SWEEP_S)
            try:
                await recover()
            except Exception:
                log.exception("looking for recordings of dead nodes failed")

    async def startup(app: web.Application) -> None:
        await recover()
        if node_id:
            sweeper.append(asyncio.get_running_loop().create_task(sweep(), name="recovery sweep"))

    async def shutdown(app: web.Application) -> None:
        for task in sweeper:
            task.cancel()
        await asyncio.gather(*sweeper, return_exceptions=True)
        await recorder.close()

    async def cleanup(app: web.Application) -> None:
        library.close()

    app.on_startup.append(startup)
    app.on_shutdown.insert(0, shutdown)   # finalize recordings before the SFU closes its sessions
    app.on_cleanup.append(cleanup)
    _bridge_events(app, recorder)
    auto = frozenset(auto_rooms)
    if auto:
        _record_lessons(app, recorder, auto)
    return recorder


_STATE = {"recording_started": (True, None), "recording_stopped": (False, None), "recording_failed": (False, "")}


def _bridge_events(app: web.Application, recorder: Recorder) -> None:
    """The room follows the recorder whoever started or stopped it (HTTP API, automatic, a full disk). Deferred
    to the next loop turn: when the room WebSocket itself asked, the hub has recorded who did first."""
    def on_event(event: dict[str, Any]) -> None:
        hub = app.get(HUB)
        change = _STATE.get(event["type"])
        notify = getattr(hub, "recorder_changed", None)
        if change is None or notify is None or "room" not in event:
            return
        active, reason = change
        if reason is not None:
            reason = event.get("reason") or "recording failed"
        asyncio.get_running_loop().call_soon(notify, event["room"], active, reason)

    recorder.on_event(on_event)


def _record_lessons(app: web.Application, recorder: Recorder, rooms: frozenset[str]) -> None:
    """Automatic recording: a lesson of one of `rooms` is recorded while it is live."""
    tasks: set[asyncio.Task] = set()

    async def follow(room: str, live: bool) -> None:
        try:
            if live:
                state = hub.state(room)
                teachers = [p.grant for p in getattr(state, "participants", {}).values() if p.role == "teacher"]
                await recorder.start(room, teachers[0] if teachers else None)
            else:
                await recorder.stop(room)
        except Exception:
            log.exception("automatic recording of %s failed to %s", room, "start" if live else "stop")

    def on_change(room: str, change: Any) -> None:
        if change.kind != "live" or ("*" not in rooms and room not in rooms):
            return
        task = asyncio.get_running_loop().create_task(follow(room, bool(change.value)))
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    hub = app.get(HUB)
    if hub is None:
        log.warning("automatic recording needs the room WebSocket (lessons start and end there)")
        return
    unsubscribe = hub.on_change(on_change)

    async def stop_following(app: web.Application) -> None:
        unsubscribe()
        await asyncio.gather(*tasks, return_exceptions=True)

    app.on_shutdown.insert(0, stop_following)
