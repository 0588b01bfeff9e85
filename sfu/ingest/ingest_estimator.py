"""The bitrate the SFU invites a publisher to send (REMB), from the rate and loss it actually receives.

Padding and probe packets count toward the received rate: Chromium probes with them before ramping up,
and an estimator that ignores them keeps the publisher at its start rate.
"""
from __future__ import annotations


class IngestEstimator:
    def __init__(self, max_bps: int = 4_000_000, min_bps: int = 150_000, start_bps: int = 4_000_000) -> None:
        self.max_bps = max_bps
        self.min_bps = min_bps
        self.estimate = float(start_bps)
        self.window_bytes = 0
        self.window_start: float | None = None
        self.received_bps = 0.0

    def on_bytes(self, size: int, now: float) -> None:
        if self.window_start is None:
            self.window_start = now
        self.window_bytes += size

    def update(self, now: float, fraction_lost: float) -> int:
        """Once per report interval: the bitrate to announce in REMB."""
        if self.window_start is not None and now > self.window_start:
            self.received_bps = self.window_bytes * 8 / (now - self.window_start)
        self.window_bytes = 0
        self.window_start = now
        if fraction_lost > 0.10 and self.received_bps > 0:
            self.estimate = max(self.min_bps, min(self.estimate, self.received_bps * (1 - 0.5 * fraction_lost)))
        elif fraction_lost < 0.02:
            self.estimate = min(self.max_bps, max(self.estimate * 1.08, self.received_bps * 1.5))
        return int(self.estimate)
