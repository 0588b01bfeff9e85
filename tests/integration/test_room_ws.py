"""The room WebSocket over a real aiohttp server and real WebSocket clients (in-process, fast)."""
from __future__ import annotations

import asyncio
import json
import time
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, AsyncIterator, Optional

import aiohttp
import jwt
import pytest
from aiohttp import web

from signaling.http import app_keys
from signaling.live import room_ws
from signaling.live.room_hub import RoomHub
from signaling.lesson.room_protocol import HARD_MESSAGE_BYTES, MAX_MESSAGE_BYTES, Close, Code
from signaling.lesson.room_state import Change, Limits
from signaling.auth.tokens import mint
from testkit.inprocess import serve_app
from testkit.room_client import RoomClient

SECRET = "room-test-secret-0123456789abcdef0123"
ROOM = "math-101"


class FakeRecorder:
    def __init__(self, fail: bool = False) -> None:
        self.calls: list[tuple[Any, ...]] = []
        self.fail = fail

    async def start(self, room, grant):
        if self.fail:
            raise RuntimeError("disk full")
        self.calls.append(("start", room, grant.identity))

    def stop(self, room):  # a plain function works too
        self.calls.append(("stop", room))


@dataclass
class RoomServer:
    base_url: str
    app: web.Application
    http: aiohttp.ClientSession
    clients: list[RoomClient] = field(default_factory=list)

    @property
    def hub(self) -> RoomHub:
        return self.app[room_ws.HUB]

    def token(self, role: str, identity: str = "", room: str = ROOM, **kw: Any) -> str:
        return mint(SECRET, room, role, identity=identity, **kw)

    async def join(self, role: str, identity: str = "", room: str = ROOM, token: Optional[str] = None,
                   **kw: Any) -> RoomClient:
        c = RoomClient(self.http, self.base_url, room, token or self.token(role, identity, room, **kw))
        self.clients.append(c)
        return await c.connect()

    async def refused(self, token: Optional[str], room: str = ROOM) -> tuple[dict, int]:
        c = RoomClient(self.http, self.base_url, room, token)
        self.clients.append(c)
        await c.connect(expect_welcome=False)
        return await c.next("error"), await c.closed()


@asynccontextmanager
async def serve_rooms(recorder: Optional[FakeRecorder] = None) -> AsyncIterator[RoomServer]:
    app = web.Application()
    app[app_keys.SECRET] = SECRET
    hub = room_ws.setup(app, Limits(resume_grace=0.6, max_participants=8, chat_history=5))
    hub.recorder = recorder  # as library_api.setup does; None: no recording on this server
    async with serve_app(app) as (base, http):
        server = RoomServer(base, app, http)
        yield server
        for c in server.clients:
            await c.close()


@pytest.fixture
async def rooms() -> AsyncIterator[RoomServer]:
    async with serve_rooms() as server:
        yield server


@pytest.fixture
def recorder() -> FakeRecorder:
    return FakeRecorder()


@pytest.fixture
async def recorded_rooms(recorder: FakeRecorder) -> AsyncIterator[RoomServer]:
    """As `rooms`, with `recorder` as the app's recorder from the start (the app is not changed once started)."""
    async with serve_rooms(recorder) as server:
        yield server


async def classroom(rooms: RoomServer, terminals: int = 3) -> tuple[RoomClient, list[RoomClient]]:
    teacher = await rooms.join("teacher", "teacher")
    terms = [await rooms.join("terminal", f"t{i}", name=f"School {i}") for i in range(1, terminals + 1)]
    return teacher, terms


async def nothing_more(*clients: RoomClient, types: tuple[str, ...] = ()) -> None:
    """Others are unaffected: still answering, and no errors (nor events of `types`) reached them."""
    for c in clients:
        assert await c.alive()
        assert c.unread("error") == [] and not [m for m in c.unread() if m["type"] in types]


# ---- the lesson ---------------------------------------------------------------------------------------------

async def test_a_teacher_and_three_classrooms_run_a_lesson(rooms):
    teacher, (t1, t2, t3) = await classroom(rooms)
    roster = {p["identity"]: p for p in t3.welcome["state"]["participants"]}
    assert {k: v["role"] for k, v in roster.items()} == {"teacher": "teacher", "t1": "terminal", "t2": "terminal",
                                                        "t3": "terminal"}
    assert roster["t1"]["name"] == "School 1" and roster["t1"]["link"]["quality"] == "unknown"
    assert t3.welcome["state"]["muted"] == ["t1", "t2", "t3"]

    assert (await teacher.request("lesson_start"))["type"] == "ack"
    for c in (t1, t2, t3):
        assert (await c.next("lesson"))["live"] is True
    for c in (t3, t1, t2):  # the queue keeps the order hands went up
        assert (await c.request("hand_raise"))["type"] == "ack"
    queues = [(await teacher.next("hands"))["queue"] for _ in range(3)]
    assert queues == [["t3"], ["t3", "t1"], ["t3", "t1", "t2"]]

    assert (await teacher.request("stage_call", identity="t2"))["type"] == "ack"
    for c in (teacher, t1, t2, t3):
        assert (await c.next("stage"))["identity"] == "t2"
        assert (await c.next("mute", identity="t2"))["muted"] is False
    assert rooms.hub.state(ROOM).on_stage == "t2"
    await teacher.request("mute", identity="t2")
    assert (await t1.next("mute", identity="t2"))["muted"] is True

    await t1.request("chat", text="Can you repeat that?")
    for c in (teacher, t2, t3):
        chat = await c.next("chat")
        assert (chat["from"], chat["name"], chat["text"]) == ("t1", "School 1", "Can you repeat that?")
    late = await rooms.join("student", "late")
    assert [m["text"] for m in late.welcome["state"]["chat"]] == ["Can you repeat that?"]
    assert late.welcome["state"]["on_stage"] == "t2" and late.welcome["state"]["hands"] == ["t3", "t1"]

    await teacher.request("lesson_end")
    for c in (t1, t2, t3, late):
        assert (await c.next("lesson"))["live"] is False
    state = rooms.hub.state(ROOM)
    assert (state.live, state.on_stage, state.hands, state.muted) == (False, None, [], {"t1", "t2", "t3"})
    seqs = [m["seq"] for m in t3.inbox if "seq" in m and m["type"] != "welcome"]
    assert seqs == sorted(seqs)


async def test_leave_is_clean_and_stats_show_link_quality_to_the_teacher(rooms):
    teacher, (t1, t2) = await classroom(rooms, 2)
    assert (await t1.request("stats", loss=0.15, rtt=120, bitrate=300_000))["type"] == "ack"
    update = await teacher.next("participant")
    assert update["participant"]["identity"] == "t1" and update["participant"]["link"]["quality"] == "poor"
    assert (await t2.next("participant"))["participant"]["link"]["quality"] == "poor"  # a change of class
    for _ in range(3):
        await t1.send("stats", loss=0.15)
    assert (await t1.next("error"))["code"] == Code.RATE_LIMITED  # 1/s, burst 3
    assert await t1.alive()
    await t1.send("leave")
    assert await t1.closed() == Close.NORMAL
    assert (await teacher.next("left")) | {"seq": 0} == {"type": "left", "identity": "t1", "reason": "leave", "seq": 0}


async def test_the_sfu_api_sees_every_room_change_and_can_set_link_quality(rooms):
    seen: list[tuple[str, Change]] = []
    rooms.hub.on_change(lambda room, change: seen.append((room, change)))
    teacher, (t1,) = await classroom(rooms, 1)
    await teacher.request("lesson_start")
    await teacher.request("stage_call", identity="t1")
    kinds = [(r, c.kind, c.identity, c.value) for r, c in seen]
    assert kinds == [(ROOM, "joined", "teacher", None), (ROOM, "joined", "t1", None), (ROOM, "live", None, True),
                     (ROOM, "stage", None, "t1"), (ROOM, "muted", "t1", False)]
    rooms.hub.set_link(ROOM, "t1", loss=0.0, rtt=30.0, bitrate=400_000.0)
    link = (await teacher.next("participant"))["participant"]["link"]
    assert (link["quality"], link["source"]) == ("good", "sfu")


# ---- refusals at the door -------------------------------------------------------------------------------------

async def test_handshake_refusals_come_as_a_message_and_a_close_code(rooms):
    expired = mint(SECRET, ROOM, "teacher", ttl=1, now=time.time() - 60)
    none_alg = jwt.encode({"sub": "x", "room": ROOM, "role": "admin", "exp": time.time() + 60}, None, algorithm="none")
    cases = [
        (None, ROOM, Code.TOKEN_INVALID, Close.UNAUTHORIZED),
        ("garbage", ROOM, Code.TOKEN_INVALID, Close.UNAUTHORIZED),
        (none_alg, ROOM, Code.TOKEN_INVALID, Close.UNAUTHORIZED),
        (expired, ROOM, Code.TOKEN_EXPIRED, Close.UNAUTHORIZED),
        (rooms.token("teacher", room="other"), ROOM, Code.WRONG_ROOM, Close.FORBIDDEN),
        (rooms.token("teacher"), "bad room!", Code.BAD_REQUEST, Close.BAD_REQUEST),
    ]
    for token, room, code, close in cases:
        err, closed = await rooms.refused(token, room)
        assert (err["code"], closed) == (code, close), (token, room)
    assert rooms.hub.rooms == {}
    async with rooms.http.get(rooms.base_url + f"/ws/{ROOM}") as r:  # not a WebSocket
        assert r.status == 426
    admin = await rooms.join("admin", "op", token=mint(SECRET, "*", "admin", identity="op"))
    assert admin.welcome["room"] == ROOM  # an every-room admin token may enter any room


async def test_room_limits(rooms):
    await classroom(rooms, 7)
    err, code = await rooms.refused(rooms.token("student", "ninth"))
    assert (err["code"], code) == (Code.ROOM_FULL, Close.FULL)


# ---- bad input: error code, connection kept or closed as documented, nobody else affected -----------------------

@pytest.mark.parametrize("raw, code", [
    ("{not json", Code.BAD_MESSAGE),
    ("[]", Code.BAD_MESSAGE),
    ('{"kind":"chat"}', Code.BAD_MESSAGE),
    ('{"type":"teleport","id":9}', Code.UNKNOWN_TYPE),
    ('{"type":"chat","text":17,"id":9}', Code.BAD_MESSAGE),
    ('{"type":"stats","loss":-1}', Code.BAD_MESSAGE),
    (b"\x00\x01binary", Code.BAD_MESSAGE),
    (json.dumps({"type": "chat", "text": "x" * MAX_MESSAGE_BYTES}), Code.TOO_LARGE),
])
async def test_malformed_and_oversized_messages_get_an_error_and_keep_the_connection(rooms, raw, code):
    teacher, (t1, t2) = await classroom(rooms, 2)
    await t1.send_raw(raw)
    err = await t1.next("error")
    assert err["code"] == code and err["message"]
    if '"id":9' in str(raw):
        assert err["ref"] == 9
    assert await t1.alive()
    await nothing_more(teacher, t2, types=("chat",))


async def test_a_frame_over_the_hard_limit_closes_with_1009_and_the_place_is_kept(rooms):
    teacher, (t1, t2) = await classroom(rooms, 2)
    await t1.request("mute", identity="t1")
    await t1.send_raw("x" * (HARD_MESSAGE_BYTES + 1))
    assert await t1.closed() == Close.TOO_BIG
    assert (await teacher.next("participant"))["participant"]["connected"] is False  # may resume
    await nothing_more(teacher, t2)


@pytest.mark.parametrize("who, type, fields", [
    ("t1", "mute", {"identity": "t2"}),          # a terminal muting another
    ("t2", "unmute", {"identity": "t2"}),        # opening its own microphone
    ("t1", "stage_call", {"identity": "t1"}),    # putting itself on stage
    ("t1", "stage_end", {}),
    ("t1", "lesson_end", {}),
    ("t1", "lesson_start", {}),
    ("t1", "remove", {"identity": "t2"}),
    ("t1", "hand_lower", {"identity": "t2"}),
    ("t1", "publish", {"sources": ["screen"]}),  # terminals have camera and microphone only
    ("t1", "recording_start", {}),
    ("s", "publish", {"sources": ["camera"]}),   # a student publishing
    ("s", "hand_raise", {}),
    ("s", "mute", {"identity": "t1"}),
    ("o", "chat", {"text": "hello"}),
    ("o", "publish", {"sources": ["microphone"]}),
    ("teacher", "remove", {"identity": "admin"}),
])
async def test_role_escalations_are_refused(rooms, who, type, fields):
    teacher, (t1, t2) = await classroom(rooms, 2)
    await teacher.request("lesson_start")
    admin = await rooms.join("admin", "admin")
    people = {"teacher": teacher, "t1": t1, "t2": t2, "admin": admin,
              "s": await rooms.join("student", "s"), "o": await rooms.join("observer", "o")}
    state = rooms.hub.state(ROOM)
    before = (state.live, state.on_stage, sorted(state.muted), list(state.hands), sorted(state.participants))
    reply = await people[who].request(type, **fields)
    assert (reply["type"], reply["code"]) == ("error", Code.FORBIDDEN)
    assert await people[who].alive()
    after = (state.live, state.on_stage, sorted(state.muted), list(state.hands), sorted(state.participants))
    assert after == before
    others = [c for k, c in people.items() if k != who]
    for c in others:  # drain what the joins produced, then check nothing else came
        c.discard("joined", "lesson")
    await nothing_more(*others, types=("mute", "stage", "lesson", "left", "hands", "participant", "chat",
                                       "recording"))


async def test_a_flood_is_answered_once_a_second_then_closed(rooms):
    teacher, (t1, t2) = await classroom(rooms, 2)
    for i in range(400):
        await t1.send_raw('{"type":"ping"}')
    assert await t1.closed(5) == Close.RATE_LIMITED
    errors = [m for m in t1.inbox if m["type"] == "error"]
    assert [e["code"] for e in errors][0] == Code.RATE_LIMITED and len(errors) <= 3  # not a flood back
    assert sum(m["type"] == "pong" for m in t1.inbox) <= 45
    await nothing_more(teacher, t2)
    assert (await teacher.next("participant"))["participant"]["connected"] is False


async def test_a_token_expiring_mid_lesson_closes_with_4001_without_any_message(rooms):
    teacher, (t1,) = await classroom(rooms, 1)
    await t1.request("hand_raise")
    short = await rooms.join("terminal", "t1", token=rooms.token("terminal", "t1", ttl=1))  # replaces t1
    assert await t1.closed() == Close.REPLACED
    assert short.welcome["resumed"] and short.welcome["state"]["hands"] == ["t1"]
    err = await short.next("error", timeout=3)
    assert err["code"] == Code.TOKEN_EXPIRED and await short.closed() == Close.UNAUTHORIZED
    assert await teacher.alive()
    again = await rooms.join("terminal", "t1")  # a fresh token resumes the place
    assert again.welcome["resumed"] and again.welcome["state"]["hands"] == ["t1"]


async def test_the_token_is_checked_on_every_message(rooms):
    teacher, (t1,) = await classroom(rooms, 1)
    real_clock = rooms.hub.clock
    rooms.hub.clock = lambda: real_clock() + 7200  # the timer has not fired yet; the next message must fail
    await t1.send("chat", text="late")
    assert (await t1.next("error"))["code"] == Code.TOKEN_EXPIRED
    assert await t1.closed() == Close.UNAUTHORIZED
    rooms.hub.clock = real_clock
    assert teacher.unread("chat") == []


async def test_token_refresh_extends_a_long_lesson(rooms):
    teacher, (t1,) = await classroom(rooms, 1)
    t1_short = await rooms.join("terminal", "t1", token=rooms.token("terminal", "t1", ttl=2))
    assert (await t1_short.request("token_refresh", token=rooms.token("terminal", "t1", ttl=600)))["type"] == "ack"
    wrong = await t1_short.request("token_refresh", token=rooms.token("teacher", "t1"))
    assert wrong["code"] == Code.FORBIDDEN
    assert (await t1_short.request("token_refresh", token="nope"))["code"] == Code.TOKEN_INVALID
    await asyncio.sleep(2.2)
    assert await t1_short.alive()


# ---- resume, replace, remove ------------------------------------------------------------------------------------

async def test_reconnect_within_the_grace_keeps_the_hand_and_after_it_does_not(rooms):
    teacher, (t1, t2) = await classroom(rooms, 2)
    await t2.request("hand_raise")
    await t1.request("hand_raise")
    await t2.close()  # the network drops
    assert (await teacher.next("participant"))["participant"]["connected"] is False
    back = await rooms.join("terminal", "t2")
    assert back.welcome["resumed"] and back.welcome["state"]["hands"] == ["t2", "t1"]
    assert (await teacher.next("participant"))["participant"]["connected"] is True
    await back.close()
    left = await teacher.next("left", timeout=3)  # grace 0.6 s in this fixture
    assert (left["identity"], left["reason"]) == ("t2", "timeout")
    assert await teacher.next("hands", queue=["t1"])
    fresh = await rooms.join("terminal", "t2")
    assert not fresh.welcome["resumed"] and fresh.welcome["state"]["hands"] == ["t1"]


async def test_a_second_connection_replaces_the_first(rooms):
    teacher, (t1,) = await classroom(rooms, 1)
    second = await rooms.join("terminal", "t1")
    assert (await t1.next("error"))["code"] == Code.REPLACED and await t1.closed() == Close.REPLACED
    assert second.welcome["resumed"] and await second.alive()
    await asyncio.sleep(0.1)
    assert rooms.hub.state(ROOM).participants["t1"].connected
    assert teacher.unread("left") == []


async def test_removed_participants_are_closed_and_cannot_come_back(rooms):
    teacher, (t1, t2) = await classroom(rooms, 2)
    removed: list[str] = []
    rooms.hub.on_change(lambda room, c: removed.append(c.identity) if c.kind == "removed" else None)
    await teacher.request("remove", identity="t1", reason="please rejoin later")
    err = await t1.next("error")
    assert (err["code"], err["message"]) == (Code.REMOVED, "please rejoin later")
    assert await t1.closed() == Close.REMOVED
    assert (await t2.next("left"))["reason"] == "removed" and removed == ["t1"]
    err, code = await rooms.refused(rooms.token("terminal", "t1"))
    assert (err["code"], code) == (Code.REMOVED, Close.REMOVED)
    assert (await teacher.request("remove", identity="t1"))["code"] == Code.NOT_FOUND


# ---- the recorder hook ---------------------------------------------------------------------------------------------

async def test_recording_without_a_recorder_is_not_available(rooms):
    teacher, _ = await classroom(rooms, 0)
    assert (await teacher.request("recording_start"))["code"] == Code.NOT_AVAILABLE


async def test_recording_start_stop_and_lesson_end_reach_the_recorder(recorded_rooms, recorder):
    rooms, rec = recorded_rooms, recorder
    teacher, (t1,) = await classroom(rooms, 1)
    await teacher.request("lesson_start")
    assert (await teacher.request("recording_start"))["type"] == "ack"
    assert (await t1.next("recording"))["active"] is True
    assert (await teacher.request("recording_start"))["type"] == "ack"  # already on: not started twice
    await teacher.request("lesson_end")
    assert (await t1.next("recording"))["active"] is False  # the end of the lesson stops it
    assert rec.calls == [("start", ROOM, "teacher"), ("stop", ROOM)]
    rec.fail = True  # the disk fills up
    reply = await teacher.request("recording_start")
    assert reply["code"] == Code.RECORDING_FAILED and "disk full" in reply["message"]
    assert not rooms.hub.state(ROOM).recording and await teacher.alive()


async def test_server_shutdown_says_going_away(rooms):
    teacher, _ = await classroom(rooms, 0)
    await rooms.hub.close()
    assert await teacher.closed() == Close.GOING_AWAY


async def test_a_client_that_does_not_read_is_cut_off_without_stalling_the_room():
    class StuckSocket:  # a peer whose TCP window stays shut: every send and the close handshake hang
        async def send_str(self, text: str) -> None:
            await asyncio.Event().wait()

        async def close(self, **kw: Any) -> None:
            await asyncio.Event().wait()

    aborted = asyncio.Event()
    conn = room_ws.WsConnection(StuckSocket(), None, 0.0, abort=aborted.set)  # type: ignore[arg-type]
    conn.close_timeout = 0.2
    for _ in range(room_ws.OUTBOX_LIMIT + 1):
        conn.send("{}")  # never blocks the sender
    assert conn.closing
    await asyncio.wait_for(aborted.wait(), 2)
    await conn.finish()


async def test_a_text_frame_that_is_not_utf8_closes_with_1007(rooms):
    teacher, (t1,) = await classroom(rooms, 1)
    await t1.ws.send_frame(b"\xff\xfe{}", aiohttp.WSMsgType.TEXT)
    assert await t1.closed() == 1007
    await nothing_more(teacher)


async def test_the_last_leave_forgets_the_room(rooms):
    teacher, _ = await classroom(rooms, 0)
    await teacher.request("lesson_start")
    await teacher.send("leave")
    assert await teacher.closed() == Close.NORMAL
    assert rooms.hub.rooms == {}


async def test_a_room_left_empty_while_recording_stops_the_recorder(recorded_rooms, recorder):
    rooms, rec = recorded_rooms, recorder
    teacher, _ = await classroom(rooms, 0)
    await teacher.request("recording_start")
    await teacher.send("leave")
    await teacher.closed()
    await asyncio.sleep(0.05)
    assert rec.calls == [("start", ROOM, "teacher"), ("stop", ROOM)] and rooms.hub.rooms == {}
