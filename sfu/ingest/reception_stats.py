"""Receiver-side statistics for one incoming RTP stream (RFC 3550 appendix A.3 and A.8)."""
from __future__ import annotations


class ReceptionStats:
    def __init__(self, clock_rate: int) -> None:
        self.clock_rate = clock_rate
        self.base_seq: int | None = None
        self.max_seq = 0
        self.cycles = 0
        self.received = 0
        self.bytes = 0
        self.expected_prior = 0
        self.received_prior = 0
        self.jitter = 0.0
        self.last_transit: float | None = None

    def on_packet(self, seq: int, timestamp: int, arrival: float, size: int) -> None:
        self.received += 1
        self.bytes += size
        if self.base_seq is None:
            self.base_seq = self.max_seq = seq
        else:
            delta = (seq - self.max_seq) & 0xFFFF
            if 0 < delta < 0x8000:
                if seq < self.max_seq:
                    self.cycles += 1 << 16
                self.max_seq = seq
        transit = arrival * self.clock_rate - timestamp
        if self.last_transit is not None:
            d = abs(transit - self.last_transit)
            if d < self.clock_rate * 10:  # ignore timestamp jumps (source restarts)
                self.jitter += (d - self.jitter) / 16
        self.last_transit = transit

    @property
    def extended_max(self) -> int:
        return self.cycles + self.max_seq

    @property
    def expected(self) -> int:
        return 0 if self.base_seq is None else self.extended_max - self.base_seq + 1

    @property
    def lost(self) -> int:
        return max(0, self.expected - self.received)

    def interval_fraction_lost(self) -> float:
        """Fraction lost since the previous call (0..1), as carried by a receiver report."""
        expected = self.expected - self.expected_prior
        received = self.received - self.received_prior
        self.expected_prior = self.expected
        self.received_prior = self.received
        if expected <= 0 or received >= expected:
            return 0.0
        return (expected - received) / expected
