"""RTP timestamps -> the recording's timeline (local monotonic seconds). Pure: time is always an argument.

Lip sync comes from the publisher's RTCP sender reports: each SR ties a stream's RTP clock to the publisher's
NTP wall clock, which audio and video share. A frame's capture time on that clock is
`ntp(SR) + (ts - rtp(SR)) / rate`; one offset (publisher clock -> our monotonic clock) for the whole recording
turns it into local time, so audio and video stay aligned however their RTP clocks drift, and real time between
frames (a publisher gone for a while) stays real time in the file.

A stream whose first SR has not arrived is held (`sr_wait` seconds at most); one that never sends SRs falls back
to "arrival of its first packet + RTP time since", which is exact for spacing but carries that packet's delay.
"""
from __future__ import annotations

from typing import Optional

NTP_FRACTION = float(1 << 32)
RESYNC = 2.0       # a new stream whose clock disagrees by more than this comes from another machine


def signed32(d: int) -> int:
    d &= 0xFFFFFFFF
    return d - (1 << 32) if d >= (1 << 31) else d


class SenderClock:
    """The offset between the publisher's NTP clock and the local clock, for the whole recording."""

    def __init__(self, resync: float = RESYNC) -> None:
        self.resync = resync
        self.offset: Optional[float] = None
        self.resyncs = 0

    def check(self, sender_t: float, arrival: float) -> None:
        """A new stream's first mapped packet: adopt its offset if none yet or if its clock is another's."""
        estimate = arrival - sender_t
        if self.offset is None:
            self.offset = estimate
        elif abs(estimate - self.offset) > self.resync:
            self.offset = estimate
            self.resyncs += 1

    def local(self, sender_t: float) -> float:
        assert self.offset is not None
        return sender_t + self.offset


class StreamTimeline:
    """One RTP stream (one publisher connection's audio or video) mapped to local time."""

    def __init__(self, clock_rate: int, sender: SenderClock, sr_wait: float = 2.5) -> None:
        self.clock_rate = clock_rate
        self.sender = sender
        self.sr_wait = sr_wait
        self.first_arrival: Optional[float] = None
        self.first_ts: Optional[int] = None
        self.sr: Optional[tuple[int, int, float]] = None
        self._checked = False
        self.fallback = False

    def on_packet(self, ts: int, arrival: float, sr: Optional[tuple[int, int, float]]) -> None:
        if self.first_arrival is None:
            self.first_arrival, self.first_ts = arrival, ts
        if sr is not None:
            self.sr = sr

    def ready(self, now: float) -> bool:
        """Whether frames can be placed now: an SR is known, or waiting for one took too long."""
        if self.sr is not None:
            return True
        return self.first_arrival is not None and now - self.first_arrival >= self.sr_wait

    def to_local(self, ts: int, arrival: float) -> float:
        """Local time of RTP timestamp `ts` (call once `ready`)."""
        if self.sr is not None:
            ntp, sr_ts, _ = self.sr
            sender_t = ntp / NTP_FRACTION + signed32(ts - sr_ts) / self.clock_rate
            if not self._checked:
                self._checked = True
                self.sender.check(sender_t, arrival)
            return self.sender.local(sender_t)
        self.fallback = True
        assert self.first_arrival is not None and self.first_ts is not None
        return self.first_arrival + signed32(ts - self.first_ts) / self.clock_rate
