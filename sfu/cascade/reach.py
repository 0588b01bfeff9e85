"""How the teacher's camera reaches each classroom, wherever its viewer session lives.

A classroom's viewer may be served by the room's own node or by an edge (another region, an origin's overflow,
or one of the workers a big lesson is spread over). The lesson's reports and roster live on the origin, so each
edge sends the origin its viewers' figures over the link's data channel (`reach`, every REACH_EVERY_S), and
the origin keeps each classroom's latest for REACH_FRESH_S: one view of every classroom of the room.
Pure: the time is an argument; the wire form is validated (a bug on another node must not crash this one).
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterable, Optional

if TYPE_CHECKING:
    from sfu.room.members import Viewer

REACH_EVERY_S = 2.0
REACH_FRESH_S = 6.0            # three reports missed: the edge or its viewer is gone
MAX_PER_MESSAGE = 400          # ~25 KiB of JSON: well inside a control message's 64 KiB
MAX_REMOTE = 5000              # classrooms remembered per link at most
MAX_TEXT = 128


@dataclass(frozen=True)
class Reach:
    """One classroom's viewer of the teacher's camera: its session, how much video it was sent, the picture
    height of the layer it gets, its loss (0..1, receiver reports), RTT (ms) and bitrate (bit/s: its estimate,
    else what it is sent)."""
    owner: str
    session: str
    packets: int
    height: Optional[int] = None
    loss: float = 0.0
    rtt_ms: Optional[float] = None
    bitrate: Optional[float] = None

    def link(self) -> dict[str, Optional[float]]:
        """The roster's link figures."""
        return {"loss": round(self.loss, 4), "rtt": self.rtt_ms, "bitrate": self.bitrate}


def local_reach(viewers: Iterable["Viewer"]) -> dict[str, Reach]:
    """The figures of this node's viewers of the teacher's camera that name their classroom, by classroom."""
    out: dict[str, Reach] = {}
    for v in viewers:
        video = next((c for kind, c in v.consumers if kind == "video"), None)
        if v.closed or not v.owner or v.slot.source != "camera" or video is None:
            continue
        bitrate = float(video.estimate_bps) if video.estimate_bps else float(round(video.media_bps))
        out[v.owner] = Reach(v.owner, v.id, video.packets, video.picture_height, round(video.fraction_lost, 4),
                             None if video.rtt is None else round(video.rtt * 1000, 1), bitrate)
    return out


def encode_reach(items: Iterable[Reach]) -> list[str]:
    """`reach` control messages carrying `items`, MAX_PER_MESSAGE each (none when there are none)."""
    rows = [[r.owner, r.session, r.packets, r.height, r.loss, r.rtt_ms, r.bitrate] for r in items]
    return [json.dumps({"type": "reach", "viewers": rows[i:i + MAX_PER_MESSAGE]}, separators=(",", ":"))
            for i in range(0, len(rows), MAX_PER_MESSAGE)]


class ReachError(ValueError):
    """A `reach` message that cannot be used."""


def _number(x: object, low: float, high: float, optional: bool = True) -> Optional[float]:
    if x is None and optional:
        return None
    if isinstance(x, bool) or not isinstance(x, (int, float)) or not math.isfinite(x) or not low <= x <= high:
        raise ReachError(f"{x!r} is not a number in [{low}, {high}]")
    return float(x)


def reach_of(msg: dict) -> list[Reach]:
    """The validated viewers of a `reach` message; raises ReachError (the whole message is refused)."""
    rows = msg.get("viewers")
    if not isinstance(rows, list) or len(rows) > MAX_PER_MESSAGE:
        raise ReachError(f"viewers must be a list of at most {MAX_PER_MESSAGE}")
    out = []
    for row in rows:
        if not isinstance(row, list) or len(row) != 7:
            raise ReachError("a viewer is a list of 7 figures")
        owner, session = row[0], row[1]
        if not all(isinstance(t, str) and 0 < len(t) <= MAX_TEXT for t in (owner, session)):
            raise ReachError("a viewer names its owner and session")
        packets = _number(row[2], 0, 2 ** 53, optional=False)
        height = _number(row[3], 0, 10_000)
        out.append(Reach(owner, session, int(packets or 0), None if height is None else int(height),
                         _number(row[4], 0, 1, optional=False) or 0.0, _number(row[5], 0, 600_000),
                         _number(row[6], 0, 1e11)))
    return out


class RemoteReach:
    """What an edge reported of its viewers, each kept while fresh (a viewer that left is forgotten soon)."""

    def __init__(self) -> None:
        self._latest: dict[str, tuple[float, Reach]] = {}

    def update(self, items: Iterable[Reach], now: float) -> None:
        for r in items:
            if r.owner in self._latest or len(self._latest) < MAX_REMOTE:
                self._latest[r.owner] = (now, r)

    def fresh(self, now: float) -> dict[str, Reach]:
        for owner in [o for o, (at, _) in self._latest.items() if now - at > REACH_FRESH_S]:
            del self._latest[owner]
        return {owner: r for owner, (_, r) in self._latest.items()}
