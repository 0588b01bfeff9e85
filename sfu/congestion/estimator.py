"""One viewer's send-side bandwidth estimate: the send history, the delay-based detector and rate, and the
loss-based bound, fed what was sent and the viewer's transport-wide feedback.

The estimate is the lower of the delay-based rate and the loss-based bound. What the allocator reads besides it:
the delay state (is a queue building), the link's own steady loss level, the latest interval's loss, the RTT, the
acknowledged rate, and a probe's verdict: a probe succeeds when no queue built while it ran (no overuse, little
delay growth), its loss was not above the link's own level by more than sampling noise and a margin, and the rate
that arrived reached the rate aimed at. So a probe on a lossy link without a queue succeeds, and one that filled a
queue fails.
"""
from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from enum import Enum
from operator import attrgetter
from typing import Optional

from .delay_based import BandwidthUsage, DelayBasedDetector
from .loss_based import LossBasedControl
from .rate_control import AimdRateControl
from .send_history import SendHistory
from sfu.rtp.transport_feedback import TransportFeedback

START_BPS = 1_000_000
MIN_BPS = 50_000
MAX_BPS = 20_000_000
FEEDBACK_TIMEOUT_S = 1.0      # sending, and no feedback for this long: the path may be gone; report half
PROBE_LOSS_MARGIN = 0.02
PROBE_LOSS_SIGMAS = 2.0       # the window's sampling noise around the link's level, on top of the margin
PROBE_MAX_DELAY_GROWTH_S = 0.03
PROBE_ABORT_GROWTH_S = 0.025  # a probe under way whose packets wait this much longer than before it: stop it
PROBE_ACKED_SHARE = 0.85      # what arrived must reach this share of the aim (after the link's own loss)
PROBE_OVERUSE_LAG_S = 0.2     # the detector sees a queue a few groups after it starts to build
PROBE_FEEDBACK_WAIT_S = 1.0   # how long a verdict waits for the window's feedback before judging what it has
PROBE_MAX_UNREPORTED = 0.1

_by_arrival = attrgetter("arrival")


class ProbeOutcome(Enum):
    PENDING = "pending"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class ProbeVerdict:
    outcome: ProbeOutcome
    reason: str                      # why it failed or is pending; "" when it succeeded
    acked_bps: Optional[float]       # what arrived per second of the packets sent in the window
    sent_bps: Optional[float]
    loss: float
    loss_level: float
    delay_growth: Optional[float]

    @property
    def succeeded(self) -> bool:
        return self.outcome is ProbeOutcome.SUCCEEDED


class SendSideEstimator:
    def __init__(self, start_bps: float = START_BPS, min_bps: float = MIN_BPS, max_bps: float = MAX_BPS) -> None:
        self.min_bps = min_bps
        self.history = SendHistory()
        self.delay = DelayBasedDetector()
        self.rate = AimdRateControl(start_bps, min_bps, max_bps)
        self.loss = LossBasedControl(start_bps, min_bps, max_bps)
        self.rtt: Optional[float] = None
        self.overuse_events = 0
        self._overuse_send_times: deque[float] = deque(maxlen=256)  # send times of the packets overuse was seen on
        self._last_feedback: Optional[float] = None
        self._last_sent: Optional[float] = None
        self._reported_until = float("-inf")  # the latest send time a feedback has reported on

    # --- inputs ---

    def on_packet_sent(self, now: float, transport_seq: int, size: int, is_probe: bool = False) -> None:
        self.history.on_packet_sent(now, transport_seq, size, is_probe)
        self._last_sent = now

    def on_feedback(self, now: float, feedback: TransportFeedback) -> None:
        result = self.history.on_feedback(feedback)
        if not result.reported and not result.received:
            return
        self._last_feedback = now
        self._reported_until = max(self._reported_until, result.last_send_time)
        received = result.received
        received.sort(key=_by_arrival)  # already in order unless the path reordered
        was_overusing = self.delay.state is BandwidthUsage.OVERUSING
        for packet in received:
            self.delay.on_packet(packet.send_time, packet.arrival)
        state = self.delay.state
        if state is BandwidthUsage.OVERUSING:
            self.overuse_events += not was_overusing
            if received:
                self._overuse_send_times.append(received[-1].send_time)
        delay_based = self.rate.update(now, state, self.history.acked_bps())
        self.loss.on_feedback(now, result.lost, result.reported, state is BandwidthUsage.OVERUSING, delay_based,
                              self.rate.rtt, self.history.acked_bps())

    def on_rtt(self, now: float, rtt: float) -> None:
        self.rtt = rtt
        self.rate.set_rtt(rtt)

    # --- what the allocator reads ---

    def estimate(self, now: float) -> int:
        bps = min(self.rate.bitrate, self.loss.bound_bps)
        if (self._last_feedback is not None and self._last_sent is not None
                and self._last_sent > self._last_feedback and now - self._last_feedback > FEEDBACK_TIMEOUT_S):
            bps = max(self.min_bps, bps / 2)
        return int(bps)

    @property
    def delay_state(self) -> BandwidthUsage:
        return self.delay.state

    @property
    def loss_level(self) -> float:
        """The link's own steady loss (a slow average, learnt while no queue builds)."""
        return self.loss.level

    @property
    def heard_loss_level(self) -> float:
        """Loss seen lately without a queue, whatever its cause (what audio redundancy answers)."""
        return self.loss.heard_level

    @property
    def interval_loss(self) -> Optional[float]:
        """The loss of the latest complete loss interval (~0.5 s), None before the first."""
        return self.loss.interval_loss

    def capacity_bps(self) -> Optional[float]:
        """The link's capacity: what it carried when a queue built there (averaged); None while no queue was seen,
        or since more than its band arrived (the link grew)."""
        kbps = self.rate.link_capacity.estimate_kbps
        return None if kbps is None else kbps * 1000

    @property
    def delay_based_bps(self) -> float:
        return self.rate.bitrate

    @property
    def loss_based_bps(self) -> float:
        return self.loss.bound_bps

    def acked_bps(self) -> Optional[float]:
        return self.history.acked_bps()

    def dump(self, now: float) -> dict:
        acked = self.acked_bps()
        return {"estimate_bps": self.estimate(now), "delay_based_bps": int(self.rate.bitrate),
                "loss_based_bps": int(self.loss.bound_bps), "acked_bps": None if acked is None else int(acked),
                "delay_state": self.delay.state.value, "loss_level": round(self.loss.level, 4),
                "heard_loss_level": round(self.loss.heard_level, 4),
                "capacity_bps": None if (capacity := self.capacity_bps()) is None else int(capacity),
                "interval_loss": None if self.loss.interval_loss is None else round(self.loss.interval_loss, 4),
                "overuse_events": self.overuse_events, "loss_cuts": self.loss.cuts,
                "rtt_ms": None if self.rtt is None else round(self.rtt * 1000, 1)}

    # --- probes ---

    def probe_verdict(self, now: float, start: float, end: float, target_bps: Optional[float] = None,
                      queue_from: Optional[float] = None) -> ProbeVerdict:
        """Judge the packets sent within [start, end]. `target_bps`: the rate the probe aimed at (by default what
        was sent in the window); `queue_from`: an earlier start from which a queue building fails it too (a
        ramp's packets, not judged for their rate). Pending while much of the window's feedback is still due."""
        stats = self.history.window_stats(start, end)
        level = self.loss.level

        def verdict(outcome: ProbeOutcome, reason: str = "") -> ProbeVerdict:
            return ProbeVerdict(outcome, reason, stats.acked_bps, stats.sent_bps, stats.loss, level,
                                stats.delay_growth)

        if stats.sent == 0:
            return verdict(ProbeOutcome.FAILED, "nothing was sent in the window")
        # a queue seen on part of the feedback fails the probe at once; a success needs the whole window's
        queue = self._queue_seen(start, end, stats.delay_growth)
        if not queue and queue_from is not None and self.probe_queueing(queue_from, end):
            queue = "a queue built during the ramp"
        if queue:
            return verdict(ProbeOutcome.FAILED, queue)
        if now < end + PROBE_FEEDBACK_WAIT_S:
            # the queue a probe built shows on the packets sent just after it too: wait for their feedback
            due_until = min(end + PROBE_OVERUSE_LAG_S, self._last_sent or end)
            if stats.unreported > PROBE_MAX_UNREPORTED * stats.sent or self._reported_until < due_until:
                return verdict(ProbeOutcome.PENDING, "feedback still due")
        known = stats.lost + stats.received
        noise = math.sqrt(level * (1 - level) / max(known, 1))
        if stats.loss - level > PROBE_LOSS_MARGIN + PROBE_LOSS_SIGMAS * noise:
            return verdict(ProbeOutcome.FAILED, "loss above the link's own level")
        aim = target_bps if target_bps is not None else stats.sent_bps
        if stats.acked_bps is None or aim is None:
            return verdict(ProbeOutcome.FAILED, "too few packets arrived to measure a rate")
        if stats.acked_bps < PROBE_ACKED_SHARE * aim * (1 - level):
            return verdict(ProbeOutcome.FAILED, "the rate that arrived fell short")
        return verdict(ProbeOutcome.SUCCEEDED)

    def probe_queueing(self, start: float, now: float) -> bool:
        """Whether the packets sent since `start` already show a queue building (overuse, or their delay grew):
        a probe under way should stop at once."""
        if any(start <= t for t in self._overuse_send_times):
            return True
        growth = self.history.queue_growth(start, now)
        return growth is not None and growth > PROBE_ABORT_GROWTH_S

    def _queue_seen(self, start: float, end: float, delay_growth: Optional[float]) -> str:
        if any(start <= t <= end + PROBE_OVERUSE_LAG_S for t in self._overuse_send_times):
            return "overuse"
        if delay_growth is not None and delay_growth > PROBE_MAX_DELAY_GROWTH_S:
            return "delay grew"
        return ""

    def accept_probe(self, now: float, verdict: ProbeVerdict) -> None:
        """Raise the estimate to a succeeded probe's acknowledged rate (a failed or pending one changes nothing)."""
        if verdict.succeeded and verdict.acked_bps is not None:
            self.rate.on_probe(now, verdict.acked_bps)
            self.loss.raise_to(verdict.acked_bps)
