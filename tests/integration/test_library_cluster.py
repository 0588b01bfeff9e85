"""The resource library in a cluster: nodes share one library folder (the compose file mounts one
volume), so any node answers the library API, media (with Range) and thumbnails for lessons recorded by any
node; a lesson being recorded by a live node is never "recovered" by another, and one whose node was killed is
recovered by a live node. Real redis-server, real `liveclass serve --redis` processes, real aiortc publisher."""
from __future__ import annotations

import asyncio
import time
import urllib.request
from pathlib import Path

import pytest
import redis

from testkit.lessons import http_json
from testkit.peers import WhipPublisher
from testkit.redis_server import RedisServer
from testkit.server import ServerProcess
from tests.integration.test_cluster import wait_for

pytestmark = pytest.mark.timeout(150)


def node(redis_url: str, name: str, library: Path, tmp_path: Path) -> ServerProcess:
    return ServerProcess(library=library, log_path=tmp_path / f"node-{name}.log",
                         extra=("--redis", redis_url, "--node-id", name, "--cluster-forward", "proxy"))


def lesson_on(server: ServerProcess, lesson_id: str) -> dict:
    status, lesson = http_json("GET", f"{server.base_url}/api/library/{lesson_id}")
    assert status == 200, lesson
    return lesson


def get(url: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    req = urllib.request.Request(url, headers=headers or {})
    with urllib.request.urlopen(req, timeout=10) as r:
        return r.status, dict(r.headers), r.read()


async def j(*args, **kw):
    """http_json off the event loop (the publisher's media keeps flowing meanwhile)."""
    return await asyncio.to_thread(http_json, *args, **kw)


async def publish(server: ServerProcess, room: str, clip: Path, seconds: float) -> WhipPublisher:
    pub = WhipPublisher(server.base_url, room, server.token(room, "teacher"), clip)
    await pub.start()
    await pub.connected()
    await asyncio.sleep(seconds)
    return pub


async def test_any_node_serves_the_library_and_only_dead_nodes_lessons_are_recovered(tmp_path, clip) -> None:
    library = tmp_path / "library"
    redis_server = RedisServer(log_dir=tmp_path)
    a = node(redis_server.url, "a", library, tmp_path)
    b = node(redis_server.url, "b", library, tmp_path)
    c = None
    try:
        # a lesson recorded on a (the room's node), started and stopped through b
        teacher = b.token("physics", "teacher", name="Ada Teacher")
        pub = await publish(a, "physics", clip, 0.5)
        status, started = await j("POST", f"{b.base_url}/api/rooms/physics/recording", teacher,
                                    {"title": "Optics", "subject": "physics"})
        assert status == 201, started
        await asyncio.sleep(3)
        status, stopped = await j("DELETE", f"{b.base_url}/api/rooms/physics/recording", teacher)
        assert status == 200 and stopped["state"] == "ready" and stopped["duration_s"] > 1.5, stopped
        await pub.stop()

        # b lists it, shows it, serves its media with Range and, once a has analysed it, its poster
        status, listing = await j("GET", f"{b.base_url}/api/library?subject=physics")
        assert status == 200 and [x["id"] for x in listing["lessons"]] == [started["id"]]
        status, headers, body = await asyncio.to_thread(get, b.base_url + stopped["media_url"], {"Range": "bytes=0-99"})
        assert status == 206 and len(body) == 100 and body[:4] == b"\x1a\x45\xdf\xa3", headers
        await asyncio.to_thread(wait_for, lambda: lesson_on(b, started["id"])["thumbnail_url"], 60,
                                "the poster, made on a")
        lesson = lesson_on(b, started["id"])
        status, headers, body = get(b.base_url + lesson["thumbnail_url"])
        assert status == 200 and headers["Content-Type"] == "image/jpeg" and body[:2] == b"\xff\xd8"

        # a records again; a node starting meanwhile (c) leaves that lesson alone: a is live
        redis.Redis.from_url(redis_server.url).set("liveclass:room:history", "a", px=60_000)  # a's room, not b's
        pub = await publish(a, "history", clip, 0.5)
        status, live = await j("POST", f"{a.base_url}/api/rooms/history/recording",
                                 a.token("history", "teacher"), {"title": "Rome"})
        assert status == 201, live
        c = await asyncio.to_thread(node, redis_server.url, "c", library, tmp_path)
        await asyncio.sleep(6)   # c's start-up recovery and one sweep of b and c
        assert lesson_on(c, live["id"])["state"] == "recording"

        a.proc.kill()   # kill -9 mid-recording: a live node finishes the lesson
        killed = time.monotonic()
        a.proc.wait(5)
        pub.location = None
        await pub.pc.close()
        await pub.http.close()
        recovered_s = await asyncio.to_thread(wait_for, lambda: lesson_on(b, live["id"])["state"] == "recovered", 30,
                               "the dead node's lesson recovered by a live node")
        print(f"\nlesson of the killed node recovered by a live node {recovered_s:.2f} s after kill -9 "
              f"({time.monotonic() - killed:.2f})")
        lesson = lesson_on(c, live["id"])
        assert lesson["duration_s"] > 0 and lesson["media_url"], lesson
        logs = b.log_tail(50000) + c.log_tail(50000)
        assert logs.count(f"recovering lesson {live['id']}") == 1, "exactly one node recovers it"
        status, _, body = get(c.base_url + lesson["media_url"], {"Range": "bytes=0-15"})
        assert status == 206 and body[:4] == b"\x1a\x45\xdf\xa3"
    finally:
        for n in (a, b, c):
            if n is not None:
                n.stop()
        redis_server.stop()


def test_a_server_outside_cluster_mode_keeps_its_library_to_itself(tmp_path) -> None:
    library = tmp_path / "library"
    redis_server = RedisServer(log_dir=tmp_path)
    alone = ServerProcess(library=library, log_path=tmp_path / "alone.log")
    try:
        with pytest.raises(RuntimeError, match="not in cluster mode"):
            node(redis_server.url, "a", library, tmp_path)
    finally:
        alone.stop()
        redis_server.stop()
