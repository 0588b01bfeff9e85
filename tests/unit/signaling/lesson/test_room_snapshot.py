"""room_snapshot: capture → encode → decode → restore gives the lesson back; malformed snapshots are refused.
Pure: injected time, no sockets, no sleeping."""
from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from signaling.live.room_hub import RoomHub
from signaling.lesson.room_protocol import Code
from signaling.lesson.room_snapshot import (MAX_SNAPSHOT_CHARS, SnapshotError, capture, decode, encode, restore)
from signaling.lesson.room_state import Event, Limits
from tests.unit.signaling.lesson.test_room_state import T0, Lesson, grant


def running_lesson() -> Lesson:
    """Teacher, three classrooms and a student: live, s2 on stage, hands s3 then s1, chat, s4 removed."""
    lesson = Lesson(teacher="teacher", s1="terminal", s2="terminal", s3="terminal", s4="terminal", pupil="student")
    lesson.ok("teacher", "lesson_start", now=T0 + 1)
    lesson.ok("s3", "hand_raise")
    lesson.ok("s1", "hand_raise")
    lesson.ok("s2", "hand_raise")
    lesson.ok("teacher", "stage_call", identity="s2")
    lesson.ok("teacher", "chat", text="Welcome, everyone", now=T0 + 2)
    lesson.ok("s1", "chat", text="Hello from School 1", now=T0 + 3)
    lesson.ok("teacher", "remove", identity="s4", reason="testing")
    lesson.state.disconnect("pupil", T0 + 4)  # already reconnecting when the node died
    return lesson


def roundtrip(lesson: Lesson, now: float, limits: Limits = Limits()):
    text = encode(capture(lesson.state, now=T0 + 5))
    return restore(decode(text, "r", limits), limits, now)


def test_roundtrip_keeps_the_durable_lesson() -> None:
    lesson = running_lesson()
    before = lesson.state
    after = roundtrip(lesson, now=T0 + 10)
    assert (after.live, after.live_since, after.on_stage) == (True, T0 + 1, "s2")
    assert after.hands == ["s3", "s1"] and after.removed == {"s4"}
    assert after.muted == before.muted and "s2" not in after.muted  # the stage's microphone stays open
    assert list(after.chat) == list(before.chat) and after.chat_seq == 2 and after.seq == before.seq
    assert list(after.participants) == list(before.participants)
    assert not any(p.connected for p in after.participants.values())  # everyone is reconnecting
    assert after.participants["s1"].since == T0 + 10                  # connected ones: a full grace from now
    assert after.participants["pupil"].since == T0 + 4                # reconnecting ones: what they had left
    assert after.recording is False and all(not p.publishing for p in after.participants.values())


def test_a_restored_lesson_resumes_the_same_identities() -> None:
    lesson = running_lesson()
    state = roundtrip(lesson, now=T0 + 10)
    lesson.state = state
    events, errors = lesson.join("s1", "terminal", now=T0 + 11)
    assert errors == []
    welcome = events[0].payload
    assert welcome["resumed"] is True
    assert welcome["state"]["hands"] == ["s3", "s1"] and welcome["state"]["on_stage"] == "s2"
    assert welcome["state"]["live"] is True and welcome["state"]["live_since"] == round((T0 + 1) * 1000)
    assert [c["text"] for c in welcome["state"]["chat"]] == ["Welcome, everyone", "Hello from School 1"]
    _, errors = lesson.join("s4", "terminal", now=T0 + 11)
    assert [e.code for e in errors] == [Code.REMOVED]
    # new chat continues the numbering; nobody who did not come back outlives the grace
    lesson.join("teacher", "teacher", now=T0 + 11)
    assert lesson.ok("teacher", "chat", text="back", now=T0 + 12)[0]["id"] == 3
    events, _ = state.expire(T0 + 10 + Limits().resume_grace)
    left = sorted(e.payload["identity"] for e in events if isinstance(e, Event) and e.payload["type"] == "left")
    assert left == ["pupil", "s2", "s3"] and state.on_stage is None and state.hands == ["s1"]


def test_a_lesson_not_live_keeps_its_chat_and_hands_but_no_stage() -> None:
    lesson = Lesson(teacher="teacher", s1="terminal")
    lesson.ok("s1", "hand_raise")
    lesson.ok("teacher", "chat", text="Soon")
    state = roundtrip(lesson, now=T0 + 1)
    assert (state.live, state.live_since, state.on_stage, state.hands) == (False, None, None, ["s1"])
    assert len(state.chat) == 1


def test_chat_is_bounded_by_the_restoring_rooms_limit() -> None:
    lesson = Lesson(Limits(chat_history=10), teacher="teacher")
    for i in range(10):
        lesson.ok("teacher", "chat", text=f"m{i}")
    state = roundtrip(lesson, now=T0, limits=Limits(chat_history=3))
    assert [c["text"] for c in state.chat] == ["m7", "m8", "m9"] and state.chat_seq == 10


def test_grants_never_widen_a_role() -> None:
    body = json.loads(encode(capture(running_lesson().state, T0)))
    for p in body["participants"]:
        if p["role"] == "student":
            p.update(can_publish=True, sources=["camera", "microphone", "screen"])
        if p["role"] == "terminal":
            p["sources"].append("screen")
    state = restore(decode(json.dumps(body), "r"), Limits(), T0)
    pupil = state.participants["pupil"].grant
    assert not pupil.can_publish and pupil.sources == ()
    assert state.participants["s1"].grant.sources == ("camera", "microphone")


def valid_body() -> dict[str, Any]:
    return json.loads(encode(capture(running_lesson().state, T0 + 5)))


def mutate(**changes: Any) -> str:
    body = valid_body()
    body.update(changes)
    return json.dumps(body)


def participant(**changes: Any) -> str:
    body = valid_body()
    body["participants"][0].update(changes)
    return json.dumps(body)


def chat_entry(**changes: Any) -> str:
    body = valid_body()
    body["chat"][0].update(changes)
    return json.dumps(body)


@pytest.mark.parametrize("text, reason", [
    (None, "not text"),
    ("", "not JSON"),
    ("{", "not JSON"),
    ("[" * 100_000 + "]" * 100_000, "not JSON"),  # deep nesting: refused without a crash
    ("[]", "not a JSON object"),
    (mutate(v=2), "unknown version"),
    (mutate(room="other"), "another room"),
    (mutate(live="yes"), "live"),
    (mutate(seq=-1), "seq"),
    (mutate(seq=True), "seq"),
    (mutate(seq=2 ** 60), "seq"),
    (mutate(chat_seq=1.5), "chat_seq"),
    (mutate(live_since=float("inf")), "live_since"),
    (mutate(hands="s1"), "hands"),
    (mutate(hands=["nobody"]), "hands"),
    (mutate(hands=[7]), "hands"),
    (mutate(hands=["x" * 1025]), "hands"),
    (mutate(hands=["s2"]), "hands"),          # the one on stage has no hand up
    (mutate(muted=["teacher"]), "muted"),     # only classrooms have a closed microphone
    (mutate(on_stage="teacher"), "on_stage"),
    (mutate(on_stage="nobody"), "on_stage"),
    (mutate(live=False), "on_stage"),         # a stage without a live lesson
    (mutate(removed=["s1"]), "removed"),      # removed and still there
    (mutate(removed=[f"x{i}" for i in range(1001)]), "removed"),
    (mutate(participants={}), "participants"),
    (mutate(participants=[1]), "participants"),
    (mutate(participants=[{"identity": f"p{i}", "name": "", "role": "student", "can_publish": False,
                           "can_subscribe": True, "sources": [], "expires": 0, "connected": False, "since": 0}
                          for i in range(301)]), "over the room's limit"),
    (participant(role="superuser"), "role"),
    (participant(identity=""), "identity"),
    (participant(connected=1), "connected"),
    (participant(since=-5), "since"),
    (participant(sources=["camera"] * 4), "sources"),
    (participant(name="n" * 1000), "name"),
    (participant(expires="soon"), "expires"),
    (chat_entry(text=""), "chat"),
    (chat_entry(text="t" * 1001), "chat"),
    (chat_entry(id=0), "id"),
    (chat_entry(role="god"), "chat"),
    (chat_entry(ts=None), "ts"),
    (mutate(chat=[valid_body()["chat"][0]] * 2100), "history limit"),
    ("x" * (MAX_SNAPSHOT_CHARS + 1), "size limit"),
])
def test_malformed_snapshots_are_refused_with_a_reason(text: Any, reason: str) -> None:
    with pytest.raises(SnapshotError, match=reason):
        decode(text, "r")


def test_unknown_extra_fields_are_ignored_and_duplicates_dropped() -> None:
    body = valid_body()
    body["future"] = {"anything": 1}
    body["removed"] = ["s4", "s4"]
    body["participants"].append(dict(body["participants"][0], name="Impostor"))
    snap = decode(json.dumps(body), "r")
    assert snap.removed == ("s4",) and [p.name for p in snap.participants].count("Impostor") == 0


def test_durable_part_ignores_event_numbers_and_time() -> None:
    lesson = running_lesson()
    a = capture(lesson.state, T0)
    lesson.state.set_link("s1", T0 + 1, "sfu", loss=0.0, rtt=20.0)  # numbers an event, changes nothing durable
    b = capture(lesson.state, T0 + 1)
    assert a.seq != b.seq and a.durable() == b.durable()
    lesson.ok("teacher", "chat", text="moved")
    assert capture(lesson.state, T0 + 2).durable() != b.durable()


# ---- the hub's takeover path (room_hub.prepare) with an in-memory loader: no Redis, no sleeping -------------

class FakeConn:
    def __init__(self, g) -> None:
        self.grant = g
        self.sent: list[dict[str, Any]] = []
        self.closed: Any = None

    def send(self, text: str) -> None:
        self.sent.append(json.loads(text))

    def close(self, code: int, error: Any = None) -> None:
        self.closed = (code, error)


async def test_hub_restores_a_room_once_before_the_first_join() -> None:
    text = encode(capture(running_lesson().state, T0 + 5))
    loads: list[str] = []
    gate = asyncio.Event()

    async def loader(room: str):
        loads.append(room)
        await gate.wait()  # both first joins arrive while the load is in flight
        return decode(text, room)

    hub = RoomHub(clock=lambda: T0 + 10)
    hub.loader = loader
    changes: list[str] = []
    hub.on_change(lambda room, change: changes.append(change.kind))
    first = asyncio.ensure_future(hub.prepare("r"))
    second = asyncio.ensure_future(hub.prepare("r"))
    await asyncio.sleep(0)
    gate.set()
    await asyncio.gather(first, second)
    assert loads == ["r"] and changes == ["live"]  # the media plane hears the lesson is live here
    s1 = FakeConn(grant("s1", "terminal"))
    assert hub.join("r", s1)
    assert s1.sent[0]["resumed"] and s1.sent[0]["state"]["hands"] == ["s3", "s1"]
    s4 = FakeConn(grant("s4", "terminal"))
    assert not hub.join("r", s4) and s4.closed[1]["code"] == Code.REMOVED
    await hub.prepare("r")  # held here now: no second load
    assert loads == ["r"]
    await hub.close()


async def test_hub_starts_empty_when_the_loader_fails() -> None:
    async def loader(room: str):
        raise RuntimeError("boom")

    hub = RoomHub(clock=lambda: T0)
    hub.loader = loader
    await hub.prepare("r")
    t = FakeConn(grant("teacher", "teacher"))
    assert hub.join("r", t) and t.sent[0]["resumed"] is False and t.sent[0]["state"]["live"] is False
    await hub.close()
