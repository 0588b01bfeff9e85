"""`kill -9` of a node under load: three lessons recording at once while recordings of a fourth room are started
and stopped as fast as the API answers and finished lessons' details are edited (the catalogue written all the
time). After the restart the catalogue passes SQLite's integrity check, every lesson the API ever confirmed is
listed, and each of the three interrupted recordings plays, decoding to its end, to within 2 s of the kill."""
from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from pathlib import Path

import aiohttp
import av
import pytest

from testkit.peers import WhipPublisher
from testkit.server import ServerProcess
from testkit.sync_clip import make_sync_clip
from tests.conftest import CACHE

pytestmark = pytest.mark.timeout(150)

ROOMS = ("maths-1", "physics-2", "chinese-3")
CHURN_ROOM = "music-4"
RECORD_S = 8.0
PLAYABLE_WITHIN_S = 2.0


async def _json(http: aiohttp.ClientSession, method: str, url: str, token: str, body=None) -> tuple[int, dict]:
    async with http.request(method, url, json=body, headers={"Authorization": f"Bearer {token}"}) as r:
        data = await r.json(content_type=None)
        return r.status, data


async def churn(http: aiohttp.ClientSession, server: ServerProcess, confirmed: set[str], stop: asyncio.Event) -> int:
    """Start and stop recordings of an idle room and edit the finished lessons, until told or the server dies."""
    teacher, admin = server.token(CHURN_ROOM, "teacher"), server.token("*", "admin")
    base = f"{server.base_url}/api/rooms/{CHURN_ROOM}/recording"
    rounds = 0
    try:
        while not stop.is_set() and rounds < 10_000:
            status, lesson = await _json(http, "POST", base, teacher, {"title": f"Music {rounds}"})
            if status == 201:
                confirmed.add(lesson["id"])
            status, lesson = await _json(http, "DELETE", base, teacher)
            if status == 200:
                await _json(http, "PATCH", f"{server.base_url}/api/library/{lesson['id']}", admin,
                            {"title": f"Music {rounds} (edited)", "subject": "Music"})
            rounds += 1
    except (aiohttp.ClientError, asyncio.TimeoutError, ValueError):
        pass   # the node was killed mid-request
    return rounds


async def lessons_then_kill(server: ServerProcess, clip: Path) -> tuple[dict[str, str], set[str], float, float, int]:
    confirmed: set[str] = set()
    ids: dict[str, str] = {}
    pubs = []
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http:
        for room in ROOMS:
            status, lesson = await _json(http, "POST", f"{server.base_url}/api/rooms/{room}/recording",
                                         server.token(room, "teacher"), {"title": f"Lesson {room}"})
            assert status == 201, lesson
            ids[room] = lesson["id"]
            confirmed.add(lesson["id"])
            pub = WhipPublisher(server.base_url, room, server.token(room, "teacher"), clip)
            await pub.start()
            pubs.append(pub)
        for pub in pubs:
            await pub.connected()
        while any(t.start is None for pub in pubs for t in pub.tracks):
            await asyncio.sleep(0.01)
        first = max(t.start for pub in pubs for t in pub.tracks if t.start is not None)
        stop = asyncio.Event()
        churning = asyncio.ensure_future(churn(http, server, confirmed, stop))
        await asyncio.sleep(first + RECORD_S - time.monotonic())
        server.proc.kill()              # SIGKILL in the middle of everything
        killed = time.monotonic()
        server.proc.wait(5)
        stop.set()
        rounds = await asyncio.wait_for(churning, 15)
    for pub in pubs:
        pub.location = None             # nobody left to tell
        await pub.pc.close()
        await pub.http.close()
    return ids, confirmed, first, killed, rounds


def test_kill_9_while_recording_three_lessons_and_writing_the_catalogue(tmp_path: Path) -> None:
    library = tmp_path / "library"
    clip = make_sync_clip(CACHE / "sync-320x180-24s-v1.webm")
    server = ServerProcess(library=library, log_path=tmp_path / "server-1.log")
    try:
        ids, confirmed, first, killed, rounds = asyncio.run(lessons_then_kill(server, clip))
    finally:
        server.stop()
    assert rounds >= 3, f"only {rounds} start/stop rounds before the kill"

    with sqlite3.connect(library / "catalogue.sqlite") as db:   # as the disk was left (WAL and all)
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"

    again = ServerProcess(library=library, log_path=tmp_path / "server-2.log")
    try:
        status, listing = again.http("/api/library?limit=100")
        listing = json.loads(listing)
        assert status == 200
        listed = {x["id"]: x for x in listing["lessons"]}
        while len(listed) < listing["total"]:
            _, more = again.http(f"/api/library?limit=100&offset={len(listed)}")
            listed.update({x["id"]: x for x in json.loads(more)["lessons"]})
        assert confirmed <= set(listed), f"lessons confirmed but not listed: {confirmed - set(listed)}"
        recorded = killed - first
        for room, lesson_id in ids.items():
            lesson = listed[lesson_id]
            assert lesson["state"] == "recovered", lesson
            media = library / "lessons" / lesson_id / "lesson.webm"
            with av.open(str(media)) as c:
                last_video = max(float(p.pts * p.time_base) for p in c.demux(video=0) if p.size)
            with av.open(str(media)) as c:   # decodes to its end without errors
                frames = sum(1 for _ in c.decode(video=0))
            print(f"{room}: plays to {last_video:.2f} s of {recorded:.2f} s recorded ({frames} frames)")
            assert last_video >= recorded - PLAYABLE_WITHIN_S, (room, last_video, recorded)
            assert frames >= (recorded - PLAYABLE_WITHIN_S) * 25, (room, frames, recorded)
        with sqlite3.connect(library / "catalogue.sqlite") as db:
            assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    finally:
        again.stop()
