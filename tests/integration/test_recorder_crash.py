"""`kill -9` of the server in the middle of a recorded lesson: the next start finds the unfinished lesson,
repairs it and lists it as recovered, playable to within 3 s of the kill."""
from __future__ import annotations

import asyncio
import time
from pathlib import Path

import av
import pytest

from testkit.lessons import ROOM, http_json
from testkit.peers import WhipPublisher
from testkit.server import ServerProcess
from testkit.sync_clip import make_sync_clip

CACHE = Path.home() / ".cache" / "liveclass-tests"

pytestmark = pytest.mark.timeout(90)


async def publish_then_kill(server: ServerProcess, token: str, clip: Path, seconds: float) -> tuple[float, float]:
    pub = WhipPublisher(server.base_url, ROOM, token, clip)
    await pub.start()
    await pub.connected()
    while any(t.start is None for t in pub.tracks):
        await asyncio.sleep(0.01)
    first = min(t.start for t in pub.tracks if t.start is not None)
    await asyncio.sleep(first + seconds - time.monotonic())
    server.proc.kill()                 # SIGKILL: no shutdown handler runs, nothing is finalized
    killed = time.monotonic()
    server.proc.wait(5)
    pub.location = None                # nobody left to tell
    await pub.pc.close()
    await pub.http.close()
    return first, killed


def test_a_lesson_survives_kill_9_and_is_listed_as_recovered(tmp_path):
    library = tmp_path / "library"
    clip = make_sync_clip(CACHE / "sync-320x180-24s-v1.webm")
    server = ServerProcess(library=library, log_path=tmp_path / "server-1.log")
    try:
        teacher = server.token(ROOM, "teacher", name="Ada Teacher")
        status, started = http_json("POST", f"{server.base_url}/api/rooms/{ROOM}/recording", teacher,
                                    {"title": "Interrupted lesson"})
        assert status == 201, started
        first, killed = asyncio.run(publish_then_kill(server, teacher, clip, 9.0))
    finally:
        server.stop()
    media = library / "lessons" / started["id"] / "lesson.webm"
    assert media.stat().st_size > 0
    with av.open(str(media)) as c:   # playable as it was left, before any repair
        assert sum(1 for p in c.demux(video=0) if p.size) > 100

    again = ServerProcess(library=library, log_path=tmp_path / "server-2.log")
    try:
        status, listing = http_json("GET", f"{again.base_url}/api/library")
        assert status == 200 and listing["total"] == 1
        lesson = listing["lessons"][0]
        assert lesson["id"] == started["id"] and lesson["state"] == "recovered", lesson
        assert lesson["title"] == "Interrupted lesson" and lesson["media_url"]
        recorded = killed - first
        assert recorded - 3.0 <= lesson["duration_s"] <= recorded + 0.5, (lesson["duration_s"], recorded)
        with av.open(str(media)) as c:
            assert abs(c.duration / 1e6 - lesson["duration_s"]) < 0.1
            last_video = max(float(p.pts * p.time_base) for p in c.demux(video=0) if p.size)
        assert last_video >= recorded - 3.0
        with av.open(str(media)) as c:   # decodes to its end without errors
            frames = sum(1 for _ in c.decode(video=0))
        assert frames >= (recorded - 3.0) * 25
        # a restart does not touch it again; and recording the room works again
        status, again_started = http_json("POST", f"{again.base_url}/api/rooms/{ROOM}/recording",
                                          again.token(ROOM, "teacher"))
        assert status == 201 and again_started["id"] != lesson["id"]
        status, stopped = http_json("DELETE", f"{again.base_url}/api/rooms/{ROOM}/recording",
                                    again.token(ROOM, "teacher"))
        assert status == 200 and stopped["state"] == "failed" and "nothing was recorded" in stopped["error"]
    finally:
        again.stop()
