"""Ingest loss detection: which sequence numbers to NACK to the publisher, and when to ask again.

Pure logic: every call takes `now` (seconds) so it is tested by feeding sequences, not by sleeping.
"""
from __future__ import annotations

from sfu.rtp.rtp_header import seq_diff

MAX_MISSING = 512       # a gap wider than this is a stream restart, not loss
MAX_AGE = 1.0           # after this a packet is useless to a live viewer
MAX_RETRIES = 4


class NackGenerator:
    def __init__(self, retry_interval: float = 0.06) -> None:
        self.retry_interval = retry_interval
        self.highest: int | None = None
        # seq -> [first_missing_time, last_nack_time, nacks_sent]
        self.missing: dict[int, list] = {}
        self.recovered = 0
        self.lost_for_good = 0

    def on_packet(self, seq: int, now: float) -> list[int]:
        """Record an arriving packet; return the sequence numbers to NACK right away (new gaps)."""
        if self.highest is None:
            self.highest = seq
            return []
        d = seq_diff(seq, self.highest)
        if d <= 0:
            if self.missing.pop(seq, None) is not None:
                self.recovered += 1
            return []
        if d > MAX_MISSING:
            self.missing.clear()
            self.highest = seq
            return []
        new = [(self.highest + i) & 0xFFFF for i in range(1, d)]
        self.highest = seq
        for s in new:
            self.missing[s] = [now, now, 1]
        return new

    def poll(self, now: float) -> list[int]:
        """Sequence numbers whose NACK should be repeated now; drops the ones that are too old."""
        out = []
        for s, entry in list(self.missing.items()):
            first, last, sent = entry
            if now - first > MAX_AGE or sent >= MAX_RETRIES:
                del self.missing[s]
                self.lost_for_good += 1
            elif now - last >= self.retry_interval:
                entry[1] = now
                entry[2] = sent + 1
                out.append(s)
        return out

    def was_requested(self, seq: int) -> bool:
        """Whether a retransmission of seq answers one of our NACKs (others are probes: not forwarded)."""
        return seq in self.missing
