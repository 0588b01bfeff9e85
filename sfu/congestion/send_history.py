"""What was sent to one viewer, matched with what its feedback says arrived.

Each packet stamped with a transport-wide sequence number is recorded (send time, size, probe or not) under its
sequence number unwrapped to an unbounded integer; entries older than `max_age` or beyond `max_packets` are
dropped. A feedback report yields the packets it newly acknowledges (with their arrival on the receiver's clock),
how many it newly reports and how many of those were lost; the acknowledged ("acked") bitrate is what arrived per
second over a short window of arrival time. `window_stats` sums up the packets sent within a time window: what a
probe's verdict is made of.
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Optional

from sfu.rtp.transport_feedback import REFERENCE_TICK_S, REFERENCE_WRAP, TransportFeedback

SEQ_MODULUS = 1 << 16
ACKED_WINDOW_S = 0.5
ACKED_MIN_SPAN_S = 0.1      # fewer arrivals than this apart say little about a rate
DELAY_GROWTH_SHARE = 0.2    # a window's delay growth compares its last fifth with its first fifth
QUEUE_BASELINE_S = 0.5      # a rise's queue growth compares its latest arrivals with this long before it ...
QUEUE_LATEST_PACKETS = 3    # ... taking the quickest of this many latest ones


def unwrap_closest(value: int, reference: int, modulus: int) -> int:
    """The integer congruent to `value` (mod `modulus`) that is closest to `reference`."""
    half = modulus >> 1
    return reference + ((value - reference + half) % modulus) - half


@dataclass(slots=True)
class SentPacket:
    seq: int
    send_time: float
    size: int
    is_probe: bool
    arrival: Optional[float] = None  # receiver's clock, once a feedback reports it received
    reported: bool = False           # a feedback has named it (received or lost)


@dataclass(slots=True)
class FeedbackResult:
    received: list[SentPacket]  # newly acknowledged, in sequence order, with `arrival` set
    lost: int                   # newly reported as not received
    reported: int               # newly reported either way (sequence numbers we know of)
    last_send_time: float       # the latest send time among the packets it reported (-inf when none)

    @property
    def loss(self) -> float:
        return self.lost / self.reported if self.reported else 0.0


@dataclass(slots=True)
class WindowStats:
    """The packets sent within [start, end]: counts, rates and the growth of their one-way delay."""
    sent: int = 0
    probes: int = 0
    lost: int = 0
    received: int = 0
    unreported: int = 0
    sent_bps: Optional[float] = None
    acked_bps: Optional[float] = None     # what arrived per second, over the span the arrivals took
    delay_growth: Optional[float] = None  # seconds: min one-way delay of the last fifth minus the first fifth

    @property
    def loss(self) -> float:
        known = self.lost + self.received
        return self.lost / known if known else 0.0


class AckedBitrate:
    """Bytes acknowledged per second over the last `window` seconds of arrival time."""

    def __init__(self, window: float = ACKED_WINDOW_S, max_packets: int = 8192) -> None:
        self.window = window
        self._arrivals: deque[tuple[float, int]] = deque(maxlen=max_packets)
        self._bytes = 0
        self._newest = float("-inf")

    def add(self, arrival: float, size: int) -> None:
        arrivals = self._arrivals
        if len(arrivals) == arrivals.maxlen:
            self._bytes -= arrivals[0][1]
        arrivals.append((arrival, size))
        self._bytes += size
        if arrival > self._newest:
            self._newest = arrival
        horizon = self._newest - self.window
        while arrivals[0][0] < horizon:
            self._bytes -= arrivals.popleft()[1]

    def bps(self) -> Optional[float]:
        if len(self._arrivals) < 2:
            return None
        first_arrival, first_size = self._arrivals[0]
        span = self._newest - first_arrival
        if span < ACKED_MIN_SPAN_S:
            return None
        return (self._bytes - first_size) * 8 / span  # the first packet's bytes arrived before the span began


class ReferenceClock:
    """Unwraps the feedback's 24-bit reference time (64 ms units) into seconds on the receiver's clock."""

    def __init__(self) -> None:
        self._last: Optional[int] = None

    def seconds(self, ticks: int) -> float:
        self._last = ticks if self._last is None else unwrap_closest(ticks, self._last, REFERENCE_WRAP)
        return self._last * REFERENCE_TICK_S


class SendHistory:
    def __init__(self, max_age: float = 5.0, max_packets: int = 10_000) -> None:
        self.max_age = max_age
        self.max_packets = max_packets
        self._packets: dict[int, SentPacket] = {}
        self._oldest = 0
        self._last: Optional[int] = None
        self._reference = ReferenceClock()
        self.acked = AckedBitrate()

    def __len__(self) -> int:
        return len(self._packets)

    def on_packet_sent(self, now: float, transport_seq: int, size: int, is_probe: bool = False) -> None:
        """Record a packet; `transport_seq` is the 16-bit number on the wire (a wider counter works too)."""
        if self._last is None:
            self._oldest = self._last = transport_seq
        seq = unwrap_closest(transport_seq, self._last, SEQ_MODULUS)
        if seq < self._oldest:
            return  # older than anything kept: it could never be forgotten
        self._last = max(self._last, seq)
        self._packets[seq] = SentPacket(seq, now, size, is_probe)
        self._forget_old(now)

    def _forget_old(self, now: float) -> None:
        packets, last = self._packets, self._last
        horizon = now - self.max_age
        while self._oldest < last:
            oldest = packets.get(self._oldest)
            if oldest is not None and oldest.send_time >= horizon and last - self._oldest < self.max_packets:
                break
            if oldest is not None:
                del packets[self._oldest]
            self._oldest += 1

    def on_feedback(self, feedback: TransportFeedback) -> FeedbackResult:
        """Match a feedback report with what was sent. A packet reported twice counts once; one reported lost
        and later received is acknowledged then, without counting it again."""
        reference = self._reference.seconds(feedback.reference_ticks)
        received: list[SentPacket] = []
        lost = reported = 0
        last_send_time = float("-inf")
        if self._last is None:
            return FeedbackResult(received, lost, reported, last_send_time)
        base = unwrap_closest(feedback.base_seq, self._last, SEQ_MODULUS)
        get = self._packets.get
        add_acked = self.acked.add
        for offset, arrival in enumerate(feedback.arrivals):
            packet = get(base + offset)
            if packet is None or packet.arrival is not None:
                continue
            if not packet.reported:
                packet.reported = True
                reported += 1
                if arrival is None:
                    lost += 1
                if packet.send_time > last_send_time:
                    last_send_time = packet.send_time
            if arrival is not None:
                packet.arrival = reference + arrival
                received.append(packet)
                add_acked(packet.arrival, packet.size)
        return FeedbackResult(received, lost, reported, last_send_time)

    def acked_bps(self) -> Optional[float]:
        return self.acked.bps()

    def window_stats(self, start: float, end: float) -> WindowStats:
        """Sum up the packets sent within [start, end] that the history still holds."""
        stats = WindowStats()
        if self._last is None:
            return stats
        window: list[SentPacket] = []
        get = self._packets.get
        for seq in range(self._last, self._oldest - 1, -1):
            packet = get(seq)
            if packet is None or packet.send_time > end:
                continue
            if packet.send_time < start:
                break
            window.append(packet)
        window.reverse()
        delays: list[float] = []
        for packet in window:
            stats.sent += 1
            stats.probes += packet.is_probe
            if packet.arrival is not None:
                stats.received += 1
                delays.append(packet.arrival - packet.send_time)
            elif packet.reported:
                stats.lost += 1
            else:
                stats.unreported += 1
        stats.sent_bps = _rate([(p.send_time, p.size) for p in window])
        stats.acked_bps = _rate(sorted((p.arrival, p.size) for p in window if p.arrival is not None))
        stats.delay_growth = _delay_growth(delays)
        return stats


    def queue_growth(self, start: float, now: float, baseline_s: float = QUEUE_BASELINE_S,
                     latest: int = QUEUE_LATEST_PACKETS) -> Optional[float]:
        """How much longer the latest packets sent since `start` took to arrive than the quickest of those sent in
        the `baseline_s` before it: a queue that a rise in rate at `start` is building, seen from the first
        feedback on it (min-filtered on both sides, so jitter and a lone late packet do not count). None until
        both sides have arrivals."""
        if self._last is None:
            return None
        get = self._packets.get
        recent: list[float] = []
        before: Optional[float] = None
        for seq in range(self._last, self._oldest - 1, -1):
            packet = get(seq)
            if packet is None or packet.send_time > now:
                continue
            if packet.send_time < start - baseline_s:
                break
            if packet.arrival is None:
                continue
            delay = packet.arrival - packet.send_time
            if packet.send_time >= start:
                if len(recent) < latest:
                    recent.append(delay)
            elif before is None or delay < before:
                before = delay
        if before is None or len(recent) < latest:
            return None
        return min(recent) - before


def _rate(timed_sizes: list[tuple[float, int]]) -> Optional[float]:
    """Bits per second of (time, size) pairs sorted by time; the first packet's bytes precede the span."""
    if len(timed_sizes) < 2:
        return None
    span = timed_sizes[-1][0] - timed_sizes[0][0]
    if span <= 0:
        return None
    return sum(size for _, size in timed_sizes[1:]) * 8 / span


def _delay_growth(delays: list[float]) -> Optional[float]:
    """How much the queue grew across the window: min-filtered, so jitter and a lone late packet do not count."""
    part = int(len(delays) * DELAY_GROWTH_SHARE)
    if part < 2:
        return None
    return min(delays[-part:]) - min(delays[:part])
