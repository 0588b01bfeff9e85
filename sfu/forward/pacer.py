"""Pacing one viewer's packets, pure: packets leave at the link estimate times PACING_FACTOR instead of in bursts
(a keyframe of dozens of packets would otherwise land in a thin link's small queue at once and overflow it).

Classes, served in this order: audio (never held: it is small and late audio is a gap), retransmissions,
video, probes. A probe never goes ahead of media: it leaves only when no media waits, paced like the rest, from
a queue of its own that holds at most PROBE_QUEUE_S of the rate (more would only be sent late; a probe behind a
backlog measures nothing); beyond that it is refused. A queue that would take longer than MAX_QUEUE_S to drain raises the rate until it would
not: holding media longer than that only turns it into late, useless media. Time is an argument; no IO.
"""
from __future__ import annotations

from collections import deque
from typing import Generic, Iterator, Optional, TypeVar

AUDIO, RETRANSMISSION, VIDEO, PROBE = range(4)
PACING_FACTOR = 2.5
START_BPS = 5_000_000       # before the first estimate: hardly paced
MIN_BPS = 250_000
BURST_S = 0.005             # what may leave at once: libwebrtc's pacer sends every 5 ms
PROBE_QUEUE_S = 0.06        # probe padding queued at most this much of the rate (its sender tops it up every
                            # 50 ms: refusing all but the 5 ms burst would cap a probe at a packet per top-up)
MAX_QUEUE_S = 0.5

P = TypeVar("P")


class Pacer(Generic[P]):
    """The queue and the budget of one viewer connection. `P` is the packet (bytes, or what the sender needs)."""

    def __init__(self, rate_bps: float = START_BPS) -> None:
        self.rate_bps = max(MIN_BPS, rate_bps)
        self._debt = 0.0              # bytes sent beyond what the rate has paid off, as of `_at`
        self._at: Optional[float] = None
        self._queues: tuple[deque, deque] = (deque(), deque())   # retransmissions, video: (packet, size, tag)
        self.queued_bytes = 0         # media waiting (probes apart)
        self._probes: deque = deque()  # (packet, size)
        self.probe_bytes = 0
        self._drain_bps = 0.0         # a rate that empties the queue within MAX_QUEUE_S, until it is empty
        self.dropped = 0              # packets dropped from the queue (an old layer's backlog)
        self.probes_refused = 0

    def set_rate(self, bps: float) -> None:
        self.rate_bps = max(MIN_BPS, bps)

    def _pay(self, now: float) -> None:
        if self._at is not None and now > self._at:
            self._debt = max(0.0, self._debt - (now - self._at) * self._effective_rate() / 8)
        self._at = now if self._at is None else max(self._at, now)

    def _effective_rate(self) -> float:
        """The pacing rate, raised while a queue that would take longer than MAX_QUEUE_S drains."""
        return max(self.rate_bps, self._drain_bps)

    def _room(self) -> bool:
        return self._debt <= self._effective_rate() / 8 * BURST_S

    def offer(self, now: float, cls: int, packet: P, size: int, tag: object = None) -> bool:
        """A packet to send. True: send it now (its bytes are counted); False: it was queued (video,
        retransmission) or refused (a probe without room). Audio always goes now."""
        self._pay(now)
        if cls == AUDIO:
            self._debt += size
            return True
        if cls == PROBE:
            if not self.queued_bytes and not self.probe_bytes and self._room():
                self._debt += size
                return True
            if (self.probe_bytes + size) * 8 > self._effective_rate() * PROBE_QUEUE_S:
                self.probes_refused += 1
                return False
            self._probes.append((packet, size))
            self.probe_bytes += size
            return False
        if not self.queued_bytes and self._room():
            self._debt += size
            return True
        self._queues[cls - RETRANSMISSION].append((packet, size, tag))
        self.queued_bytes += size
        if self.queued_bytes * 8 > self._effective_rate() * MAX_QUEUE_S:
            self._drain_bps = self.queued_bytes * 8 / MAX_QUEUE_S
        return False

    def due(self, now: float) -> Iterator[tuple[P, bool, object]]:
        """The queued packets that may leave now, in order (retransmissions first, probes last), each with
        whether it is a probe and the tag it was offered with."""
        self._pay(now)
        for q in self._queues:
            while q and self._room():
                packet, size, tag = q.popleft()
                self.queued_bytes -= size
                self._debt += size
                yield packet, False, tag
        if not self.queued_bytes:
            self._drain_bps = 0.0
            while self._probes and self._room():
                packet, size = self._probes.popleft()
                self.probe_bytes -= size
                self._debt += size
                yield packet, True, None

    def next_due(self, now: float) -> Optional[float]:
        """When the next queued packet may leave (None: nothing queued)."""
        if not self.queued_bytes and not self.probe_bytes:
            return None
        self._pay(now)
        allowance = self._effective_rate() / 8 * BURST_S
        return now + max(0.0, self._debt - allowance) * 8 / self._effective_rate()

    def drop(self, tag: object) -> int:
        """Forget the queued video of `tag` (a layer switched away from: its backlog only delays the new
        layer's keyframe). How many packets were dropped."""
        q = self._queues[VIDEO - RETRANSMISSION]
        kept = deque(e for e in q if e[2] is not tag)
        n = len(q) - len(kept)
        if n:
            self.queued_bytes -= sum(e[1] for e in q if e[2] is tag)
            self._queues = (self._queues[0], kept)
            self.dropped += n
            if not self.queued_bytes:
                self._drain_bps = 0.0
        return n

    def __len__(self) -> int:
        return len(self._queues[0]) + len(self._queues[1]) + len(self._probes)
