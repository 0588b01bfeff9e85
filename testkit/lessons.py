"""Record real lessons for tests: a `liveclass serve` process, an aiortc WHIP publisher, the recording HTTP API."""
from __future__ import annotations

import asyncio
import concurrent.futures
import json
import os
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from testkit.peers import WhipPublisher
from testkit.server import ServerProcess

ROOM = "physics-7"
Span = tuple[float, float]   # (start, end), monotonic seconds


def http_json(method: str, url: str, token: Optional[str] = None, body: Any = None,
              timeout: float = 10) -> tuple[int, Any]:
    """(status, parsed JSON or text) of one request (errors are answers too)."""
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method)
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            raw, status = r.read(), r.status
    except urllib.error.HTTPError as e:
        raw, status = e.read(), e.code
    try:
        return status, json.loads(raw) if raw else None
    except ValueError:
        return status, raw.decode(errors="replace")


def run_async(coro: Any) -> Any:
    """Run a coroutine to its end from synchronous code, even where a loop runs already (Playwright's)."""
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()


@dataclass
class RecordedLesson:
    library: Path
    lesson: dict
    segments: list[tuple[float, float]] = field(default_factory=list)  # (start, end) monotonic of each publish
    stop_took: float = 0.0      # seconds the DELETE that stops the recording took (finalize included)
    screen: Optional[tuple[float, float]] = None   # (start, end) monotonic of the screen share

    @property
    def screen_media(self) -> Path:
        return self.library / "lessons" / self.lesson["id"] / "screen.webm"

    @property
    def media(self) -> Path:
        return self.library / "lessons" / self.lesson["id"] / "lesson.webm"

    @property
    def real_time(self) -> float:
        """From the first packet published to the last: what the recording should last."""
        return self.segments[-1][1] - self.segments[0][0]


async def publish_for(server: ServerProcess, room: str, token: str, clip: Path, seconds: float,
                      query: str = "", audio: bool = True) -> tuple[float, float]:
    """Publish `clip` for `seconds`; (monotonic time of the first packet sent, time it stopped)."""
    pub = WhipPublisher(server.base_url, room, token, clip, query=query, audio=audio)
    try:
        await pub.start()
        await pub.connected()
        deadline = time.monotonic() + 10
        while any(t.start is None for t in pub.tracks) and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        first = min(t.start for t in pub.tracks if t.start is not None)
        await asyncio.sleep(max(0.0, first + seconds - time.monotonic()))
        end = time.monotonic()
    finally:
        await pub.stop()
    return first, end


async def _lesson(server: ServerProcess, room: str, token: str, clip: Path, publish: tuple[float, ...],
                  pause: float, screen: Optional[Path]) -> tuple[list[Span], Optional[Span]]:
    total = sum(publish) + pause * (len(publish) - 1) + 1.5
    shown = asyncio.ensure_future(publish_for(server, room, token, screen, total, "?source=screen", False)) \
        if screen else None
    segments = []
    try:
        for i, seconds in enumerate(publish):
            if i:
                await asyncio.sleep(pause)
            segments.append(await publish_for(server, room, token, clip, seconds))
    finally:
        if shown is not None and not segments:
            shown.cancel()
    return segments, (await shown) if shown is not None else None


def record_lesson(library: Path, clip: Path, publish: tuple[float, ...] = (10.0, 7.0), pause: float = 3.0,
                  room: str = ROOM, meta: Optional[dict] = None, log_path: Optional[Path] = None,
                  screen: Optional[Path] = None) -> RecordedLesson:
    """Start recording, publish `publish[0]` seconds, leave for `pause` seconds, come back for `publish[1]`, ...,
    (and share `screen`, video only, from the start to the end), stop recording; the server then stops and the
    library stays."""
    server = ServerProcess(library=library, log_path=log_path)
    try:
        teacher = server.token(room, "teacher", name="Ada Teacher")
        status, lesson = http_json("POST", f"{server.base_url}/api/rooms/{room}/recording", teacher,
                                   meta or {"title": "Optics: lenses", "subject": "Physics", "school": "No. 1 Middle",
                                            "grade": "7"})
        if status != 201:
            raise RuntimeError(f"recording did not start: {status} {lesson}")
        segments, shared = run_async(_lesson(server, room, teacher, clip, publish, pause, screen))
        time.sleep(0.3)
        t = time.monotonic()
        status, lesson = http_json("DELETE", f"{server.base_url}/api/rooms/{room}/recording", teacher)
        took = time.monotonic() - t
        if status != 200:
            raise RuntimeError(f"recording did not stop: {status} {lesson}")
        deadline = time.monotonic() + 30   # the poster and chapters come from a background job
        while lesson.get("thumbnail_url") is None and time.monotonic() < deadline:
            time.sleep(0.2)
            status, lesson = http_json("GET", f"{server.base_url}/api/library/{lesson['id']}")
        return RecordedLesson(library, lesson, segments, took, shared)
    finally:
        server.stop()


_shared: dict[str, RecordedLesson] = {}


def shared_lesson(workdir_factory: Any) -> RecordedLesson:
    """The 20 s lesson: the camera (the lip-sync clip) for 10 s, a 3 s pause, 7 s more; the screen (four slides,
    changing at 6, 12 and 18 s) shared throughout. Recorded once per test run and shared by the test modules
    that look at it (`workdir_factory`: pytest's tmp_path_factory)."""
    if "lesson" not in _shared:
        from testkit.sync_clip import make_slides_clip, make_sync_clip
        cache = Path(os.environ.get("LIVECLASS_TEST_CACHE", Path.home() / ".cache" / "liveclass-tests"))
        clip = make_sync_clip(cache / "sync-320x180-24s-v1.webm")
        slides = make_slides_clip(cache / "slides-640x360-v1.webm", changes=(6.0, 12.0, 18.0))
        work = workdir_factory.mktemp("recorded")
        _shared["lesson"] = record_lesson(work / "library", clip, log_path=work / "server.log", screen=slides)
    return _shared["lesson"]
