"""Pure parts of the two-way lesson: which sources an offer publishes, who may publish or play which slot, what
the SFU is told about the lesson, and how a room's feeds follow it (no sockets, no peers)."""
from __future__ import annotations

from typing import Optional

import pytest
from aiohttp import web

from sfu.room.feed import LessonFacts, Slot
from sfu.room.room import Room
from signaling.media.media_rights import offered_kinds, play_slot, publish_slot
from signaling.live.room_media import lesson_facts
from signaling.lesson.room_protocol import ClientMessage
from signaling.lesson.room_state import LessonState
from signaling.auth.tokens import ROLE_GRANTS, Grant

T0 = 1_000_000.0
HEAD = "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n"


def sdp(*sections: tuple[str, str], session_dir: str = "") -> str:
    body = HEAD + (f"a={session_dir}\r\n" if session_dir else "")
    for kind, direction in sections:
        body += f"m={kind} 9 UDP/TLS/RTP/SAVPF 96\r\nc=IN IP4 0.0.0.0\r\n" + (f"a={direction}\r\n" if direction else "")
    return body


def grant(identity: str, role: str, sources: Optional[tuple[str, ...]] = None) -> Grant:
    pub, sub, default_sources = ROLE_GRANTS[role]
    return Grant(identity, identity.title(), "r", role, pub, sub,
                 default_sources if sources is None else sources, expires=int(T0 + 3600))


def refused(status: type, fn, *args) -> str:
    with pytest.raises(status) as info:
        fn(*args)
    return info.value.text


def test_offered_kinds_follow_media_and_session_directions():
    assert offered_kinds(sdp(("audio", "sendonly"), ("video", "sendonly"))) == ["audio", "video"]
    assert offered_kinds(sdp(("audio", "recvonly"), ("video", "inactive"))) == []
    assert offered_kinds(sdp(("video", ""), ("audio", ""))) == ["video", "audio"]          # default sendrecv
    assert offered_kinds(sdp(("video", ""), session_dir="recvonly")) == []                  # session level
    assert offered_kinds(sdp(("video", "sendonly"), ("video", "sendonly"))) == ["video"]
    assert offered_kinds(sdp(("application", "sendrecv"))) == []


def test_who_publishes_where():
    av, video = sdp(("audio", "sendonly"), ("video", "sendonly")), sdp(("video", "sendonly"))
    assert publish_slot(grant("li", "teacher"), "camera", av, None) == Slot("camera")
    assert publish_slot(grant("li", "teacher"), "screen", video, None) == Slot("screen")
    assert publish_slot(grant("s1", "terminal"), "camera", av, None) == Slot("classroom", "s1")
    assert "only its camera" in refused(web.HTTPForbidden, publish_slot, grant("s1", "terminal"), "screen", video, None)
    assert "may not publish" in refused(web.HTTPForbidden, publish_slot, grant("kid", "student"), "camera", av, None)
    quiet = grant("q", "terminal", ("camera",))
    assert "microphone" in refused(web.HTTPForbidden, publish_slot, quiet, "camera", av, None)
    assert publish_slot(quiet, "camera", video, None) == Slot("classroom", "q")
    no_screen = grant("li", "teacher", ("camera", "microphone"))
    assert "screen" in refused(web.HTTPForbidden, publish_slot, no_screen, "screen", video, None)
    # with a lesson: classrooms only while it is live, a removed one never; the teacher may prepare before
    lesson = LessonState("r")
    lesson.join(grant("li", "teacher"), T0)
    assert "only during the lesson" in refused(web.HTTPForbidden, publish_slot, grant("s1", "terminal"), "camera", av,
                                               lesson)
    assert publish_slot(grant("li", "teacher"), "camera", av, lesson) == Slot("camera")
    lesson.apply(ClientMessage("lesson_start"), grant("li", "teacher"), T0)
    assert publish_slot(grant("s1", "terminal"), "camera", av, lesson) == Slot("classroom", "s1")
    lesson.removed.add("s1")
    assert "removed" in refused(web.HTTPForbidden, publish_slot, grant("s1", "terminal"), "camera", av, lesson)


def test_who_plays_what():
    assert play_slot(grant("kid", "student"), "stage", None, None) == Slot("stage")
    assert play_slot(grant("li", "teacher"), "classroom", "s1", None) == Slot("classroom", "s1")
    for role in ("terminal", "student", "observer"):
        assert "only the teacher" in refused(web.HTTPForbidden, play_slot, grant("x", role), "classroom", "s1", None)
    assert "identity" in refused(web.HTTPBadRequest, play_slot, grant("li", "teacher"), "classroom", None, None)
    assert "identity" in refused(web.HTTPBadRequest, play_slot, grant("li", "teacher"), "classroom", "x" * 129, None)
    assert "only with" in refused(web.HTTPBadRequest, play_slot, grant("li", "teacher"), "camera", "s1", None)
    lesson = LessonState("r")
    lesson.removed.add("kid")
    assert "removed" in refused(web.HTTPForbidden, play_slot, grant("kid", "student"), "camera", None, lesson)


def test_lesson_facts_open_only_unmuted_classrooms_during_the_lesson():
    teacher = grant("li", "teacher")
    lesson = LessonState("r")
    for g in (teacher, grant("s1", "terminal"), grant("s2", "terminal"), grant("kid", "student")):
        lesson.join(g, T0)
    assert lesson_facts(None) is None
    assert lesson_facts(lesson) == LessonFacts(None, frozenset())     # joined muted, and not live anyway
    lesson.apply(ClientMessage("lesson_start"), teacher, T0)
    lesson.apply(ClientMessage("stage_call", {"identity": "s2"}), teacher, T0)
    assert lesson_facts(lesson) == LessonFacts("s2", frozenset({"s2"}))
    lesson.apply(ClientMessage("unmute", {"identity": "s1"}), teacher, T0)
    lesson.apply(ClientMessage("mute", {"identity": "s2"}), teacher, T0)
    assert lesson_facts(lesson) == LessonFacts("s2", frozenset({"s1"}))
    lesson.apply(ClientMessage("lesson_end"), teacher, T0)
    assert lesson_facts(lesson) == LessonFacts(None, frozenset())


def test_room_feeds_follow_the_lesson():
    room = Room("r")
    assert room.tracks is room.main.tracks and room.publisher is None
    open_feed = room.classroom("s1")
    assert open_feed is not None and not open_feed.muted       # no lesson: plain WHIP, microphones open
    room.apply_lesson(LessonFacts("s2", frozenset({"s2"})))
    assert open_feed.muted and room.stage == "s2"
    assert "s1" not in room.classrooms                            # idle feeds are forgotten
    assert room.tracks_for(Slot("stage")) is room.classrooms["s2"].tracks   # the stage's feed exists at once
    assert room.classroom("s3") is not None and room.classrooms["s3"].muted  # created later: muted too
    room.apply_lesson(LessonFacts(None, frozenset()))
    assert room.stage is None and room.tracks_for(Slot("stage")) is room.idle_tracks
    assert room.classrooms == {}                                   # nobody publishes to or watches them
    with pytest.raises(ValueError):
        Slot("classroom")
    with pytest.raises(ValueError):
        Slot("slides")
