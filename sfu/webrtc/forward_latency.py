"""How long the node holds a packet: from the datagram's arrival on the node's socket to the moment every viewer's
copy of it has been handed to the kernel.

The socket's handler notes each RTP datagram's arrival by its SSRC and sequence number (the SRTP header is in the
clear), and the connection's handler looks it up once it has sent the copies: the time in between covers the
wait behind other work on the event loop, decryption, routing, every viewer's rewrite, protection and sending.
Copies a viewer's pacer holds back leave later, on purpose, and are not counted. A histogram with log-spaced
buckets keeps the distribution in constant memory; quantiles come from the bucket counts (within a bucket's
width, 19 %). Pure: times are arguments.
"""
from __future__ import annotations

import bisect
import math
from collections import OrderedDict
from typing import Optional, Sequence

RATIO = 1.19                 # each bucket's upper bound over the previous one
FIRST_BOUND_S = 50e-6
BUCKETS = 64                 # up to ~3.4 s; later ones land in the last
MAX_PENDING = 4096           # arrivals remembered at most (packets of every publisher on the node)

BOUNDS: tuple[float, ...] = tuple(FIRST_BOUND_S * RATIO ** i for i in range(BUCKETS))


class ArrivalStamps:
    """When each recent RTP datagram arrived, by (SSRC, sequence number)."""

    def __init__(self, limit: int = MAX_PENDING) -> None:
        self._limit = limit
        self._at: OrderedDict[tuple[int, int], float] = OrderedDict()

    def note(self, datagram: bytes, now: float) -> None:
        """A datagram arrived: remembered if it is RTP (not RTCP, RFC 5761: payload types 64-95 are RTCP's)."""
        if len(datagram) < 12 or datagram[0] >> 6 != 2 or 64 <= datagram[1] & 0x7F < 96:
            return
        key = (int.from_bytes(datagram[8:12], "big"), int.from_bytes(datagram[2:4], "big"))
        self._at[key] = now
        if len(self._at) > self._limit:
            self._at.popitem(last=False)

    def take(self, ssrc: int, seq: int) -> Optional[float]:
        """The arrival of that packet, forgotten now (None: not noted, or forgotten already)."""
        return self._at.pop((ssrc, seq), None)


class LatencyHistogram:
    def __init__(self) -> None:
        self.counts = [0] * (BUCKETS + 1)   # the last: beyond the last bound
        self.total = 0
        self.sum_s = 0.0

    def add(self, seconds: float) -> None:
        self.counts[bisect.bisect_left(BOUNDS, seconds)] += 1
        self.total += 1
        self.sum_s += seconds


def quantile(counts: Sequence[int], q: float) -> Optional[float]:
    """The q-quantile (0..1) of a histogram's counts (or of the difference of two snapshots), interpolated
    geometrically within its bucket; None when it is empty."""
    total = sum(counts)
    if not total:
        return None
    rank = q * total
    seen = 0
    for i, n in enumerate(counts):
        if n and seen + n >= rank:
            low = BOUNDS[i - 1] if i else FIRST_BOUND_S / RATIO
            high = BOUNDS[i] if i < BUCKETS else BOUNDS[-1] * RATIO
            share = (rank - seen) / n
            return low * math.exp(share * math.log(high / low))
        seen += n
    return BOUNDS[-1]
