"""Per-connection rate limits with injected time: a token bucket, and a guard that turns a flood into a verdict."""
from __future__ import annotations

import enum
from typing import Optional


class TokenBucket:
    """`rate` tokens a second, at most `burst` saved up; each message takes one."""

    def __init__(self, rate: float, burst: float, now: float) -> None:
        self.rate = rate
        self.burst = burst
        self.tokens = burst
        self.stamp = now

    def take(self, now: float, n: float = 1.0) -> bool:
        # a clock that steps back must not mint tokens nor take them away
        self.tokens = min(self.burst, self.tokens + max(0.0, now - self.stamp) * self.rate)
        self.stamp = max(self.stamp, now)
        if self.tokens >= n:
            self.tokens -= n
            return True
        return False


class Verdict(enum.Enum):
    OK = "ok"
    DROP = "drop"              # over the limit: drop silently (already told recently)
    DROP_AND_WARN = "warn"     # over the limit: drop and send one `rate_limited` error
    CLOSE = "close"            # kept flooding: close the connection


class FloodGuard:
    """A bucket plus the policy around it: warn at most once per `warn_every` s, close after `close_after`
    dropped messages within `window` s (None: never close). Warnings are throttled so that a flood is not
    answered by a flood."""

    def __init__(self, rate: float, burst: float, now: float, warn_every: float = 1.0,
                 close_after: Optional[int] = 100, window: float = 10.0) -> None:
        self.bucket = TokenBucket(rate, burst, now)
        self.warn_every = warn_every
        self.close_after = close_after
        self.window = window
        self.last_warn = -float("inf")
        self.window_start = now
        self.dropped_in_window = 0
        self.dropped_total = 0

    def check(self, now: float) -> Verdict:
        if self.bucket.take(now):
            return Verdict.OK
        if now - self.window_start >= self.window:
            self.window_start, self.dropped_in_window = now, 0
        self.dropped_in_window += 1
        self.dropped_total += 1
        if self.close_after is not None and self.dropped_in_window > self.close_after:
            return Verdict.CLOSE
        if now - self.last_warn >= self.warn_every:
            self.last_warn = now
            return Verdict.DROP_AND_WARN
        return Verdict.DROP
