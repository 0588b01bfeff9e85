"""Who attended one lesson (pure): each classroom's arrivals and departures (the room WebSocket's roster),
visits with short gaps merged (a reconnect is not a departure), minutes present, and its picture's quality.
The tracker feeds it; rows go to the store every few seconds. Time is an argument."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

from signaling.school.quality import QualityTrack, VideoSample

MERGE_GAP_S = 60.0   # an absence shorter than this is a reconnect: the visit goes on


@dataclass
class Presence:
    identity: str
    name: str
    quality: QualityTrack
    spans: list[list[Optional[float]]] = field(default_factory=list)   # [arrived, left or None]

    @property
    def here(self) -> bool:
        return bool(self.spans) and self.spans[-1][1] is None

    def arrive(self, now: float) -> bool:
        """False when already here."""
        if self.here:
            return False
        self.spans.append([now, None])
        return True

    def depart(self, now: float) -> bool:
        if not self.here:
            return False
        self.spans[-1][1] = max(now, self.spans[-1][0] or now)
        self.quality.pause(now)
        return True

    def present_s(self, now: float) -> float:
        return sum((now if b is None else b) - a for a, b in self.spans if a is not None)

    def row(self, now: float) -> dict[str, Any]:
        return {"identity": self.identity, "name": self.name, "spans": [list(s) for s in self.spans],
                "present_s": round(self.present_s(now), 1), "reconnects": max(0, len(self.spans) - 1),
                "quality": self.quality.to_json()}


def visits(spans: list[list[Optional[float]]], merge_gap_s: float = MERGE_GAP_S) -> list[list[Optional[float]]]:
    """Spans with gaps under `merge_gap_s` merged: when a classroom really came and went."""
    out: list[list[Optional[float]]] = []
    for a, b in sorted(spans, key=lambda s: s[0] or 0.0):
        if out and out[-1][1] is not None and a is not None and a - out[-1][1] < merge_gap_s:
            out[-1][1] = b
        else:
            out.append([a, b])
    return out


class LessonLog:
    """One lesson's classrooms, as it runs. `dirty` names those whose row changed since `take_dirty`."""

    def __init__(self, lesson_id: str, started_at: float) -> None:
        self.lesson_id = lesson_id
        self.started_at = started_at
        self.ended_at: Optional[float] = None
        self.classrooms: dict[str, Presence] = {}
        self.dirty: set[str] = set()

    def _presence(self, identity: str, name: str) -> Presence:
        p = self.classrooms.get(identity)
        if p is None:
            p = self.classrooms[identity] = Presence(identity, name or identity, QualityTrack(self.started_at))
        elif name:
            p.name = name
        return p

    def arrive(self, identity: str, name: str, now: float) -> bool:
        """A classroom is in the lesson (joined or back); False if it already was."""
        self.dirty.add(identity)
        return self._presence(identity, name).arrive(now)

    def depart(self, identity: str, now: float) -> bool:
        p = self.classrooms.get(identity)
        if p is None:
            return False
        self.dirty.add(identity)
        return p.depart(now)

    def sample(self, identity: str, now: float, video: Optional[VideoSample], source_live: bool) -> None:
        p = self.classrooms.get(identity)
        if p is not None and p.here:
            p.quality.add(now, video, source_live)
            self.dirty.add(identity)

    def end(self, now: float) -> None:
        for identity in list(self.classrooms):
            self.depart(identity, now)
        self.ended_at = now

    def take_dirty(self, now: float) -> list[dict[str, Any]]:
        """The changed classrooms' rows (present counted up to `now`), and forget that they changed. Those still
        here always count as changed: their minutes grow."""
        names = self.dirty | {i for i, p in self.classrooms.items() if p.here}
        self.dirty = set()
        return [self.classrooms[i].row(now) for i in sorted(names)]
