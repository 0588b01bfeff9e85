"""Cluster mode end to end: a real redis-server on a free port, real `liveclass serve --redis` node processes and
real aiortc WHIP/WHEP peers. Node ids sort so an empty cluster places a new room on node "a" first."""
from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import aiohttp
import pytest
import redis

from testkit.lesson_peers import Peers, frames_grow
from testkit.redis_server import RedisServer
from testkit.server import ServerProcess

ROOM_KEY = "liveclass:room:{}"


def start_node(redis_url: str, node_id: str, tmp_path: Path, *extra: str) -> ServerProcess:
    # these tests poll a node every 100 ms with one token to time failovers: more than a page ever asks
    return ServerProcess(extra=("--redis", redis_url, "--node-id", node_id, "--rate-per-identity", "20", *extra),
                         log_path=tmp_path / f"node-{node_id}.log")


@pytest.fixture
def nodes(redis_server: RedisServer, tmp_path: Path) -> Iterator[dict[str, ServerProcess]]:
    """Node a proxies WHIP/WHEP for rooms placed elsewhere (the default), node b redirects them (the option)."""
    ns = {"a": start_node(redis_server.url, "a", tmp_path),
          "b": start_node(redis_server.url, "b", tmp_path, "--cluster-forward", "redirect")}
    db = redis.Redis.from_url(redis_server.url, decode_responses=True)
    wait_for(lambda: all(db.exists(f"liveclass:alive:{n}") for n in ns), 10, "both nodes registered")
    yield ns
    for n in ns.values():
        n.stop()


def wait_for(cond: Callable[[], bool], timeout: float, what: str) -> float:
    """Seconds until cond() held (polled every 50 ms); fails the test after timeout."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        try:
            if cond():
                return time.monotonic() - start
        except redis.RedisError:
            pass
        time.sleep(0.05)
    raise AssertionError(f"not within {timeout} s: {what}")


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    text: str


async def raw_post(url: str, token: str, body: str = "v=0\r\n") -> Answer:
    """One POST, redirects not followed: what the node answers itself."""
    async with aiohttp.ClientSession() as s:
        async with s.post(url, data=body, allow_redirects=False,
                          headers={"Content-Type": "application/sdp", "Authorization": f"Bearer {token}"}) as r:
            return Answer(r.status, dict(r.headers), await r.text())


async def test_viewer_on_node_b_plays_lesson_published_on_node_a(nodes, redis_server, clip) -> None:
    a, b = nodes["a"], nodes["b"]
    db = redis.Redis.from_url(redis_server.url, decode_responses=True)
    peers = Peers()
    try:
        await peers.publish(a, "physics", clip)
        assert db.get(ROOM_KEY.format("physics")) == "a"
        # node b answers a WHEP for a's room with 307 to a, body kept by the client
        t0 = time.monotonic()
        r = await raw_post(f"{b.base_url}/whep/physics?max=360", b.token("physics", "terminal"))
        redirect_ms = (time.monotonic() - t0) * 1000
        assert r.status == 307, r.status
        assert r.headers["Location"] == f"{a.base_url}/whep/physics?max=360"
        async with aiohttp.ClientSession() as s:  # a plain GET of the room WebSocket (no handshake): 307 too
            ws_token = b.token("physics", "student")
            async with s.get(f"{b.base_url}/ws/physics", params={"token": ws_token}, allow_redirects=False) as r:
                assert r.status == 307 and r.headers["Location"] == f"{a.base_url}/ws/physics?token={ws_token}"
        viewer = await peers.play(b, "physics")
        assert viewer.resource_base == a.base_url       # the session lives on a
        await frames_grow(viewer)
        assert db.get(ROOM_KEY.format("physics")) == "a"  # placement sticks
        # a second room goes to the less loaded node b; node a (proxy mode) relays its WHEP to b
        pub2 = await peers.publish(b, "maths", clip)
        assert pub2.resource_base == b.base_url and db.get(ROOM_KEY.format("maths")) == "b"
        viewer2 = await peers.play(a, "maths")
        assert viewer2.resource_base == a.base_url       # answered through a, media from b
        await frames_grow(viewer2)
        print(f"redirect answer {redirect_ms:.1f} ms")
    finally:
        await peers.stop()
    async with aiohttp.ClientSession() as s:  # the proxied DELETE reached b: no viewer left there
        async with s.get(f"{b.base_url}/api/stats", params={"room": "maths", "token": b.token("maths", "admin")}) as r:
            assert (await r.json())["viewers"] == 0


async def test_node_killed_room_replaced_on_live_node(nodes, redis_server, clip) -> None:
    a, b = nodes["a"], nodes["b"]
    peers = Peers(dead_ok=True)  # node a is killed under its peers
    try:
        await peers.publish(a, "history", clip)
        await frames_grow(await peers.play(b, "history"))
        a.proc.kill()  # kill -9: no goodbye, its alive key expires after the TTL
        a.proc.wait()
        killed = time.monotonic()
        token = b.token("history", "teacher")
        statuses = []
        while True:  # a bad offer: 307 while a counts as live, then b takes the room and rejects the SDP itself
            r = await raw_post(f"{b.base_url}/whip/history", token)
            statuses.append(r.status)
            if r.status != 307:
                break
            assert time.monotonic() - killed < 6, "room not re-placed within 6 s of kill -9"
            await asyncio.sleep(0.1)
        replaced_s = time.monotonic() - killed
        assert statuses[-1] == 400 and replaced_s < 4.5, (statuses[-1], replaced_s)
        db = redis.Redis.from_url(redis_server.url, decode_responses=True)
        assert db.get(ROOM_KEY.format("history")) == "b"
        await peers.publish(b, "history", clip)  # the teacher reconnects: now on b
        viewer2 = await peers.play(b, "history")  # and the classroom reconnects and plays again
        assert viewer2.resource_base == b.base_url
        await frames_grow(viewer2)
        print(f"re-placed {replaced_s:.2f} s after kill -9")
    finally:
        await peers.stop()


async def test_redis_down_then_restarted(nodes, redis_server, clip) -> None:
    a, b = nodes["a"], nodes["b"]
    peers = Peers()
    try:
        await peers.publish(a, "art", clip)
        viewer = await peers.play(b, "art")
        await frames_grow(viewer)
        redis_server.stop()
        r = await raw_post(f"{b.base_url}/whip/newroom", b.token("newroom", "teacher"))
        assert r.status == 503 and r.headers["Retry-After"] == "2"
        reason = r.text
        assert "cannot place room newroom" in reason and "Redis unreachable" in reason, reason
        await frames_grow(viewer)   # the running lesson keeps flowing
        late = await peers.play(a, "art")   # and its own node still takes new viewers for it
        await frames_grow(late)
        redis_server.start()        # same port, empty: no persistence
        down = time.monotonic()
        db = redis.Redis.from_url(redis_server.url, decode_responses=True)
        back_s = wait_for(lambda: all(db.exists(f"liveclass:alive:{n}") for n in "ab")
                          and db.get(ROOM_KEY.format("art")) == "a", 5, "nodes re-registered, room re-claimed")
        r = await raw_post(f"{b.base_url}/whep/art", b.token("art", "terminal"))
        assert r.status == 307 and r.headers["Location"] == f"{a.base_url}/whep/art"
        await frames_grow(viewer)
        print(f"re-registered {back_s:.2f} s after Redis restart ({time.monotonic() - down:.2f})")
    finally:
        await peers.stop()


def test_serve_rejects_bad_cluster_options() -> None:
    import subprocess
    import sys
    from testkit.server import REPO
    out = subprocess.run([sys.executable, "-m", "signaling.cli", "serve", "--secret", "s" * 32, "--redis", "http://x"],
                         cwd=REPO, capture_output=True, text=True, timeout=30)
    assert out.returncode == 2 and "--redis must be a redis://" in out.stderr
