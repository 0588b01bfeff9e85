"""Answering a viewer's NACKs without letting retransmissions become a storm.

Each sequence number is resent at most `max_per_seq` times, and not again within the link's round-trip time (a
NACK that comes sooner was sent before our last resend could arrive: resending again only doubles the cost, as
libwebrtc's packet history also refuses). All retransmissions to one viewer share a token bucket sized to the
loss the link shows: a share of the media rate it receives that grows with the link's steady random loss (a lossy
rural link needs each lost packet resent, sometimes twice), with a floor for streams too thin to fill one.
A clean link's budget stays small, so retransmissions do not feed a queue that is overflowing.
A packet NACKed again after its last allowed resend is `exhausted`: only a keyframe can repair the viewer now.
A keyframe's packets are `urgent`: they may overdraw the bucket by one burst, as the picture waits for them.
"""
from __future__ import annotations

from typing import Optional

RESEND_GAP_MIN_S = 0.01      # the round trip's bounds as a resend gap: a LAN's RTT is no reason to resend at once ...
RESEND_GAP_MAX_S = 0.5       # ... and an RTT inflated by a queue no reason to leave a loss for seconds
LOSS_HEADROOM = 3.0          # budget per unit of loss: each loss resent once, some twice, a keyframe's burst
MAX_RATIO = 0.5


class RtxLimiter:
    def __init__(self, min_interval: float = 0.05, max_per_seq: int = 3,
                 budget_ratio: float = 0.25, min_budget_bps: float = 200_000, burst_s: float = 0.25) -> None:
        self.min_interval = min_interval      # the resend gap until the link's RTT is known
        self.max_per_seq = max_per_seq
        self.budget_ratio = budget_ratio      # the share of the media rate on a clean link
        self.min_budget_bps = min_budget_bps
        self.burst_s = burst_s
        self.rtt: Optional[float] = None
        self.loss = 0.0
        self.sent: dict[int, tuple[float, int]] = {}
        self.tokens = min_budget_bps / 8 * burst_s
        self.last_refill: float | None = None
        self.suppressed = 0
        self.over_budget = 0
        self.allowed = 0
        self.exhausted = False  # the last refusal was a sequence resent max_per_seq times already

    def observe(self, rtt: Optional[float], loss: float) -> None:
        """The link as last measured: its round-trip time (s) and its steady random loss (0..1)."""
        self.rtt = rtt
        self.loss = min(max(loss, 0.0), 0.5)

    def resend_gap(self) -> float:
        if self.rtt is None:
            return self.min_interval
        return min(max(self.rtt, RESEND_GAP_MIN_S), RESEND_GAP_MAX_S)

    def ratio(self) -> float:
        return min(MAX_RATIO, self.budget_ratio + LOSS_HEADROOM * self.loss / (1 - self.loss))

    def budget_bps(self, media_bps: float) -> float:
        return max(self.min_budget_bps, media_bps * self.ratio())

    def allow(self, seq: int, size: int, now: float, media_bps: float, urgent: bool = False) -> bool:
        """`urgent` (a keyframe's packet: the viewer's picture waits for it) may overdraw the bucket by one
        burst; the per-sequence limits still hold."""
        rate = self.budget_bps(media_bps) / 8  # bytes per second
        if self.last_refill is not None:
            self.tokens = min(rate * self.burst_s, self.tokens + (now - self.last_refill) * rate)
        self.last_refill = now
        prev = self.sent.get(seq)
        self.exhausted = prev is not None and prev[1] >= self.max_per_seq
        if prev is not None and (now - prev[0] < self.resend_gap() or self.exhausted):
            self.suppressed += 1
            return False
        if self.tokens < size and not (urgent and self.tokens > -rate * self.burst_s):
            self.over_budget += 1
            return False
        self.tokens -= size
        self.sent[seq] = (now, 1 if prev is None else prev[1] + 1)
        if len(self.sent) > 2048:
            for old in list(self.sent)[:1024]:
                del self.sent[old]
        self.allowed += 1
        return True
