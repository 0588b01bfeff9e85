"""Who may publish or play what over WHIP/WHEP: the token's grant, and the room's lesson when one runs.

Without a lesson (nobody on the room WebSocket) the grant alone decides, as plain WHIP/WHEP always did. With
one, `LessonState.publish_refusal` has the last word (a removed identity, a classroom outside the lesson).
Refusals raise aiohttp HTTP errors with a short reason (400 for a malformed query, 403 for a right).
"""
from __future__ import annotations

import re
from typing import Optional

from aiohttp import web

from sfu.room.feed import Slot

from signaling.lesson.room_state import CONSOLE_ROLES, LessonState
from signaling.auth.tokens import Grant

WHIP_SOURCES = ("camera", "screen")
WHEP_SOURCES = ("camera", "screen", "stage", "classroom")
MAX_IDENTITY_CHARS = 128

# which grant source each offered media kind needs, per WHIP source
_NEEDS = {"camera": {"video": "camera", "audio": "microphone"}, "screen": {"video": "screen", "audio": "screen"}}


def offered_kinds(sdp: str) -> list[str]:
    """The media kinds an SDP offer sends (m-sections that are sendonly or sendrecv), in order, once each."""
    kinds: list[str] = []
    session_dir = "sendrecv"
    sections = re.split(r"^(?=m=)", sdp, flags=re.M)
    m = re.search(r"^a=(sendrecv|sendonly|recvonly|inactive)\s*$", sections[0], re.M)
    if m:
        session_dir = m.group(1)
    for section in sections[1:]:
        kind = re.match(r"m=(\w+)", section)
        d = re.search(r"^a=(sendrecv|sendonly|recvonly|inactive)\s*$", section, re.M)
        direction = d.group(1) if d else session_dir
        if kind and kind.group(1) in ("audio", "video") and direction in ("sendonly", "sendrecv"):
            if kind.group(1) not in kinds:
                kinds.append(kind.group(1))
    return kinds


def source_of(request: web.Request, allowed: tuple[str, ...]) -> str:
    source = request.query.get("source") or "camera"
    if source not in allowed:
        raise web.HTTPBadRequest(text=f"source must be one of {', '.join(allowed)}")
    return source


def publish_slot(grant: Grant, source: str, offer: str, lesson: Optional[LessonState]) -> Slot:
    """Where `grant` may publish `source` with this offer: the teacher's camera or screen slot, or (a terminal)
    its own classroom slot. Raises 403 with the reason otherwise."""
    if grant.role in CONSOLE_ROLES:
        slot = Slot(source)
    elif grant.role == "terminal":
        if source != "camera":
            raise web.HTTPForbidden(text=f"a terminal publishes only its camera and microphone, not {source}")
        slot = Slot("classroom", grant.identity)
    else:
        raise web.HTTPForbidden(text=f"role {grant.role} may not publish")
    needs = list(dict.fromkeys(_NEEDS[source][k] for k in offered_kinds(offer)))
    if not needs:
        return slot  # an offer that sends nothing: the SFU answers 400 with its reason
    refused = [s for s in needs if not grant.may_publish(s)]
    if refused:
        raise web.HTTPForbidden(text=f"this {grant.role} token may not publish {', '.join(refused)}")
    if lesson is not None:
        refusal = lesson.publish_refusal(grant, needs)
        if refusal is not None:
            raise web.HTTPForbidden(text=refusal.message)
    return slot


def play_slot(grant: Grant, source: str, identity: Optional[str], lesson: Optional[LessonState]) -> Slot:
    """What `grant` may play: the teacher's camera, screen, the stage, or (teacher/admin) one classroom."""
    if source == "classroom":
        if not identity or len(identity) > MAX_IDENTITY_CHARS:
            raise web.HTTPBadRequest(text=f"source=classroom needs identity=<1-{MAX_IDENTITY_CHARS} characters>")
        if grant.role not in CONSOLE_ROLES:
            raise web.HTTPForbidden(text=f"only the teacher may watch a classroom's camera, not a {grant.role}")
        slot = Slot("classroom", identity)
    else:
        if identity is not None:
            raise web.HTTPBadRequest(text="identity goes only with source=classroom")
        slot = Slot(source)
    if lesson is not None and grant.identity in lesson.removed:
        raise web.HTTPForbidden(text="you were removed from this lesson")
    return slot
