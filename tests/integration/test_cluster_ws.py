"""The room WebSocket across nodes: a /ws/{room} handshake landing on a node other than the room's is
proxied to the room's node (browsers cannot follow a 307 of a WebSocket handshake). Real redis-server, real
`liveclass serve --redis` processes, real aiohttp WebSocket clients. Node b redirects WHIP/WHEP (the option),
node a proxies them (the default): the WebSocket is proxied by both."""
from __future__ import annotations

import asyncio
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
from tests.integration.test_cluster import start_node, wait_for

ROOM_KEY = "liveclass:room:{}"


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[tuple[RedisServer, dict[str, ServerProcess]]]:
    r = RedisServer(log_dir=tmp_path)
    ns: dict[str, ServerProcess] = {}
    try:
        ns["a"] = start_node(r.url, "a", tmp_path)
        ns["b"] = start_node(r.url, "b", tmp_path, "--cluster-forward", "redirect")
        db = redis.Redis.from_url(r.url, decode_responses=True)
        wait_for(lambda: all(db.exists(f"liveclass:alive:{n}") for n in ns), 10, "both nodes registered")
        yield r, ns
    finally:
        for n in ns.values():
            n.stop()
        r.stop()


async def test_terminal_on_node_b_takes_part_in_a_lesson_on_node_a(cluster) -> None:
    redis_server, nodes = cluster
    a, b = nodes["a"], nodes["b"]
    db = redis.Redis.from_url(redis_server.url, decode_responses=True)
    async with aiohttp.ClientSession() as http:
        teacher = await RoomClient(http, a.base_url, "physics",
                                   a.token("physics", "teacher", identity="teacher", name="Ms T")).connect()
        assert db.get(ROOM_KEY.format("physics")) == "a"
        t0 = time.monotonic()
        term = await RoomClient(http, b.base_url, "physics",
                                b.token("physics", "terminal", identity="school1", name="School 1")).connect()
        join_ms = (time.monotonic() - t0) * 1000
        # the welcome came from a: the roster holds the teacher who joined there
        roster = {p["identity"] for p in term.welcome["state"]["participants"]}
        assert roster == {"teacher", "school1"}, roster
        assert (await teacher.next("joined", timeout=5))["participant"]["identity"] == "school1"
        assert (await teacher.request("lesson_start"))["type"] == "ack"
        assert (await term.next("lesson", timeout=5))["live"] is True

        assert (await term.request("hand_raise", timeout=5))["type"] == "ack"   # B → A
        assert (await teacher.next("hands", timeout=5))["queue"] == ["school1"]
        await teacher.request("chat", text="Good question, School 1")         # A → B
        chat = await term.next("chat", timeout=5)
        assert (chat["from"], chat["text"]) == ("teacher", "Good question, School 1")

        await teacher.close()  # the teacher's socket goes: the terminal's stays up
        assert await term.alive()
        back = await RoomClient(http, a.base_url, "physics",
                                a.token("physics", "teacher", identity="teacher", name="Ms T")).connect()
        assert back.welcome["state"]["hands"] == ["school1"]
        assert await term.alive()
        await term.send("chat", text="still here")
        assert (await back.next("chat", timeout=5))["text"] == "still here"

        await term.close()  # the client goes: the proxy closes its upstream socket, a sees it gone
        gone = await back.next("participant", timeout=5, predicate=lambda m: m["participant"]["identity"] == "school1"
                               and m["participant"]["connected"] is False)
        assert gone
        await back.close()
        print(f"proxied join {join_ms:.1f} ms")


async def test_close_codes_and_refusals_are_relayed(cluster) -> None:
    redis_server, nodes = cluster
    a, b = nodes["a"], nodes["b"]
    async with aiohttp.ClientSession() as http:
        teacher = await RoomClient(http, a.base_url, "maths", a.token("maths", "teacher", identity="teacher")).connect()
        # a token for another room, on b: proxied to a (the room's node), refused there, code relayed
        wrong = RoomClient(http, b.base_url, "maths", b.token("history", "terminal"))
        await wrong.connect(expect_welcome=False)
        assert (await wrong.next("error", timeout=5))["code"] == Code.WRONG_ROOM
        assert await wrong.closed(5) == Close.FORBIDDEN
        # the same identity connecting again on a replaces the proxied one on b: 4006 reaches b's client
        first = await RoomClient(http, b.base_url, "maths", b.token("maths", "terminal", identity="s1")).connect()
        second = await RoomClient(http, a.base_url, "maths", a.token("maths", "terminal", identity="s1")).connect()
        assert (await first.next("error", timeout=5))["code"] == Code.REPLACED
        assert await first.closed(5) == Close.REPLACED
        assert second.welcome["resumed"] and await second.alive()
        # a plain GET (no WebSocket handshake) on the wrong node still gets the 307
        async with http.get(f"{b.base_url}/ws/maths", params={"token": b.token("maths", "student")},
                            allow_redirects=False) as r:
            assert r.status == 307 and r.headers["Location"].startswith(f"{a.base_url}/ws/maths?token=")
        for c in (teacher, second):
            await c.close()


async def test_room_node_stopping_closes_the_proxied_socket_with_going_away(cluster) -> None:
    redis_server, nodes = cluster
    a, b = nodes["a"], nodes["b"]
    async with aiohttp.ClientSession() as http:
        teacher = await RoomClient(http, a.base_url, "art", a.token("art", "teacher", identity="teacher")).connect()
        term = await RoomClient(http, b.base_url, "art", b.token("art", "terminal", identity="s1")).connect()
        assert await term.alive()
        await asyncio.get_running_loop().run_in_executor(None, a.stop)  # a shuts down: 1001, the page reconnects
        assert await term.closed(10) == Close.GOING_AWAY
        await teacher.close()
