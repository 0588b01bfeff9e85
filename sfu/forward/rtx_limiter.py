"""Answering a viewer's NACKs without letting retransmissions become a storm.

Each sequence number is resent at most once per `min_interval` and at most `max_per_seq` times, and all
retransmissions to one viewer share a token bucket sized as a fraction of the media rate it receives.
A packet NACKed again after its last allowed resend is `exhausted`: only a keyframe can repair the viewer now.
A keyframe's packets are `urgent`: they may overdraw the bucket by one burst, as the picture waits for them.
"""
from __future__ import annotations


class RtxLimiter:
    def __init__(self, min_interval: float = 0.05, max_per_seq: int = 3,
                 budget_ratio: float = 0.25, min_budget_bps: float = 200_000, burst_s: float = 0.25) -> None:
        self.min_interval = min_interval
        self.max_per_seq = max_per_seq
        self.budget_ratio = budget_ratio
        self.min_budget_bps = min_budget_bps
        self.burst_s = burst_s
        self.sent: dict[int, tuple[float, int]] = {}
        self.tokens = min_budget_bps / 8 * burst_s
        self.last_refill: float | None = None
        self.suppressed = 0
        self.over_budget = 0
        self.allowed = 0
        self.exhausted = False  # the last refusal was a sequence resent max_per_seq times already

    def allow(self, seq: int, size: int, now: float, media_bps: float, urgent: bool = False) -> bool:
        """`urgent` (a keyframe's packet: the viewer's picture waits for it) may overdraw the bucket by one
        burst; the per-sequence limits still hold."""
        rate = max(self.min_budget_bps, media_bps * self.budget_ratio) / 8  # bytes per second
        if self.last_refill is not None:
            self.tokens = min(rate * self.burst_s, self.tokens + (now - self.last_refill) * rate)
        self.last_refill = now
        prev = self.sent.get(seq)
        self.exhausted = prev is not None and prev[1] >= self.max_per_seq
        if prev is not None and (now - prev[0] < self.min_interval or self.exhausted):
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
