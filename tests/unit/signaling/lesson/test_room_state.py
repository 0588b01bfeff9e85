"""LessonState: pure transitions with injected time (no sockets)."""
from __future__ import annotations

from typing import Any, Optional

import pytest

from signaling.lesson.room_protocol import ClientMessage, Close, Code
from signaling.lesson.room_state import Change, Disconnect, Event, LessonState, Limits, link_quality
from signaling.auth.tokens import Grant, ROLE_GRANTS

T0 = 1_000_000.0


def grant(identity: str, role: str, sources: Optional[tuple[str, ...]] = None) -> Grant:
    pub, sub, default_sources = ROLE_GRANTS[role]
    return Grant(identity, identity.title(), "r", role, pub, sub,
                 default_sources if sources is None else sources, expires=int(T0 + 3600))


class Lesson:
    """A LessonState with named participants and helpers that fail loudly on unexpected errors."""

    def __init__(self, limits: Limits = Limits(), **people: str) -> None:
        self.state = LessonState("r", limits)
        self.changes: list[Change] = []
        self.state.on_change(self.changes.append)
        self.grants: dict[str, Grant] = {}
        for identity, role in people.items():
            self.join(identity, role)

    def join(self, identity: str, role: str, now: float = T0, **kw: Any):
        self.grants[identity] = g = grant(identity, role, **kw)
        return self.state.join(g, now)

    def send(self, who: str, type: str, now: float = T0, **fields: Any):
        return self.state.apply(ClientMessage(type, fields, ref=7), self.grants[who], now)

    def ok(self, who: str, type: str, now: float = T0, **fields: Any) -> list[dict[str, Any]]:
        events, errors = self.send(who, type, now, **fields)
        assert errors == [], [e.payload() for e in errors]
        return [e.payload for e in events if isinstance(e, Event)]

    def refused(self, who: str, type: str, code: str, **fields: Any) -> None:
        before = self.snapshot()
        events, errors = self.send(who, type, **fields)
        assert [e.code for e in errors] == [code] and errors[0].ref == 7
        assert events == [] and self.snapshot() == before  # a refusal changes nothing and tells nobody

    def snapshot(self) -> tuple:
        s = self.state
        return (s.live, s.on_stage, sorted(s.muted), list(s.hands), sorted(s.participants), len(s.chat), s.seq)


def test_join_welcomes_the_joiner_and_tells_the_others():
    lesson = Lesson(teacher="teacher")
    events, errors = lesson.join("a", "terminal")
    assert errors == []
    welcome, joined = events
    assert welcome.to == {"a"} and welcome.payload["type"] == "welcome" and not welcome.payload["resumed"]
    assert [p["identity"] for p in welcome.payload["state"]["participants"]] == ["teacher", "a"]
    assert welcome.payload["state"]["muted"] == ["a"]  # a classroom's microphone starts closed
    assert joined.payload["type"] == "joined" and joined.exclude == "a" and joined.payload["seq"] == 2
    assert welcome.payload["you"]["role"] == "terminal"


def test_hands_queue_in_order_and_who_may_lower_them():
    lesson = Lesson(teacher="teacher", a="terminal", b="terminal", c="terminal", s="student")
    for who in ("b", "a", "c", "a"):  # a second raise keeps the first place
        lesson.ok(who, "hand_raise")
    assert lesson.state.hands == ["b", "a", "c"]
    lesson.refused("a", "hand_lower", Code.FORBIDDEN, identity="b")
    lesson.refused("s", "hand_raise", Code.FORBIDDEN)
    assert lesson.ok("a", "hand_lower")[0]["queue"] == ["b", "c"]
    assert lesson.ok("teacher", "hand_lower", identity="b")[0] == {"type": "hands", "queue": ["c"], "by": "teacher",
                                                                   "seq": lesson.state.seq}


def test_stage_needs_a_live_lesson_and_moves_one_microphone_at_a_time():
    lesson = Lesson(teacher="teacher", a="terminal", b="terminal", s="student")
    lesson.ok("b", "hand_raise")
    lesson.refused("teacher", "stage_call", Code.NOT_LIVE, identity="b")
    lesson.ok("teacher", "lesson_start")
    lesson.changes.clear()
    events = lesson.ok("teacher", "stage_call", identity="b")
    assert [e["type"] for e in events] == ["hands", "stage", "mute"]
    assert lesson.state.on_stage == "b" and lesson.state.hands == [] and "b" not in lesson.state.muted
    events = lesson.ok("teacher", "stage_call", identity="a")
    # the one leaving is muted before the new one opens: never two classrooms at once
    assert [(e["type"], e.get("identity"), e.get("muted")) for e in events] == [
        ("mute", "b", True), ("stage", "a", None), ("mute", "a", False)]
    assert [(c.kind, c.identity, c.value) for c in lesson.changes] == [
        ("stage", None, "b"), ("muted", "b", False), ("muted", "b", True), ("stage", None, "a"), ("muted", "a", False)]
    lesson.refused("teacher", "stage_call", Code.INVALID_TARGET, identity="s")
    lesson.refused("teacher", "stage_call", Code.NOT_FOUND, identity="nobody")
    lesson.refused("a", "stage_call", Code.FORBIDDEN, identity="a")
    assert lesson.ok("teacher", "stage_call", identity="a") == []  # already there
    events = lesson.ok("teacher", "stage_end")
    assert [e["type"] for e in events] == ["mute", "stage"] and lesson.state.on_stage is None
    assert lesson.state.muted == {"a", "b"}


def test_mute_rules():
    lesson = Lesson(teacher="teacher", a="terminal", b="terminal", s="student")
    lesson.ok("teacher", "unmute", identity="a")
    lesson.refused("b", "mute", Code.FORBIDDEN, identity="a")      # a terminal muting another
    lesson.refused("a", "unmute", Code.FORBIDDEN, identity="a")    # the microphone opens only when called
    lesson.refused("teacher", "mute", Code.INVALID_TARGET, identity="s")
    assert lesson.ok("a", "mute", identity="a")[0]["muted"] is True  # muting itself is always fine
    assert lesson.ok("a", "mute", identity="a") == []
    lesson.join("c", "terminal", sources=("camera",))
    lesson.refused("teacher", "unmute", Code.INVALID_TARGET, identity="c")


def test_chat_history_is_bounded_and_given_to_late_joiners():
    lesson = Lesson(Limits(chat_history=3), teacher="teacher", a="terminal", o="observer")
    for i in range(5):
        lesson.ok("a" if i % 2 else "teacher", "chat", now=T0 + i, text=f"m{i}")
    lesson.refused("o", "chat", Code.FORBIDDEN, text="hello")
    welcome = lesson.join("late", "student")[0][0].payload
    assert [m["text"] for m in welcome["state"]["chat"]] == ["m2", "m3", "m4"]
    assert welcome["state"]["chat"][-1] == {"id": 5, "from": "teacher", "name": "Teacher", "role": "teacher",
                                           "text": "m4", "ts": (T0 + 4) * 1000}


def test_lesson_end_stops_stage_hands_microphones_and_publishing():
    lesson = Lesson(teacher="teacher", a="terminal", b="terminal")
    lesson.refused("a", "publish", Code.NOT_LIVE, sources=["camera"])
    lesson.ok("teacher", "publish", sources=["camera", "microphone", "screen"])  # may set up before the start
    lesson.ok("teacher", "lesson_start")
    lesson.ok("a", "publish", sources=["camera", "microphone"])
    lesson.ok("b", "hand_raise")
    lesson.ok("teacher", "stage_call", identity="a")
    lesson.changes.clear()
    events = lesson.ok("teacher", "lesson_end")
    assert events[-1] == {"type": "lesson", "live": False, "by": "teacher", "seq": lesson.state.seq}
    s = lesson.state
    assert (s.live, s.on_stage, s.hands, s.muted) == (False, None, [], {"a", "b"})
    assert all(not p.publishing for p in s.participants.values())
    kinds = [c.kind for c in lesson.changes]
    assert kinds[-1] == "live" and {"stage", "muted", "publishing"} <= set(kinds)
    assert lesson.ok("teacher", "lesson_end") == []


def test_publishing_is_checked_against_the_grant():
    lesson = Lesson(teacher="teacher", a="terminal", s="student", o="observer")
    lesson.ok("teacher", "lesson_start")
    lesson.refused("s", "publish", Code.FORBIDDEN, sources=["camera"])
    lesson.refused("o", "publish", Code.FORBIDDEN, sources=["microphone"])
    lesson.refused("a", "publish", Code.FORBIDDEN, sources=["screen"])
    events = lesson.ok("a", "publish", sources=["camera"])
    assert events[0]["participant"]["publishing"] == ["camera"]
    assert lesson.changes[-1] == Change("publishing", "a", frozenset({"camera"}))
    lesson.ok("a", "unpublish")
    assert lesson.state.participants["a"].publishing == set()


def test_remove_closes_the_connection_and_bars_the_identity():
    lesson = Lesson(teacher="teacher", admin="admin", t2="teacher", a="terminal")
    lesson.ok("a", "hand_raise")
    events, errors = lesson.send("teacher", "remove", identity="a", reason="disruptive")
    assert errors == []
    disconnect = [e for e in events if isinstance(e, Disconnect)]
    assert disconnect == [Disconnect("a", Close.REMOVED, {"type": "error", "code": "removed", "message": "disruptive"})]
    assert [e.payload["type"] for e in events if isinstance(e, Event)] == ["hands", "left"]
    assert lesson.changes[-1] == Change("removed", "a", "removed")
    _, errors = lesson.join("a", "terminal")
    assert [e.code for e in errors] == [Code.REMOVED] and "a" not in lesson.state.participants
    lesson.refused("teacher", "remove", Code.FORBIDDEN, identity="t2")
    lesson.refused("teacher", "remove", Code.FORBIDDEN, identity="admin")
    lesson.refused("teacher", "remove", Code.INVALID_TARGET, identity="teacher")
    lesson.ok("admin", "remove", identity="t2")


def test_resume_within_grace_keeps_place_hand_and_stage_then_times_out():
    lesson = Lesson(Limits(resume_grace=30), teacher="teacher", a="terminal", b="terminal")
    lesson.ok("teacher", "lesson_start")
    lesson.ok("a", "hand_raise")
    lesson.ok("b", "hand_raise")
    lesson.ok("teacher", "stage_call", identity="b")
    lesson.ok("b", "hand_raise")
    lesson.state.disconnect("a", T0 + 1)
    lesson.state.disconnect("b", T0 + 1)
    assert lesson.state.next_deadline() == T0 + 31
    lesson.refused("teacher", "stage_call", Code.INVALID_TARGET, identity="a")  # reconnecting
    events, _ = lesson.join("a", "terminal", now=T0 + 20)
    assert events[0].payload["resumed"] and events[0].payload["state"]["hands"] == ["a"]
    assert lesson.state.expire(T0 + 30.9) == ([], [])
    events, _ = lesson.state.expire(T0 + 31)
    assert [e.payload["type"] for e in events] == ["stage", "left"]
    assert lesson.state.on_stage is None and "b" not in lesson.state.participants
    assert lesson.state.hands == ["a"] and lesson.state.next_deadline() is None


def test_same_identity_with_another_role_starts_afresh():
    lesson = Lesson(teacher="teacher", x="terminal")
    lesson.ok("x", "hand_raise")
    events, _ = lesson.join("x", "student")
    assert [e.payload["type"] for e in events] == ["hands", "left", "welcome", "joined"]
    assert lesson.state.participants["x"].role == "student" and lesson.state.muted == set()


def test_room_full_and_ping_of_an_absent_sender():
    lesson = Lesson(Limits(max_participants=2), teacher="teacher", a="terminal")
    _, errors = lesson.join("b", "terminal")
    assert [e.code for e in errors] == [Code.ROOM_FULL]
    _, errors = lesson.state.apply(ClientMessage("chat", {"text": "x"}), grant("ghost", "student"), T0)
    assert [e.code for e in errors] == [Code.FORBIDDEN]


@pytest.mark.parametrize("loss, rtt, quality", [
    (None, None, "unknown"), (0.0, 50, "good"), (0.03, 50, "fair"), (0.0, 400, "fair"), (0.2, 10, "poor"),
    (None, 1500, "poor")])
def test_link_quality_classes(loss, rtt, quality):
    assert link_quality(loss, rtt) == quality


def test_link_reports_reach_the_console_every_time_and_others_on_a_change_of_class():
    lesson = Lesson(teacher="teacher", a="terminal")
    first = lesson.send("a", "stats", loss=0.0, rtt=40.0)[0][0]
    assert first.roles is None and first.payload["participant"]["link"]["quality"] == "good"
    second = lesson.send("a", "stats", loss=0.01, rtt=60.0)[0][0]
    assert second.roles == {"teacher", "admin"}
    lesson.state.set_link("a", T0 + 1, "sfu", loss=0.2, rtt=80.0)
    assert lesson.send("a", "stats", now=T0 + 5, loss=0.0)[0] == []  # the SFU's measurement wins for a while
    assert lesson.state.participants["a"].link.quality == "poor"
    lesson.send("a", "stats", now=T0 + 12, loss=0.0)
    assert lesson.state.participants["a"].link.source == "client"


def test_audience_rules_for_the_media_plane():
    lesson = Lesson(teacher="teacher", a="terminal", b="terminal", s="student")
    assert lesson.state.audience("teacher", "video") == "everyone"
    assert lesson.state.audience("a", "video") == "none"  # no lesson yet
    lesson.ok("teacher", "lesson_start")
    assert lesson.state.audience("a", "video") == "console" and lesson.state.audience("a", "audio") == "none"
    lesson.ok("teacher", "stage_call", identity="a")
    assert lesson.state.audience("a", "video") == "everyone" and lesson.state.audience("a", "audio") == "everyone"
    lesson.ok("teacher", "mute", identity="a")
    assert lesson.state.audience("a", "audio") == "none"
    lesson.ok("teacher", "unmute", identity="b")
    assert lesson.state.audience("b", "audio") == "console"
    assert lesson.state.audience("s", "video") == "none" and lesson.state.audience("ghost", "video") == "none"


def test_a_failing_listener_does_not_break_the_lesson_and_unsubscribe_works():
    lesson = Lesson(teacher="teacher")
    seen: list[Change] = []
    lesson.state.on_change(lambda c: 1 / 0)
    unsubscribe = lesson.state.on_change(seen.append)
    lesson.ok("teacher", "lesson_start")
    unsubscribe()
    lesson.ok("teacher", "lesson_end")
    assert seen == [Change("live", None, True)] and lesson.state.live is False


def test_close_ends_a_live_lesson_and_event_numbers_increase():
    lesson = Lesson(teacher="teacher")
    lesson.ok("teacher", "lesson_start")
    seqs = [e["seq"] for e in lesson.ok("teacher", "chat", text="a") + lesson.ok("teacher", "chat", text="b")]
    assert seqs == sorted(seqs) and len(set(seqs)) == 2
    lesson.state.close(T0)
    assert lesson.state.live is False and lesson.changes[-1] == Change("closed")


def test_publish_refusal_for_whip_too():
    lesson = Lesson(teacher="teacher", a="terminal")
    state, g = lesson.state, lesson.grants
    assert state.publish_refusal(g["a"], ["camera"]).code == Code.NOT_LIVE
    assert state.publish_refusal(g["teacher"], ["screen"]) is None
    lesson.ok("teacher", "lesson_start")
    assert state.publish_refusal(g["a"], ["camera", "microphone"]) is None
    assert state.publish_refusal(g["a"], ["screen"]).code == Code.FORBIDDEN
    lesson.ok("teacher", "remove", identity="a")
    assert state.publish_refusal(g["a"], ["camera"]).code == Code.REMOVED
