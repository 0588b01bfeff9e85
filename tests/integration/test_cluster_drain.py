"""Draining a node and releasing the placements of empty rooms: a real redis-server, real
`liveclass serve --redis` node processes, real aiortc WHIP/WHEP peers and room WebSocket clients.

Node ids sort so an empty cluster places a new room on node "a" first."""
from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import pytest
import redis

from signaling.lesson.room_protocol import Close
from testkit.lesson_peers import Peers, frames_grow
from testkit.room_client import RoomClient
from testkit.server import ServerProcess
from tests.integration.test_cluster import raw_post, start_node, wait_for

ROOM_KEY = "liveclass:room:{}"


@dataclass
class TwoNodes:
    """Nodes a and b, the Redis they share, and the test's peers (whose node may be gone at the end)."""
    a: ServerProcess
    b: ServerProcess
    db: redis.Redis
    peers: Peers = field(default_factory=lambda: Peers(dead_ok=True))

    async def stop(self) -> None:
        """End the peers, then the nodes."""
        await self.peers.stop()
        self.a.stop()
        self.b.stop()


def two_nodes(redis_url: str, tmp_path: Path, *extra: str) -> TwoNodes:
    a, b = (start_node(redis_url, n, tmp_path, *extra) for n in ("a", "b"))
    db = redis.Redis.from_url(redis_url, decode_responses=True)
    wait_for(lambda: all(db.exists(f"liveclass:alive:{n}") for n in "ab"), 10, "both nodes registered")
    return TwoNodes(a, b, db)


async def drain(node: ServerProcess, token: str, query: str = "") -> tuple[int, str]:
    async with aiohttp.ClientSession() as s:
        async with s.post(f"{node.base_url}/api/admin/drain{query}",
                          headers={"Authorization": f"Bearer {token}"} if token else {}) as r:
            return r.status, await r.text()


async def exited(node: ServerProcess, timeout: float) -> float:
    """Seconds until the node's process exited (exit code 0: a clean shutdown)."""
    start = time.monotonic()
    while node.proc.poll() is None:
        assert time.monotonic() - start < timeout, f"node still running {timeout} s later: {node.log_tail()}"
        await asyncio.sleep(0.05)
    assert node.proc.returncode == 0, (node.proc.returncode, node.log_tail())
    return time.monotonic() - start


async def test_drain_takes_no_new_rooms_and_leaves_once_the_lesson_is_over(redis_server, tmp_path, clip) -> None:
    nodes = two_nodes(redis_server.url, tmp_path, "--cluster-forward", "redirect")
    a, b, db, peers = nodes.a, nodes.b, nodes.db, nodes.peers
    try:
        async with aiohttp.ClientSession() as http:
            pub = await peers.publish(a, "physics", clip)
            assert db.get(ROOM_KEY.format("physics")) == "a"
            viewer = await peers.play(b, "physics")
            await frames_grow(viewer)
            db.set(ROOM_KEY.format("quiet"), "a", px=30_000)   # a room on a with only a classroom waiting in it
            idle = await RoomClient(http, a.base_url, "quiet", a.token("quiet", "terminal")).connect()
            term = await RoomClient(http, a.base_url, "physics", a.token("physics", "terminal")).connect()

            status, body = await drain(a, a.token("*", "admin"), "?grace=60")
            assert status == 202, body
            assert '"draining": true' in body and '"busy_rooms": ["physics"]' in body, body
            assert db.hget("liveclass:node:a", "draining") == "1"
            # a room with nothing running is let go at once: its sockets are told to go away and reconnect
            assert await idle.closed(5) == Close.GOING_AWAY
            # a new lesson asked of the draining node goes to b
            r = await raw_post(f"{a.base_url}/whip/history", a.token("history", "teacher"))
            assert r.status == 307 and r.headers["Location"].startswith(b.base_url), (r.status, r.headers)
            newpub = await peers.publish(a, "maths", clip)
            assert newpub.resource_base == b.base_url and db.get(ROOM_KEY.format("maths")) == "b"
            # the running lesson is not disturbed
            await frames_grow(viewer)
            assert await term.alive()
            status, body = await drain(a, a.token("*", "admin"))   # again: still draining, nothing new
            assert status == 202 and '"started": false' in body, body
            assert a.proc.poll() is None

            await pub.stop()          # the teacher stops: the room is empty, the node leaves
            ended = time.monotonic()
            assert await term.closed(10) == Close.GOING_AWAY
            drain_s = await exited(a, 10)
            print(f"\nnode left {time.monotonic() - ended:.2f} s after its last lesson ended ({drain_s:.2f})")
            assert db.get(ROOM_KEY.format("physics")) != "a"
            assert not db.exists("liveclass:alive:a")
            # the classroom comes back: the room is placed on b now
            again = await RoomClient(http, b.base_url, "physics", b.token("physics", "terminal")).connect()
            assert db.get(ROOM_KEY.format("physics")) == "b"
            await again.close()
    finally:
        await nodes.stop()


async def test_sigterm_drains_until_the_grace_period_ends(redis_server, tmp_path, clip) -> None:
    nodes = two_nodes(redis_server.url, tmp_path, "--drain-grace", "2")
    a, b, db, peers = nodes.a, nodes.b, nodes.db, nodes.peers
    try:
        async with aiohttp.ClientSession() as http:
            await peers.publish(a, "art", clip)
            term = await RoomClient(http, b.base_url, "art", b.token("art", "terminal")).connect()  # proxied
            a.proc.terminate()    # SIGTERM: drain, with a lesson that does not end by itself
            sent = time.monotonic()
            await asyncio.sleep(0.5)
            assert a.proc.poll() is None, "SIGTERM should drain, not stop at once"
            assert db.hget("liveclass:node:a", "draining") == "1"
            assert await term.closed(10) == Close.GOING_AWAY
            drain_s = await exited(a, 10) + 0.5
            print(f"\nSIGTERM to exit with a running lesson and --drain-grace 2: {time.monotonic() - sent:.2f} s")
            assert 2.0 <= time.monotonic() - sent < 6, drain_s
            # the teacher publishes again: on b, at once (the placement was released, not left to expire)
            pub2 = await peers.publish(b, "art", clip)
            assert pub2.resource_base == b.base_url and db.get(ROOM_KEY.format("art")) == "b"
            await frames_grow(await peers.play(b, "art"))
    finally:
        await nodes.stop()


async def test_drain_refuses_bad_requests(redis_server, tmp_path) -> None:
    node = start_node(redis_server.url, "a", tmp_path)
    alone = ServerProcess(log_path=tmp_path / "alone.log")
    try:
        assert (await drain(node, ""))[0] == 401
        assert (await drain(node, "not-a-jwt"))[0] == 401
        wrong = node.token("*", "admin").replace(".", "x.", 1)
        assert (await drain(node, wrong))[0] == 401
        status, body = await drain(node, node.token("physics", "teacher"))
        assert status == 403 and "only an admin" in body
        for bad in ("?grace=soon", "?grace=-1", "?grace=99999"):
            status, body = await drain(node, node.token("*", "admin"), bad)
            assert status == 400 and "grace" in body, (bad, status, body)
        status, body = await drain(alone, alone.token("*", "admin"))
        assert status == 409 and "cluster mode" in body
        async with aiohttp.ClientSession() as s:   # the state, for operators
            async with s.get(f"{node.base_url}/api/admin/drain",
                             headers={"Authorization": f"Bearer {node.token('*', 'admin')}"}) as r:
                assert r.status == 200 and (await r.json())["draining"] is False
        assert node.proc.poll() is None and alone.proc.poll() is None
    finally:
        node.stop()
        alone.stop()


async def test_empty_room_is_placed_by_load_again(redis_server, tmp_path, clip) -> None:
    nodes = two_nodes(redis_server.url, tmp_path, "--room-release", "3")
    a, b, db, peers = nodes.a, nodes.b, nodes.db, nodes.peers
    try:
        first = await peers.publish(a, "chem", clip)
        assert db.get(ROOM_KEY.format("chem")) == "a"
        await asyncio.sleep(4)       # longer than the release time: a room in use keeps its node
        assert db.get(ROOM_KEY.format("chem")) == "a"
        await first.stop()
        stopped = time.monotonic()
        released_s = wait_for(lambda: not db.exists(ROOM_KEY.format("chem")), 8, "the empty room's placement released")
        print(f"\nempty room released {released_s:.2f} s after its lesson ended (--room-release 3)")
        assert time.monotonic() - stopped >= 2.0
        # node a is busier now (another lesson runs there); the next lesson of chem goes to b, by load
        await peers.publish(a, "bio", clip)
        assert db.get(ROOM_KEY.format("bio")) in ("a", "b")
        busy = db.get(ROOM_KEY.format("bio"))
        await peers.publish(b, "chem", clip)
        assert db.get(ROOM_KEY.format("chem")) == ({"a": "b", "b": "a"}[busy])
    finally:
        await nodes.stop()


def test_placement_skips_draining_nodes_but_keeps_their_rooms() -> None:
    from signaling.cluster.placement import NodeInfo, NoLiveNode, choose_node, placement_for
    a = NodeInfo("a", "http://a:1", draining=True)
    b = NodeInfo("b", "http://b:1", sessions=40)
    assert NodeInfo.from_hash("a", a.to_hash()) == a
    assert choose_node({"a": a, "b": b}) == b                    # idle but draining: no new room
    assert placement_for("a", {"a": a, "b": b}) == (a, False)     # its running room stays
    with pytest.raises(NoLiveNode, match="draining"):
        choose_node({"a": a})
