"""The one NACK -> retransmission path, for a viewer's consumer and for a relay link's layer alike: each sequence
number asked for is looked up (the caller says which packet carried it, and whether the viewer's picture waits
for it, or None when resending it would be of no use), let through the RTX budget, and resent by the caller.
The outcome is a value, so the caller decides what an unrepairable loss means (a keyframe, for a viewer)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable, Optional

from sfu.forward.rtx_limiter import RtxLimiter
from sfu.ingest.inbound import IngressPacket

Find = Callable[[int], Optional[tuple[IngressPacket, bool]]]   # seq -> (packet, urgent) or None
Resend = Callable[[int, IngressPacket], bool]                  # seq, packet -> sent


@dataclass
class RepairOutcome:
    resent: int = 0
    skipped: int = 0          # nothing to resend, or of no use to the viewer
    refused: int = 0          # over the budget or the per-sequence limits
    exhausted: bool = False   # a refusal was of a packet already resent as often as allowed


def repair(lost: Iterable[int], find: Find, limiter: RtxLimiter, media_bps: float, now: float,
           resend: Resend) -> RepairOutcome:
    out = RepairOutcome()
    for seq in lost:
        found = find(seq)
        if found is None:
            out.skipped += 1
            continue
        pkt, urgent = found
        if not limiter.allow(seq, pkt.view.payload_size, now, media_bps, urgent):
            out.refused += 1
            out.exhausted = out.exhausted or limiter.exhausted
            continue
        if resend(seq, pkt):
            out.resent += 1
    return out
