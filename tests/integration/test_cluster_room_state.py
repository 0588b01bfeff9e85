"""A room's lesson state survives its node (cluster mode): the room's node keeps a snapshot in Redis and the node
taking the room over after `kill -9` restores it before the first welcome. Real redis-server, real
`liveclass serve --redis` processes, real WebSocket clients (testkit.room_client)."""
from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Iterator

import aiohttp
import pytest
import redis

from signaling.lesson.room_protocol import Close, Code
from testkit.redis_server import RedisServer
from testkit.room_client import RoomClient
from testkit.server import ServerProcess
from tests.integration.test_cluster import nodes, start_node, wait_for  # noqa: F401  (nodes: a fixture)

SNAPSHOT_KEY = "liveclass:roomstate:{}"
ROOM_KEY = "liveclass:room:{}"


def snapshot(db: redis.Redis, room: str) -> dict:
    """The room's snapshot in Redis; {} when there is none or it is not JSON (a planted one)."""
    text = db.get(SNAPSHOT_KEY.format(room))
    try:
        return json.loads(text) if text else {}
    except ValueError:
        return {}




@pytest.fixture
def node(redis_server: RedisServer, tmp_path: Path) -> Iterator[ServerProcess]:
    n = start_node(redis_server.url, "a", tmp_path)
    db = redis.Redis.from_url(redis_server.url, decode_responses=True)
    wait_for(lambda: db.exists("liveclass:alive:a"), 10, "node registered")
    yield n
    assert n.stop() in (0, -2, 130), n.log_tail()


async def connect_when_up(http: aiohttp.ClientSession, base_url: str, room: str, token: str, deadline: float,
                          expect_welcome: bool = True) -> RoomClient:
    """Connect as a page does after its node died: retry (every 100 ms) until a node takes the socket."""
    while True:
        client = RoomClient(http, base_url, room, token)
        try:
            return await client.connect(expect_welcome=expect_welcome)
        except (aiohttp.ClientError, ConnectionError, asyncio.TimeoutError):
            await client.close()
        assert time.monotonic() < deadline, f"no node took room {room} in time"
        await asyncio.sleep(0.1)


async def test_lesson_state_survives_kill_of_its_node(nodes, redis_server) -> None:
    a, b = nodes["a"], nodes["b"]
    db = redis.Redis.from_url(redis_server.url, decode_responses=True)
    room = "physics"
    tokens = {who: a.token(room, role, identity=who, name=who.title())
              for who, role in [("teacher", "teacher"), ("school1", "terminal"), ("school2", "terminal"),
                                ("school3", "terminal"), ("school4", "terminal")]}
    async with aiohttp.ClientSession() as http:
        teacher = await RoomClient(http, a.base_url, room, tokens["teacher"]).connect()
        assert db.get(ROOM_KEY.format(room)) == "a"
        s1 = await RoomClient(http, a.base_url, room, tokens["school1"]).connect()
        s2 = await RoomClient(http, b.base_url, room, tokens["school2"]).connect()  # proxied by b to a
        s3 = await RoomClient(http, a.base_url, room, tokens["school3"]).connect()
        s4 = await RoomClient(http, a.base_url, room, tokens["school4"]).connect()
        assert (await teacher.request("lesson_start"))["type"] == "ack"
        assert (await s2.request("hand_raise", timeout=5))["type"] == "ack"   # first: through b
        assert (await s1.request("hand_raise"))["type"] == "ack"
        assert (await teacher.request("stage_call", identity="school3"))["type"] == "ack"
        await teacher.request("chat", text="Today: optics")
        await s2.request("chat", text="School 2 is ready", timeout=5)
        assert (await teacher.request("remove", identity="school4"))["type"] == "ack"
        assert await s4.closed(5) == Close.REMOVED
        last_change = time.monotonic()

        def complete() -> bool:
            s = snapshot(db, room)
            return (s.get("removed") == ["school4"] and s.get("hands") == ["school2", "school1"]
                    and s.get("on_stage") == "school3" and len(s.get("chat", [])) == 2)
        wait_for(complete, 3, "the snapshot holds the whole lesson")
        written_s = time.monotonic() - last_change
        live_since = snapshot(db, room)["live_since"]
        assert db.pttl(SNAPSHOT_KEY.format(room)) > 3_500_000 - 60_000  # ~1 h, refreshed while the room lives

        a.proc.kill()  # kill -9: no goodbye; its alive key expires after the 3 s TTL
        a.proc.wait()
        killed = time.monotonic()
        assert await s2.closed(5) == Close.GOING_AWAY  # b's proxy tells the page its room's node went away
        deadline = killed + 10
        back = await connect_when_up(http, b.base_url, room, tokens["teacher"], deadline)
        restored_s = time.monotonic() - killed
        state = back.welcome["state"]
        assert back.welcome["resumed"] is True
        assert state["live"] is True and state["live_since"] == round(live_since * 1000)
        assert state["hands"] == ["school2", "school1"]
        assert state["on_stage"] == "school3" and "school3" not in state["muted"]
        assert [(c["from"], c["text"]) for c in state["chat"]] == [("teacher", "Today: optics"),
                                                                   ("school2", "School 2 is ready")]
        roster = {p["identity"]: p["connected"] for p in state["participants"]}
        assert roster == {"teacher": True, "school1": False, "school2": False, "school3": False}
        assert db.get(ROOM_KEY.format(room)) == "b"

        s1b = await connect_when_up(http, b.base_url, room, tokens["school1"], deadline)
        assert s1b.welcome["resumed"] and s1b.welcome["state"]["hands"] == ["school2", "school1"]
        s2b = await connect_when_up(http, b.base_url, room, tokens["school2"], deadline)
        assert s2b.welcome["resumed"] and s2b.welcome["state"]["hands"] == ["school2", "school1"]
        s3b = await connect_when_up(http, b.base_url, room, tokens["school3"], deadline)
        assert s3b.welcome["resumed"] and s3b.welcome["state"]["on_stage"] == "school3"
        refused = await connect_when_up(http, b.base_url, room, tokens["school4"], deadline, expect_welcome=False)
        assert (await refused.next("error", timeout=5))["code"] == Code.REMOVED
        assert await refused.closed(5) == Close.REMOVED

        # the lesson goes on where it was: the teacher takes the next hand, chat numbering continues
        assert (await back.request("stage_call", identity="school2"))["type"] == "ack"
        assert (await s1b.next("hands", timeout=5))["queue"] == ["school1"]
        chat = await back.request("chat", text="Welcome back")
        assert chat["type"] == "ack" and (await s2b.next("chat", timeout=5))["id"] == 3
        wait_for(lambda: snapshot(db, room).get("on_stage") == "school2", 3, "b writes the snapshot now")
        for c in (back, s1b, s2b, s3b, teacher, s1, s3):
            await c.close()
    print(f"snapshot complete {written_s * 1000:.0f} ms after the last change; "
          f"kill -9 -> restored welcome on b {restored_s:.2f} s")


async def test_malformed_snapshot_is_ignored(node, redis_server) -> None:
    db = redis.Redis.from_url(redis_server.url, decode_responses=True)
    bad = {"garbage": "{not json", "forged": json.dumps({"v": 1, "room": "forged", "live": True, "hands": ["x"],
                                                          "participants": "everyone"})}
    for room, text in bad.items():
        db.set(SNAPSHOT_KEY.format(room), text)
    async with aiohttp.ClientSession() as http:
        for room in bad:
            teacher = await RoomClient(http, node.base_url, room,
                                       node.token(room, "teacher", identity="teacher")).connect()
            state = teacher.welcome["state"]
            assert not teacher.welcome["resumed"] and state["live"] is False and state["hands"] == []
            assert [p["identity"] for p in state["participants"]] == ["teacher"]
            await teacher.request("chat", text="fresh start")  # and the node's own snapshot replaces it
            wait_for(lambda: [c["text"] for c in snapshot(db, room).get("chat", [])] == ["fresh start"], 3,
                     "a valid snapshot replaced the malformed one")
            await teacher.send("leave")
            await teacher.closed()
            # lesson over and the room empty: the snapshot goes (a next lesson starts clean)
            wait_for(lambda: not db.exists(SNAPSHOT_KEY.format(room)), 3, "snapshot deleted with the room")
    assert "ignoring a malformed lesson snapshot" in node.log_tail(20000)


async def test_snapshot_rewritten_after_redis_restart(node, redis_server) -> None:
    db = redis.Redis.from_url(redis_server.url, decode_responses=True)
    room = "chemistry"
    async with aiohttp.ClientSession() as http:
        teacher = await RoomClient(http, node.base_url, room, node.token(room, "teacher", identity="teacher")).connect()
        term = await RoomClient(http, node.base_url, room, node.token(room, "terminal", identity="s1")).connect()
        await teacher.request("lesson_start")
        await term.request("hand_raise")
        wait_for(lambda: snapshot(db, room).get("hands") == ["s1"], 3, "snapshot written")
        redis_server.stop()
        # Redis down: the lesson goes on from memory
        assert (await teacher.request("chat", text="while Redis was down"))["type"] == "ack"
        assert (await term.next("chat"))["text"] == "while Redis was down"
        redis_server.start()  # same port, empty
        restarted = time.monotonic()
        db = redis.Redis.from_url(redis_server.url, decode_responses=True)
        rewritten_s = wait_for(lambda: [c["text"] for c in snapshot(db, room).get("chat", [])]
                               == ["while Redis was down"], 5, "snapshot rewritten after the restart")
        s = snapshot(db, room)
        assert s["live"] is True and s["hands"] == ["s1"] and db.pttl(SNAPSHOT_KEY.format(room)) > 3_000_000
        assert await teacher.alive() and await term.alive()
        for c in (teacher, term):
            await c.close()
    print(f"snapshot rewritten {rewritten_s:.2f} s after the Redis restart ({time.monotonic() - restarted:.2f})")
