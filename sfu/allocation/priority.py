"""Bandwidth priority among one classroom's sessions (DESIGN §5: the teacher's video and all audio first).

A classroom terminal plays the teacher's camera in one WHEP session and the screen share or the classroom on
stage in others; all of them share the school's link, and each has its own estimate. When the main session
shows that the link is short (its allocator had to trim the teacher's picture), the others yield: first to
their smallest layer, then, while the teacher's picture is at its own smallest, to no video at all. Audio is
never touched. Applied once a second from the room's timer; pure decision in `yield_level`.
"""
from __future__ import annotations

from typing import Iterable, Protocol, Sequence

YIELD_NONE = 0      # take what the link carries
YIELD_LOWEST = 1    # the smallest layer at its lowest frame rate
YIELD_PAUSE = 2     # no video until the teacher's picture recovers


class YieldingConsumer(Protocol):
    trimmed: bool      # its allocator holds it below the best quality on offer
    at_bottom: bool    # ... at the smallest layer

    def set_yield(self, level: int, now: float) -> None: ...


class SessionSlot(Protocol):
    source: str   # "camera" (the teacher's picture), "screen", "classroom", "stage"


class YieldingSession(Protocol):
    owner: str    # the classroom's identity
    slot: SessionSlot
    consumers: Sequence[tuple[str, YieldingConsumer]]


def yield_level(main_trimmed: bool, main_at_bottom: bool) -> int:
    if main_at_bottom:
        return YIELD_PAUSE
    return YIELD_LOWEST if main_trimmed else YIELD_NONE


def apply(viewers: Iterable[YieldingSession], now: float) -> None:
    """Group a room's viewer sessions by their owner's identity and make the secondary ones yield."""
    groups: dict[str, list[YieldingSession]] = {}
    for v in viewers:
        if v.owner:
            groups.setdefault(v.owner, []).append(v)
    for sessions in groups.values():
        main = next((s for s in sessions if s.slot.source == "camera"), None)
        main_video = None if main is None else next((c for k, c in main.consumers if k == "video"), None)
        level = YIELD_NONE
        if main_video is not None:
            level = yield_level(main_video.trimmed, main_video.at_bottom)
        for s in sessions:
            if s.slot.source == "camera":  # the teacher's picture itself never yields (two pages may share
                continue                   # one identity: each keeps its own)
            for kind, c in s.consumers:
                if kind == "video":
                    c.set_yield(level, now)
