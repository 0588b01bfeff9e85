"""WHIP (RFC 9725) and WHEP endpoints: publish and play a room's lesson over plain HTTP + SDP.

`?source=` chooses what: WHIP `camera` (default: the teacher's camera and microphone, or a terminal's own
classroom camera and microphone) or `screen` (the teacher's screen share); WHEP `camera` (default: the teacher),
`screen`, `stage` (the classroom on stage, following the stage) or `classroom&identity=X` (teacher/admin: one
classroom's camera and microphone). Rights: media_rights.py.
"""
from __future__ import annotations

import logging
from typing import Optional

from aiohttp import web

from sfu.errors import SfuError
from sfu.node import SfuNode

from signaling.media import media_rights
from signaling.http.admission import ADMISSION
from signaling.http.app_keys import LESSON_BUS, SFU
from signaling.http.http_errors import CORS_HEADERS, text_error
from signaling.http.request_body import read_body
from signaling.live.room_media import lesson_of
from signaling.lesson.room_state import CONSOLE_ROLES
from signaling.auth.tokens import Grant
from signaling.http import access
from signaling.http.access import room_of

log = logging.getLogger(__name__)

MAX_SDP_BYTES = 64 * 1024


def authorize(request: web.Request, room: str, need: str) -> Grant:
    """The bearer token's grant for this room and right (publish or subscribe), or the 401/403."""
    grant = access.room_grant(request, room)
    if need == "publish":
        access.require(grant.can_publish and bool(grant.sources), f"role {grant.role} may not publish")
    if need == "subscribe":
        access.require(grant.can_subscribe, f"role {grant.role} may not subscribe")
    return grant


async def read_offer(request: web.Request) -> str:
    ctype = request.headers.get("Content-Type", "").split(";")[0].strip().lower()
    if ctype != "application/sdp":
        raise web.HTTPUnsupportedMediaType(text="Content-Type must be application/sdp")
    body = await read_body(request, MAX_SDP_BYTES, "SDP offer")
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError:
        raise web.HTTPBadRequest(text="SDP offer is not UTF-8")


def max_height_of(request: web.Request) -> Optional[int]:
    """The viewer's own cap on picture height: `?max=360` (or `360p`) on WHEP."""
    raw = request.query.get("max")
    if raw is None or raw == "":
        return None
    try:
        value = int(raw.lower().removesuffix("p"))
    except ValueError:
        raise web.HTTPBadRequest(text="max must be a picture height such as 360")
    if not 90 <= value <= 4320:
        raise web.HTTPBadRequest(text="max must be a picture height between 90 and 4320")
    return value


def make_handlers(kind: str):
    need = "publish" if kind == "whip" else "subscribe"
    role = "publisher" if kind == "whip" else "viewer"

    async def create(request: web.Request) -> web.Response:
        room = room_of(request)
        grant = authorize(request, room, need)
        source = media_rights.source_of(request, media_rights.WHIP_SOURCES if kind == "whip"
                                        else media_rights.WHEP_SOURCES)
        max_height = max_height_of(request) if kind == "whep" else None
        offer = await read_offer(request)
        node: SfuNode = request.app[SFU]
        lesson = lesson_of(request.app, room)
        bus = request.app.get(LESSON_BUS)
        if lesson is None and bus is not None and bus.was_removed(room, grant.identity):
            return text_error(403, "you were removed from this lesson")  # on an edge: the origin's lesson says so
        admission = request.app[ADMISSION]
        try:
            if kind == "whip":
                slot = media_rights.publish_slot(grant, source, offer, lesson)
                admission.check_capacity(node, room)
                session_id, answer = await node.publish(room, offer, slot, owner=grant.identity)
            else:
                slot = media_rights.play_slot(grant, source, request.query.get("identity"), lesson)
                admission.check_capacity(node, room)
                session_id, answer = await node.play(room, offer, max_height=max_height, slot=slot,
                                                     owner=grant.identity)
                await admission.cap_playback(node, room, grant.identity, slot)
        except SfuError as exc:
            log.info("%s offer for %s from %s refused (%d): %s", kind, room, grant.identity, exc.status, exc)
            return text_error(exc.status, str(exc))
        headers = dict(CORS_HEADERS)
        headers["Location"] = f"/{kind}/{room}/{session_id}"
        headers["ETag"] = f'"{session_id}"'
        return web.Response(status=201, text=answer, content_type="application/sdp", headers=headers)

    async def delete(request: web.Request) -> web.Response:
        room = room_of(request)
        grant = authorize(request, room, need)
        node: SfuNode = request.app[SFU]
        try:
            session = node.session(room, request.match_info["session"], role)
            if session.owner not in ("", grant.identity) and grant.role not in CONSOLE_ROLES:
                return text_error(403, "this session belongs to someone else")
            await session.close()
        except SfuError as exc:
            return text_error(exc.status, str(exc))
        return web.Response(status=200, headers=CORS_HEADERS)

    async def status(request: web.Request) -> web.Response:
        """The session's own media state (a terminal's status overlay): layer, estimate, loss, RTT."""
        room = room_of(request)
        authorize(request, room, need)
        try:
            session = request.app[SFU].session(room, request.match_info["session"], role)
        except SfuError as exc:
            return text_error(exc.status, str(exc))
        return web.json_response(session.dump(), headers=CORS_HEADERS)

    async def layer(request: web.Request) -> web.Response:
        """A viewer caps its own picture height: `{"max_height": 360}` (null lifts the cap)."""
        room = room_of(request)
        authorize(request, room, need)
        try:
            body = await request.json()
            value = body.get("max_height") if isinstance(body, dict) else "bad"
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or not 90 <= value <= 4320):
                raise ValueError
        except ValueError:
            return text_error(400, 'body must be JSON {"max_height": <90..4320 or null>}')
        try:
            session = request.app[SFU].session(room, request.match_info["session"], role)
        except SfuError as exc:
            return text_error(exc.status, str(exc))
        session.set_max_height(value)
        return web.json_response({"max_height": value}, headers=CORS_HEADERS)

    async def patch(request: web.Request) -> web.Response:
        room_of(request)
        return text_error(405, "trickle ICE and ICE restart are not supported; start a new session")

    async def options(request: web.Request) -> web.Response:
        return web.Response(status=204, headers=CORS_HEADERS)

    return create, delete, patch, options, status, layer


def add_routes(app: web.Application) -> None:
    for kind in ("whip", "whep"):
        create, delete, patch, options, status, layer = make_handlers(kind)
        app.router.add_get(f"/{kind}/{{room}}/{{session}}", status)
        if kind == "whep":
            app.router.add_post(f"/{kind}/{{room}}/{{session}}/layer", layer)
        app.router.add_post(f"/{kind}/{{room}}", create)
        app.router.add_route("OPTIONS", f"/{kind}/{{room}}", options)
        app.router.add_delete(f"/{kind}/{{room}}/{{session}}", delete)
        app.router.add_patch(f"/{kind}/{{room}}/{{session}}", patch)
        app.router.add_route("OPTIONS", f"/{kind}/{{room}}/{{session}}", options)
