"""A publisher slot in a room and the tracks it feeds, kept across the publisher's reconnections.

A room has the teacher's main feed (camera + microphone), the teacher's screen feed, and one feed per classroom
terminal (its small camera + microphone), keyed by the terminal's identity: tracks are addressed by
(publisher identity, source, kind). Viewers subscribe to a *slot* (`Slot`), which the room resolves to a feed's
tracks; the `stage` slot follows whichever classroom is on stage.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Optional, Sequence

from sfu.ingest.inbound import InboundStream
from sfu.ladder.ladder_rung import Rung
from sfu.room.contracts import FeedPublisher
from sfu.room.track import Track

KINDS = ("audio", "video")
PUBLISH_SOURCES = ("camera", "screen", "classroom")
VIEW_SOURCES = ("camera", "screen", "stage", "classroom")


@dataclass(frozen=True)
class Slot:
    """What a session publishes to or plays: `camera` (the teacher's main camera and microphone), `screen`
    (the teacher's screen share), `classroom` (one terminal's camera and microphone: `identity` names it) or,
    for viewers only, `stage` (the classroom on stage, whichever it is)."""
    source: str = "camera"
    identity: Optional[str] = None

    def __post_init__(self) -> None:
        if self.source not in VIEW_SOURCES:
            raise ValueError(f"unknown source {self.source!r}")
        if (self.source == "classroom") != (self.identity is not None):
            raise ValueError("a classroom slot names its identity, and only a classroom slot does")

    def __str__(self) -> str:
        return f"classroom:{self.identity}" if self.identity is not None else self.source


MAIN = Slot("camera")


@dataclass(frozen=True)
class LessonFacts:
    """What the lesson (signaling) tells the media plane: who is on stage, whose microphone is open."""
    on_stage: Optional[str] = None
    open_mics: frozenset[str] = frozenset()


class Feed:
    def __init__(self, room_id: str, slot: Slot, ladder_rungs: Sequence[Rung] = ()) -> None:
        self.room_id = room_id
        self.slot = slot
        # ladder_rungs: server-made lower layers for a single-layer publisher's video (track_ladder.py)
        self.tracks: dict[str, Track] = {k: Track(k, time.time, ladder_rungs if k == "video" else ())
                                         for k in KINDS}
        for t in self.tracks.values():
            t.on_keyframe_needed = self._keyframe_needed
        self.publisher: Optional[FeedPublisher] = None
        self.muted = False  # the publisher's audio is dropped at ingest (the teacher closed this microphone)

    @property
    def label(self) -> str:
        """For logs: room/slot."""
        return f"{self.room_id}/{self.slot}"

    @property
    def idle(self) -> bool:
        """Nobody publishes to it and nobody consumes it: a classroom feed in this state can be forgotten."""
        return self.publisher is None and not any(t.consumers or t.sinks for t in self.tracks.values())

    def _keyframe_needed(self, stream: InboundStream, now: float) -> None:
        if self.publisher is not None and self.publisher.ingest is not None:
            self.publisher.ingest.request_keyframe(stream, now)

    def set_publisher(self, session: Optional[FeedPublisher]) -> None:
        self.publisher = session
        if session is None:
            now = time.monotonic()
            for t in self.tracks.values():
                t.detach_all(now)

    def dump(self) -> dict:
        return {
            "slot": str(self.slot), "muted": self.muted,
            "publisher": self.publisher.dump() if self.publisher else None,
            "tracks": {k: {"codec": t.source.codec if t.source else None, "consumers": len(t.consumers),
                           "forwarded": t.forwarded,
                           "layers": [{"rid": s.rid, "width": s.width, "height": s.height,
                                       "bitrate_bps": [int(r) for r in s.rates]} for s in t.layers]}
                       for k, t in self.tracks.items()},
        }
