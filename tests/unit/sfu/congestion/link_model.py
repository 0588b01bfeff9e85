"""A simulated path from the SFU to one viewer, and a sender driving a SendSideEstimator over it (time injected).

The link: a bottleneck serving a FIFO queue at `rate_bps` (tail drop once the queue holds `queue_limit` seconds
of data, when set), random loss after the queue with a seeded random.Random (the packet used the link, then was
lost: what a lossy radio or an nftables drop rule does), and a propagation delay. The receiver sends
transport-wide feedback every `feedback_interval` about everything new that has arrived, on its own clock (offset
from the sender's), built as bytes and parsed back, so the codec is on the path too; it reaches the sender after
`return_delay`.
"""
from __future__ import annotations

import math
import random
from collections import deque
from dataclasses import dataclass
from typing import Callable, Optional

from sfu.congestion.delay_based import BandwidthUsage
from sfu.congestion.estimator import SendSideEstimator
from sfu.rtp.transport_feedback import REFERENCE_TICK_S, build_feedback, parse_feedback

PACKET_BYTES = 1200
RECEIVER_CLOCK_OFFSET = 5_000.123  # the receiver's clock has its own origin: only differences may matter


class LinkModel:
    def __init__(self, rate_bps: float, delay: float = 0.02, loss: float = 0.0, seed: int = 1,
                 queue_limit: Optional[float] = None, feedback_interval: float = 0.05,
                 return_delay: Optional[float] = None) -> None:
        self.rate_bps = rate_bps
        self.delay = delay
        self.loss = loss
        self.queue_limit = queue_limit
        self.feedback_interval = feedback_interval
        self.return_delay = delay if return_delay is None else return_delay
        self.random = random.Random(seed)
        self.sent = 0
        self.dropped = 0        # tail drops (a full queue)
        self.lost = 0           # random losses
        self._busy_until = 0.0
        self._arrivals: deque[tuple[int, Optional[float]]] = deque()  # (seq, arrival or None), send order
        self._next_feedback = feedback_interval
        self._feedback_count = 0
        self._in_flight: deque[tuple[float, bytes]] = deque()  # (delivery time, feedback bytes)

    def queue_delay(self, now: float) -> float:
        return max(0.0, self._busy_until - now)

    def send(self, now: float, seq: int, size: int) -> None:
        self.sent += 1
        if self.queue_limit is not None and self.queue_delay(now) > self.queue_limit:
            self.dropped += 1
            self._arrivals.append((seq, None))
            return
        self._busy_until = max(now, self._busy_until) + size * 8 / self.rate_bps
        arrival: Optional[float] = self._busy_until + self.delay
        if self.random.random() < self.loss:
            self.lost += 1
            arrival = None
        self._arrivals.append((seq, arrival))

    def feedback_until(self, now: float) -> list[tuple[float, bytes]]:
        """Feedback packets that reach the sender by `now`, with their delivery times."""
        while self._next_feedback + self.return_delay <= now:
            packet = self._build_feedback(self._next_feedback)
            if packet is not None:
                self._in_flight.append((self._next_feedback + self.return_delay, packet))
            self._next_feedback += self.feedback_interval
        delivered = []
        while self._in_flight and self._in_flight[0][0] <= now:
            delivered.append(self._in_flight.popleft())
        return delivered

    def _build_feedback(self, at: float) -> Optional[bytes]:
        # report every packet up to the last one that has arrived by `at` (FIFO: all before it arrived or are lost)
        last = -1
        for i, (_, arrival) in enumerate(self._arrivals):
            if arrival is not None and arrival <= at:
                last = i
        if last < 0:
            return None
        reported = [self._arrivals.popleft() for _ in range(last + 1)]
        first_arrival = min(a for _, a in reported if a is not None) + RECEIVER_CLOCK_OFFSET
        reference_ticks = math.floor(first_arrival / REFERENCE_TICK_S)
        reference = reference_ticks * REFERENCE_TICK_S
        arrivals = [None if a is None else a + RECEIVER_CLOCK_OFFSET - reference for _, a in reported]
        self._feedback_count += 1
        return build_feedback(1, 2, reported[0][0], reference_ticks, self._feedback_count, arrivals)


@dataclass(slots=True)
class Sample:
    time: float
    estimate: int
    state: BandwidthUsage
    loss_level: float
    queue_delay: float


class Simulation:
    """A sender on the link: packets of PACKET_BYTES paced at `send_bps(t)`, feedback handed to the estimator."""

    def __init__(self, estimator: SendSideEstimator, link: LinkModel, sample_every: float = 0.1) -> None:
        self.estimator = estimator
        self.link = link
        self.sample_every = sample_every
        self.time = 0.0
        self.seq = 0
        self.samples: list[Sample] = []
        self.overuse_times: list[float] = []  # feedback times at which the detector said overusing
        self._next_sample = 0.0

    def run(self, until: float, send_bps: Callable[[float], float], is_probe: bool = False) -> None:
        estimator, link = self.estimator, self.link
        while self.time < until:
            now = self.time
            for delivered, packet in link.feedback_until(now):
                estimator.on_feedback(delivered, parse_feedback(packet))
                if estimator.delay_state is BandwidthUsage.OVERUSING:
                    self.overuse_times.append(delivered)
            while self._next_sample <= now:
                self.samples.append(Sample(self._next_sample, estimator.estimate(now), estimator.delay_state,
                                           estimator.loss_level, link.queue_delay(now)))
                self._next_sample += self.sample_every
            rate = send_bps(now)
            if rate <= 0:
                self.time = now + 0.005
                continue
            estimator.on_packet_sent(now, self.seq & 0xFFFF, PACKET_BYTES, is_probe)
            link.send(now, self.seq & 0xFFFF, PACKET_BYTES)
            self.seq += 1
            self.time = now + PACKET_BYTES * 8 / rate

    def follow_estimate(self, share: float = 1.0) -> Callable[[float], float]:
        """A sender that sends what the estimate allows (times `share`)."""
        return lambda now: share * self.estimator.estimate(now)

    def estimates(self, start: float, end: float) -> list[int]:
        return [s.estimate for s in self.samples if start <= s.time < end]

    def mean_estimate(self, start: float, end: float) -> float:
        values = self.estimates(start, end)
        return sum(values) / len(values)
