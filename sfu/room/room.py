"""A room on this SFU: its feeds (teacher camera, teacher screen, one per classroom), its viewers, the stage
and the room's timer."""
from __future__ import annotations

import asyncio
import logging
import time
from typing import Iterator, Optional, Sequence

from sfu.errors import RoomBusy
from sfu.allocation import priority
from sfu.room.contracts import FeedPublisher
from sfu.room.members import RelayLink, Viewer
from sfu.room.feed import KINDS, MAIN, Feed, LessonFacts, Slot
from sfu.ladder.ladder_rung import Rung
from sfu.room.track import Track

log = logging.getLogger(__name__)

FAST_TICK = 0.05
REPORT_EVERY = 20  # fast ticks: one report a second
PATH_CHECK_EVERY = 4  # fast ticks: follow ICE pair changes within 200 ms
MAX_CLASSROOMS = 300  # classroom feeds per room (as the room WebSocket's participant limit)


class Room:
    def __init__(self, room_id: str, ladder_rungs: Sequence[Rung] = ()) -> None:
        self.id = room_id
        # the teacher's camera and screen may come from a single-layer publisher (OBS): they get the ladder;
        # classroom cameras are small already
        self.main = Feed(room_id, MAIN, ladder_rungs)
        self.screen = Feed(room_id, Slot("screen"), ladder_rungs)
        self.classrooms: dict[str, Feed] = {}
        self.idle_tracks: dict[str, Track] = {k: Track(k, time.time) for k in KINDS}  # the stage, when empty
        self.stage: Optional[str] = None
        self.facts: Optional[LessonFacts] = None  # None: no lesson (plain WHIP/WHEP), every microphone open
        self.viewers: set[Viewer] = set()
        self.relays: set[RelayLink] = set()  # links to edge nodes (cascade): they keep the room too
        self._timer: Optional[asyncio.Task] = None

    # --- compatibility: the teacher's main feed is "the room's" tracks and publisher ----------------------

    @property
    def tracks(self) -> dict[str, Track]:
        return self.main.tracks

    @property
    def publisher(self) -> Optional[FeedPublisher]:
        return self.main.publisher

    # --- feeds and slots -----------------------------------------------------------------------------------

    def feeds(self) -> Iterator[Feed]:
        yield self.main
        yield self.screen
        yield from list(self.classrooms.values())

    def publishers(self) -> Iterator[FeedPublisher]:
        for f in self.feeds():
            if f.publisher is not None:
                yield f.publisher

    @property
    def empty(self) -> bool:
        return (not self.viewers and not self.relays and all(f.publisher is None for f in self.feeds())
                and not any(t.sinks for f in self.feeds() for t in f.tracks.values()))

    def classroom(self, identity: str, create: bool = True) -> Optional[Feed]:
        feed = self.classrooms.get(identity)
        if feed is None and create:
            if len(self.classrooms) >= MAX_CLASSROOMS:
                raise RoomBusy(f"room {self.id} has {MAX_CLASSROOMS} classrooms already")
            feed = self.classrooms[identity] = Feed(self.id, Slot("classroom", identity))
            feed.muted = self._mic_closed(identity)
        return feed

    def feed(self, slot: Slot) -> Feed:
        """The feed a publisher of `slot` sends to (a classroom's is created on first use)."""
        if slot.source == "camera":
            return self.main
        if slot.source == "screen":
            return self.screen
        if slot.source == "classroom":
            assert slot.identity is not None
            feed = self.classroom(slot.identity)
            assert feed is not None
            return feed
        raise ValueError(f"nothing publishes to the {slot} slot")

    def tracks_for(self, slot: Slot) -> dict[str, Track]:
        """The tracks a viewer of `slot` gets now."""
        if slot.source == "stage":
            if self.stage is None:
                return self.idle_tracks
            feed = self.classroom(self.stage)
            return feed.tracks if feed is not None else self.idle_tracks
        return self.feed(slot).tracks

    def prune(self) -> None:
        """Forget classroom feeds nobody publishes to or consumes."""
        for identity, feed in list(self.classrooms.items()):
            if feed.idle and identity != self.stage:
                del self.classrooms[identity]

    # --- the lesson ---------------------------------------------------------------------------------------

    def _mic_closed(self, identity: str) -> bool:
        return self.facts is not None and identity not in self.facts.open_mics

    def apply_lesson(self, facts: Optional[LessonFacts]) -> None:
        """Follow the lesson: move stage viewers to the classroom on stage, open and close microphones."""
        self.facts = facts
        for identity, feed in list(self.classrooms.items()):
            feed.muted = self._mic_closed(identity)
        self.set_stage(facts.on_stage if facts is not None else None)

    def set_stage(self, identity: Optional[str]) -> None:
        if identity == self.stage:
            return
        log.info("room %s: stage %s -> %s", self.id, self.stage, identity)
        self.stage = identity
        tracks = self.tracks_for(Slot("stage"))
        for v in list(self.viewers):
            if v.slot.source == "stage":
                v.repoint(tracks)
        self.prune()

    # --- the timer ----------------------------------------------------------------------------------------

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
        for f in list(self.feeds()):
            for t in f.tracks.values():
                await t.close()  # a server-side ladder's thread and codecs, if the track had one

    async def _run(self) -> None:
        n = 0
        last_report = time.monotonic()
        while True:
            await asyncio.sleep(FAST_TICK)
            n += 1
            now = time.monotonic()
            try:
                if self._step(n, now, last_report):
                    last_report = now
            except Exception:
                log.exception("room %s timer step failed", self.id)

    def _step(self, n: int, now: float, last_report: float) -> bool:
        """One tick of the timer; True when it was a report tick. A function of its own so that its loop
        variables end with it: left in the timer's frame, the last viewer iterated (its peer connection, sockets
        and buffers) stayed alive for as long as the room did after that viewer left."""
        publishing = [(f, ingest) for f in self.feeds()
                      if f.publisher is not None and (ingest := f.publisher.ingest) is not None]
        publishers = [f.publisher for f, _ in publishing]
        for _, ingest in publishing:
            ingest.fast_tick(now)
        for v in self.viewers:
            for kind, c in v.consumers:
                if kind == "video":
                    c.fast_tick(now, FAST_TICK)
        if n % PATH_CHECK_EVERY == 0:
            for s in [*self.viewers, *publishers]:
                if s.tap is not None:
                    s.tap.check_path()
        if n % REPORT_EVERY != 0:
            return False
        interval = max(0.001, now - last_report)
        audio_loss = self._audio_loss_by_track()
        for f, ingest in publishing:
            ingest.set_downstream_loss(audio_loss.get(id(f.tracks["audio"]), 0.0))
            ingest.report_tick(now, interval)
            f.tracks["video"].order_layers()
        for f in self.feeds():
            f.tracks["video"].tick(now)
        priority.apply(self.viewers, now)
        wall = time.time()
        for v in self.viewers:
            for _, c in v.consumers:
                c.tick(now, wall, interval)
        return True

    def _audio_loss_by_track(self) -> dict[int, float]:
        """Per audio track (by id): the steady loss of its lossiest local listener."""
        worst: dict[int, float] = {}
        for v in self.viewers:
            for kind, c in v.consumers:
                if kind == "audio":
                    key = id(c.owner)
                    worst[key] = max(worst.get(key, 0.0), c.loss_floor)
        return worst

    def dump(self) -> dict:
        main = self.main.dump()
        return {
            "room": self.id,
            "publisher": main["publisher"],
            "viewers": [v.dump() for v in self.viewers],
            "relays": [r.dump() for r in self.relays],
            "tracks": main["tracks"],
            "screen": self.screen.dump(),
            "classrooms": {identity: f.dump() for identity, f in self.classrooms.items()},
            "stage": self.stage,
            "lesson": None if self.facts is None else {"on_stage": self.facts.on_stage,
                                                       "open_mics": sorted(self.facts.open_mics)},
        }
