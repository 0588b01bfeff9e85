"""A room on this SFU: the teacher's tracks, the current publisher and the viewers, and the room's timer."""
from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Optional

from .track import Track

if TYPE_CHECKING:
    from .sessions import PublisherSession, ViewerSession

log = logging.getLogger(__name__)

FAST_TICK = 0.05
REPORT_EVERY = 20  # fast ticks: one report a second
PATH_CHECK_EVERY = 4  # fast ticks: follow ICE pair changes within 200 ms


class Room:
    def __init__(self, room_id: str) -> None:
        self.id = room_id
        self.tracks: dict[str, Track] = {"audio": Track("audio", time.time), "video": Track("video", time.time)}
        for t in self.tracks.values():
            t.on_keyframe_needed = self._keyframe_needed
        self.publisher: Optional["PublisherSession"] = None
        self.viewers: set["ViewerSession"] = set()
        self._timer: Optional[asyncio.Task] = None

    @property
    def empty(self) -> bool:
        return self.publisher is None and not self.viewers and not any(t.sinks for t in self.tracks.values())

    def _keyframe_needed(self, stream, now: float) -> None:
        if self.publisher is not None:
            self.publisher.ingest.request_keyframe(stream, now)

    def set_publisher(self, session: Optional["PublisherSession"]) -> None:
        self.publisher = session
        if session is None:
            now = time.monotonic()
            for t in self.tracks.values():
                t.detach_all(now)
        self.ensure_timer()

    def ensure_timer(self) -> None:
        if self._timer is None and not self.empty:
            self._timer = asyncio.get_running_loop().create_task(self._run(), name=f"room-timer-{self.id}")

    async def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            try:
                await self._timer
            except asyncio.CancelledError:
                pass
            self._timer = None

    async def _run(self) -> None:
        n = 0
        last_report = time.monotonic()
        while True:
            await asyncio.sleep(FAST_TICK)
            n += 1
            now = time.monotonic()
            try:
                if self.publisher is not None:
                    self.publisher.ingest.fast_tick(now)
                for c in self.tracks["video"].consumers:
                    c.fast_tick(now, FAST_TICK)
                if n % PATH_CHECK_EVERY == 0:
                    for v in self.viewers:
                        if v.tap is not None:
                            v.tap.check_path()
                    if self.publisher is not None and self.publisher.tap is not None:
                        self.publisher.tap.check_path()
                if n % REPORT_EVERY == 0:
                    interval = max(0.001, now - last_report)
                    last_report = now
                    if self.publisher is not None:
                        self.publisher.ingest.report_tick(now, interval)
                        self.tracks["video"].order_layers()
                    wall = time.time()
                    for track in self.tracks.values():
                        for c in track.consumers:
                            c.tick(now, wall, interval)
            except Exception:
                log.exception("room %s timer step failed", self.id)

    def dump(self) -> dict:
        return {
            "room": self.id,
            "publisher": self.publisher.dump() if self.publisher else None,
            "viewers": [v.dump() for v in self.viewers],
            "tracks": {k: {"codec": t.source.codec if t.source else None, "consumers": len(t.consumers),
                           "forwarded": t.forwarded,
                           "layers": [{"rid": s.rid, "width": s.width, "height": s.height,
                                       "bitrate_bps": [int(r) for r in s.rates]} for s in t.layers]}
                       for k, t in self.tracks.items()},
        }
