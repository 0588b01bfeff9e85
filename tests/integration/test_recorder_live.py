"""The real recorder in the real app, in-process: started and stopped over the room WebSocket, an H.264 teacher,
and a disk that fills up during the lesson (a small tmpfs)."""
from __future__ import annotations

import asyncio
import os
import subprocess
import time
from pathlib import Path
from typing import AsyncIterator

import aiohttp
import av
import pytest
from aiohttp import web

from signaling.app import create_app
from signaling.media.library_api import RECORDER
from signaling.auth.tokens import mint
from testkit.inprocess import serve_app
from testkit.peers import WhipPublisher
from testkit.room_client import RoomClient
from testkit.sync_clip import make_sync_clip

SECRET = "recorder-live-secret-0123456789abcdef"
ROOM = "chem-9"
CACHE = Path.home() / ".cache" / "liveclass-tests"

pytestmark = pytest.mark.timeout(90)


class App:
    def __init__(self, app: web.Application, base: str, http: aiohttp.ClientSession, library: Path) -> None:
        self.app, self.base, self.http, self.library = app, base, http, library
        self.events: list[dict] = []
        app[RECORDER].on_event(self.events.append)

    def token(self, role: str, room: str = ROOM, **kw) -> str:
        return mint(SECRET, room, role, **kw)

    async def lesson(self, lesson_id: str) -> dict:
        async with self.http.get(f"{self.base}/api/library/{lesson_id}") as r:
            assert r.status == 200
            return await r.json()


async def serve(library: Path, **kw) -> AsyncIterator[App]:
    app = create_app(SECRET, ["127.0.0.1"], library=str(library), **kw)
    async with serve_app(app) as (base, http):
        yield App(app, base, http, library)


@pytest.fixture
async def live(tmp_path) -> AsyncIterator[App]:
    async for a in serve(tmp_path / "library"):
        yield a


async def publish(live: App, clip: Path, seconds: float, **kw) -> None:
    pub = WhipPublisher(live.base, ROOM, live.token("teacher"), clip, **kw)
    try:
        await pub.start()
        await pub.connected()
        await asyncio.sleep(seconds)
    finally:
        await pub.stop()


async def test_recording_started_and_stopped_over_the_room_websocket(live):
    clip = make_sync_clip(CACHE / "sync-320x180-24s-v1.webm")
    teacher = await RoomClient(live.http, live.base, ROOM, live.token("teacher", name="Mr Chen")).connect()
    terminal = await RoomClient(live.http, live.base, ROOM, live.token("terminal", name="Village school")).connect()
    try:
        assert (await terminal.request("recording_start"))["type"] == "error"   # a classroom may not
        assert (await teacher.request("recording_start"))["type"] == "ack"
        started = await terminal.next("recording")
        assert started["active"] is True and started["by"] == teacher.identity
        assert live.app[RECORDER].recording(ROOM) is not None
        await publish(live, clip, 4.0)
        t = time.monotonic()
        assert (await teacher.request("recording_stop"))["type"] == "ack"
        assert time.monotonic() - t < 2.0
        assert (await terminal.next("recording"))["active"] is False
    finally:
        await teacher.close()
        await terminal.close()
    async with live.http.get(f"{live.base}/api/library") as r:
        listing = await r.json()
    assert listing["total"] == 1
    lesson = listing["lessons"][0]
    assert lesson["state"] == "ready" and lesson["teacher"] == "Mr Chen" and lesson["room"] == ROOM
    assert 3.0 <= lesson["duration_s"] <= 4.5, lesson
    async with live.http.get(f"{live.base}{lesson['media_url']}") as r:
        assert r.status == 200 and r.headers["Content-Type"] == "video/webm"
        body = await r.read()
    assert len(body) == lesson["size"]
    assert [e["type"] for e in live.events][:2] == ["recording_started", "recording_stopped"]


async def test_a_room_configured_so_records_each_lesson_by_itself(tmp_path, clip):
    async for live in serve(tmp_path / "library", record_rooms=(ROOM,)):
        teacher = await RoomClient(live.http, live.base, ROOM, live.token("teacher", name="Ms Auto")).connect()
        terminal = await RoomClient(live.http, live.base, ROOM, live.token("terminal")).connect()
        try:
            assert live.app[RECORDER].recording(ROOM) is None        # joining is not a lesson
            await teacher.request("lesson_start")
            assert (await terminal.next("recording"))["active"] is True
            await publish(live, clip, 3.0)
            await teacher.request("lesson_end")
            assert (await terminal.next("recording"))["active"] is False
        finally:
            await teacher.close()
            await terminal.close()
        for _ in range(50):
            if live.app[RECORDER].recording(ROOM) is None:
                break
            await asyncio.sleep(0.05)
        async with live.http.get(f"{live.base}/api/library") as r:
            listing = await r.json()
        assert listing["total"] == 1
        lesson = listing["lessons"][0]
        assert lesson["state"] == "ready" and lesson["teacher"] == "Ms Auto" and 2.0 <= lesson["duration_s"] <= 3.8


async def test_a_recording_started_over_http_is_seen_in_the_room(live):
    teacher = await RoomClient(live.http, live.base, ROOM, live.token("teacher")).connect()
    try:
        headers = {"Authorization": f"Bearer {live.token('admin', room='*')}"}
        async with live.http.post(f"{live.base}/api/rooms/{ROOM}/recording", headers=headers) as r:
            assert r.status == 201
        assert (await teacher.next("recording"))["active"] is True
        assert (await teacher.request("recording_start"))["type"] == "ack"   # already on: nothing new
        async with live.http.delete(f"{live.base}/api/rooms/{ROOM}/recording", headers=headers) as r:
            assert r.status == 200
        assert (await teacher.next("recording"))["active"] is False
        assert (await teacher.request("recording_start"))["type"] == "ack"   # and it can start again
        assert (await teacher.next("recording"))["active"] is True and live.app[RECORDER].recording(ROOM)
        await teacher.request("recording_stop")
    finally:
        await teacher.close()


async def test_an_h264_teacher_is_recorded_without_transcoding(live, h264_clip):
    async with live.http.post(f"{live.base}/api/rooms/{ROOM}/recording",
                              headers={"Authorization": f"Bearer {live.token('admin', room='*')}"}) as r:
        assert r.status == 201
        started = await r.json()
    await publish(live, h264_clip, 3.0, audio=False, video_codec="video/H264")
    async with live.http.delete(f"{live.base}/api/rooms/{ROOM}/recording",
                                headers={"Authorization": f"Bearer {live.token('teacher')}"}) as r:
        assert r.status == 200
        lesson = await r.json()
    assert lesson["id"] == started["id"] and lesson["state"] == "ready"
    assert [(t["kind"], t["codec"]) for t in lesson["tracks"]] == [("video", "H264"), ("audio", "opus")]
    media = live.library / "lessons" / lesson["id"] / "lesson.webm"
    with av.open(str(media)) as c:
        assert c.streams.video[0].codec_context.name == "h264"
        frames = [f for f in c.decode(video=0)]
    assert len(frames) >= 60 and (frames[-1].width, frames[-1].height) == (640, 360)
    with av.open(str(media)) as c:   # the audio track is there (silence: the teacher sent no audio)
        assert sum(1 for _ in c.decode(audio=0)) >= 100
    async with live.http.get(f"{live.base}{lesson['media_url']}") as r:
        assert r.headers["Content-Type"] == "video/x-matroska"


@pytest.fixture
def small_disk(tmp_path) -> Path:
    mount = tmp_path / "small"
    mount.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs to fill up needs root")
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=12m", "tmpfs", str(mount)], capture_output=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True)


def fill(path: Path) -> int:
    """Write zeros until the disk says it is full; returns the bytes written."""
    n = 0
    chunk = b"\0" * 65536
    with open(path, "wb", buffering=0) as f:
        try:
            while n < 1 << 30:
                n += f.write(chunk)
        except OSError:
            pass
    return n


async def test_a_full_disk_stops_the_recording_with_an_error_and_keeps_what_was_written(small_disk, clip):
    async for live in serve(small_disk / "library"):
        teacher = await RoomClient(live.http, live.base, ROOM, live.token("teacher")).connect()
        try:
            assert (await teacher.request("recording_start"))["type"] == "ack"
            pub = WhipPublisher(live.base, ROOM, live.token("teacher"), clip)
            await pub.start()
            await pub.connected()
            try:
                await asyncio.sleep(4.0)
                filled_at = time.monotonic()
                assert fill(small_disk / "other-files.bin") > 0   # another program takes the rest of the disk
                deadline = time.monotonic() + 10
                while not any(e["type"] == "recording_failed" for e in live.events):
                    assert time.monotonic() < deadline, live.events
                    await asyncio.sleep(0.1)
                reacted = time.monotonic() - filled_at
                await asyncio.sleep(0.5)
                assert await teacher.alive()     # the lesson goes on; only the recording stopped
            finally:
                await pub.stop()
            failed = next(e for e in live.events if e["type"] == "recording_failed")
            assert "disk is full" in failed["reason"]
            assert reacted < 5.0
            assert (await teacher.next("recording", active=False))["by"] is None   # the room hears it
            note = await teacher.next("error")
            assert note["code"] == "recording_failed" and "disk is full" in note["message"]
            lesson = await live.lesson(failed["id"])
            assert lesson["state"] == "failed" and "disk is full" in lesson["error"]
            assert 1.5 <= lesson["duration_s"] <= 5.0, lesson   # written: up to about 2 s before the disk filled
            media = small_disk / "library" / "lessons" / lesson["id"] / "lesson.webm"
            with av.open(str(media)) as c:   # what was written plays, to its end, with its seek index
                assert abs(c.duration / 1e6 - lesson["duration_s"]) < 0.1
                assert sum(1 for _ in c.decode(video=0)) >= 50
            assert media.read_bytes().find(bytes.fromhex("1C53BB6B")) > 0      # Cues
            assert live.app[RECORDER].recording(ROOM) is None
        finally:
            await teacher.close()


async def test_stopping_the_server_finishes_the_recordings_it_had(tmp_path, clip):
    library = tmp_path / "library"
    gen = serve(library)
    live = await gen.__anext__()
    async with live.http.post(f"{live.base}/api/rooms/{ROOM}/recording",
                              headers={"Authorization": f"Bearer {live.token('teacher')}"}) as r:
        started = await r.json()
    await publish(live, clip, 2.5)
    with pytest.raises(StopAsyncIteration):
        await gen.__anext__()           # the app shuts down (as on SIGINT/SIGTERM)
    async for again in serve(library):  # and the next start has nothing to recover
        lesson = await again.lesson(started["id"])
        assert lesson["state"] == "ready" and lesson["error"] is None and 1.5 <= lesson["duration_s"] <= 3.0, lesson
