"""The delay-based rate: GoogCC's AIMD controller driven by the overuse detector's state.

States: hold, increase, decrease. Normal delay moves hold to increase; overuse decreases at once to β = 0.85 of
the acknowledged rate (something under what the path just carried, so the queue drains) and then holds until the
delay is normal again; underuse (a queue draining) holds. The increase is multiplicative (~8 %/s) while the link's
capacity is unknown or the acknowledged rate has left it behind, and additive near the capacity estimate (about
one packet per response time), so the rate creeps, rather than leaps, into a known limit. An increase never goes
past 1.5 times what is acknowledged (plus 10 kbit/s): the estimate may not run away from what was tried.

The link capacity estimate is a running average of the acknowledged rates at which overuse was seen (and of
probes proven within its band), with its normalized variance: the band of ±3 standard deviations around it is
"near the capacity". A rate acknowledged or proven past its top means the link grew: it is forgotten.
"""
from __future__ import annotations

import math
from enum import Enum
from typing import Optional

from .delay_based import BandwidthUsage

BETA = 0.85
INCREASE_PER_S = 1.08
MIN_MULTIPLICATIVE_STEP_BPS = 1000
MIN_ADDITIVE_BPS_PER_S = 4000
DETECTOR_DELAY_S = 0.1        # the overuse detector's own reaction time, added to the RTT
FRAME_INTERVAL_S = 1 / 30
MTU_PACKET_BYTES = 1200
DEFAULT_RTT_S = 0.2
THROUGHPUT_HEADROOM = 1.5
THROUGHPUT_SLACK_BPS = 10_000
REDUCE_INTERVAL_MIN_S = 0.01
REDUCE_INTERVAL_MAX_S = 0.2
UNMEASURED_HALVING_S = 0.2    # overuse before any rate was acknowledged: halve, at most this often
CAPACITY_ALPHA_OVERUSE = 0.05
CAPACITY_ALPHA_PROBE = 0.5
DEVIATION_MIN = 0.4           # normalized variance (kbit/s): ~14 kbit/s at 500 kbit/s
DEVIATION_MAX = 2.5           # ~35 kbit/s at 500 kbit/s


class RateControlState(Enum):
    HOLD = "hold"
    INCREASE = "increase"
    DECREASE = "decrease"


class LinkCapacity:
    """Running estimate of the link's capacity (kbit/s inside, as GoogCC tunes its variance bounds)."""

    def __init__(self) -> None:
        self.estimate_kbps: Optional[float] = None
        self._deviation = DEVIATION_MIN

    @property
    def known(self) -> bool:
        return self.estimate_kbps is not None

    def _std_kbps(self) -> float:
        return math.sqrt(self._deviation * (self.estimate_kbps or 0.0))

    def upper_bps(self) -> float:
        if self.estimate_kbps is None:
            return math.inf
        return (self.estimate_kbps + 3 * self._std_kbps()) * 1000

    def lower_bps(self) -> float:
        if self.estimate_kbps is None:
            return 0.0
        return max(0.0, self.estimate_kbps - 3 * self._std_kbps()) * 1000

    def reset(self) -> None:
        self.estimate_kbps = None

    def on_overuse(self, acked_bps: float) -> None:
        self._update(acked_bps / 1000, CAPACITY_ALPHA_OVERUSE)

    def on_probe(self, probe_bps: float) -> None:
        """A probe shows the link carries *at least* its rate: within the band it refines the estimate; past its
        top (or with none known) the link grew beyond what a queue last showed, so none is known now."""
        if self.estimate_kbps is None or probe_bps > self.upper_bps():
            self.reset()
        else:
            self._update(probe_bps / 1000, CAPACITY_ALPHA_PROBE)

    def _update(self, sample_kbps: float, alpha: float) -> None:
        estimate = sample_kbps if self.estimate_kbps is None else (1 - alpha) * self.estimate_kbps + alpha * sample_kbps
        self.estimate_kbps = estimate
        error = estimate - sample_kbps
        self._deviation = (1 - alpha) * self._deviation + alpha * error * error / max(estimate, 1.0)
        self._deviation = min(max(self._deviation, DEVIATION_MIN), DEVIATION_MAX)


class AimdRateControl:
    def __init__(self, start_bps: float, min_bps: float, max_bps: float, beta: float = BETA) -> None:
        self.min_bps = min_bps
        self.max_bps = max_bps
        self.beta = beta
        self.bitrate = self._clamp(start_bps)
        self.state = RateControlState.HOLD
        self.link_capacity = LinkCapacity()
        self.rtt = DEFAULT_RTT_S
        self._last_change: Optional[float] = None
        self._last_decrease: Optional[float] = None
        self._latest_acked: Optional[float] = None

    def _clamp(self, bps: float) -> float:
        return min(max(bps, self.min_bps), self.max_bps)

    def set_rtt(self, rtt: float) -> None:
        self.rtt = rtt

    def update(self, now: float, usage: BandwidthUsage, acked_bps: Optional[float]) -> float:
        """One step per feedback: the detector's state and the acknowledged rate (None until measured)."""
        if acked_bps is not None:
            self._latest_acked = acked_bps
        acked = self._latest_acked
        if usage is BandwidthUsage.OVERUSING:
            if acked is None:
                if self._last_decrease is None or now - self._last_decrease >= UNMEASURED_HALVING_S:
                    self.set_estimate(now, self.bitrate / 2)
            elif self._time_to_reduce_further(now, acked):
                self.state = RateControlState.DECREASE
                self._decrease(now, acked)
            return self.bitrate
        if usage is BandwidthUsage.UNDERUSING:
            self.state = RateControlState.HOLD
        elif self.state is RateControlState.HOLD:
            self.state = RateControlState.INCREASE
            self._last_change = now
        if self.state is RateControlState.INCREASE:
            self._increase(now, acked)
        return self.bitrate

    def _time_to_reduce_further(self, now: float, acked_bps: float) -> bool:
        interval = min(max(self.rtt, REDUCE_INTERVAL_MIN_S), REDUCE_INTERVAL_MAX_S)
        if self._last_change is None or now - self._last_change >= interval:
            return True
        return acked_bps < 0.5 * self.bitrate  # far under what we think: no need to wait for the last cut to act

    def _increase(self, now: float, acked: Optional[float]) -> None:
        if acked is not None and acked > self.link_capacity.upper_bps():
            self.link_capacity.reset()  # the link carries more than we thought: find it again, fast
        limit = math.inf if acked is None else THROUGHPUT_HEADROOM * acked + THROUGHPUT_SLACK_BPS
        if self.bitrate < limit:
            elapsed = 0.0 if self._last_change is None else max(0.0, now - self._last_change)
            if self.link_capacity.known:
                step = self.additive_bps_per_s() * elapsed
            else:
                step = max(self.bitrate * (INCREASE_PER_S ** min(elapsed, 1.0) - 1), MIN_MULTIPLICATIVE_STEP_BPS)
            self.bitrate = self._clamp(min(self.bitrate + step, limit))
        self._last_change = now

    def additive_bps_per_s(self) -> float:
        """About one average packet per response time (RTT plus the detector's delay, doubled as GoogCC does)."""
        frame_bytes = self.bitrate * FRAME_INTERVAL_S / 8
        packets_per_frame = max(1.0, math.ceil(frame_bytes / MTU_PACKET_BYTES))
        packet_bits = frame_bytes / packets_per_frame * 8
        response_time = 2 * (self.rtt + DETECTOR_DELAY_S)
        return max(MIN_ADDITIVE_BPS_PER_S, packet_bits / response_time)

    def _decrease(self, now: float, acked: float) -> None:
        target = self.beta * acked
        if target > self.bitrate and self.link_capacity.known:
            target = self.beta * self.link_capacity.estimate_kbps * 1000
        if target < self.bitrate:
            self.bitrate = self._clamp(target)
        if acked < self.link_capacity.lower_bps():
            self.link_capacity.reset()  # far under the old capacity: the link changed, start its average anew
        self.link_capacity.on_overuse(acked)
        self.state = RateControlState.HOLD  # until the queue has drained and the delay is normal again
        self._last_change = now
        self._last_decrease = now

    def set_estimate(self, now: float, bps: float) -> None:
        """Set the rate from outside (a halving without measurements, a probe's proven rate)."""
        previous = self.bitrate
        self.bitrate = self._clamp(bps)
        self._last_change = now
        if self.bitrate < previous:
            self._last_decrease = now

    def on_probe(self, now: float, probe_bps: float) -> None:
        """A probe proved `probe_bps`: take it when it is above the estimate, and let it inform the capacity."""
        self.link_capacity.on_probe(probe_bps)
        if probe_bps > self.bitrate:
            self.set_estimate(now, probe_bps)
