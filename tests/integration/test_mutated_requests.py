"""Malformed requests at every HTTP endpoint of a real `liveclass serve` with a live lesson and a library:
sessions, the library and its media, recordings, stats, ICE servers, the node list, draining, relay links and the
room socket's handshake. Every answer is below 500 (or a 503 that says why and when to come back), the server
logs no traceback, and the lesson plays on."""
from __future__ import annotations

import collections
from pathlib import Path

import aiohttp
import pytest
import yarl

from testkit.lesson_peers import frames_grow
from testkit.peers import WhepViewer, WhipPublisher
from testkit.request_mutator import Known, mutated_requests
from testkit.server import ServerProcess

pytestmark = pytest.mark.timeout(180)

COUNT = 1500
ROOM = "fuzzroom"


async def test_malformed_requests_get_4xx_and_the_lesson_plays_on(tmp_path: Path, clip: Path) -> None:
    server = ServerProcess(log_path=tmp_path / "server.log", library=tmp_path / "library")
    teacher = server.token(ROOM, "teacher")
    pub = WhipPublisher(server.base_url, ROOM, teacher, clip)
    viewer = WhepViewer(server.base_url, ROOM, server.token(ROOM, "terminal", identity="school-1"))
    statuses: collections.Counter = collections.Counter()
    bad = []
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http:
            async with http.post(f"{server.base_url}/api/rooms/{ROOM}/recording", json={"title": "Fuzzed"},
                                 headers={"Authorization": f"Bearer {teacher}"}) as r:
                assert r.status == 201
                lesson = (await r.json())["id"]
            await pub.start()
            await viewer.start()
            await frames_grow(viewer)
            known = Known(ROOM, [teacher, server.token(ROOM, "terminal"), server.token("*", "admin"),
                                 server.token(ROOM, "student"), server.token("other", "teacher")],
                          {"whip": pub.location.rsplit("/", 1)[1], "whep": viewer.location.rsplit("/", 1)[1]},
                          [lesson])
            for i, req in mutated_requests(known, COUNT, seed=3):
                url = yarl.URL(server.base_url + req.path, encoded=True)
                try:
                    async with http.request(req.method, url, headers=req.headers, data=req.body,
                                            allow_redirects=False) as r:
                        body = await r.read()
                        statuses[r.status] += 1
                        retry_ok = r.status == 503 and body.strip() and "Retry-After" in r.headers
                        if r.status >= 500 and not retry_ok:
                            bad.append((i, req.method, req.path[:120], r.status, body[:200]))
                except aiohttp.ClientPayloadError as exc:
                    bad.append((i, req.method, req.path[:120], "payload", str(exc)))
        assert not bad, f"{len(bad)} answers were 5xx: {bad[:10]}"
        assert sum(v for k, v in statuses.items() if 400 <= k < 500) > COUNT / 2, statuses   # mostly refused...
        assert sum(v for k, v in statuses.items() if k < 300) > 20, statuses                 # ...not all
        log = server.log_tail(400_000)
        assert "Traceback" not in log, log[log.index("Traceback") - 300:][:3000]
        await frames_grow(viewer)   # the lesson went on throughout
        print(dict(sorted(statuses.items())))
    finally:
        await viewer.stop()
        await pub.stop()
        server.stop()
