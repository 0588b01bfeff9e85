"""The loss-based bound: GoogCC's classic loss thresholds, made to tolerate a link's own random loss.

Feedback reports are summed into intervals (at least `INTERVAL_S` and `INTERVAL_PACKETS` packets, so one report's
handful of packets does not decide anything). Per interval:
- loss over 10 % beyond the interval's sampling noise (one standard deviation of a 10 % loss over its packets)
  and over the link's own level beyond three standard deviations, in two intervals running (or in one, when it is
  over 10 % by four standard deviations), cuts the bound by (1 - 0.5 * loss), at most once per 300 ms + RTT:
  loss rising with the rate. The cut goes no higher than the rate acknowledged: a link losing heavily has just
  shown what it carries (a start at 1 Mbit/s into a 300 kbit/s link loses 60 %, and halving by steps from
  1 Mbit/s would take seconds while a full queue's delay no longer grows for the delay-based detector to see).
  (One short interval of a 5 % link shows 15 % now and then: that is noise, not congestion; congestion
  persists, or is plain at once.)
- loss within 2 % of the link's own level (or under 2 %) lets the bound grow by ~8 %/s, but not past 1.5 times
  what was acknowledged (as the delay-based rate: a sender held under the bound has not tried more);
- anything between holds it.
The bound never exceeds the delay-based rate (it is a limit on it, as in GoogCC), so it follows that rate down
and climbs back with it.

The link's own level is a slow average of the interval losses seen while no queue was building, the loss was not
heavy and no loss cut was holding the rate down (until the bound is back at the delay-based rate, or above what
the sender uses, or 2 s have passed without another cut while the sender uses well under the bound): the random
loss of a lossy radio or copper link, which lowering the rate would not cure. (Loss
right after a cut comes from our own rate, as from a policer with a short queue: learning it would raise every
threshold.) A probe is judged against it (loss above the link's level, not any).
Known limit: a sender creeping into a policer slowly enough lets the level follow the policer's loss up (to 10 %
at most, which the level never learns beyond).
"""
from __future__ import annotations

import math
from typing import Optional

from .loss_level import LossLevel
from .rate_control import THROUGHPUT_HEADROOM, THROUGHPUT_SLACK_BPS

LOSS_INCREASE = 0.02
LOSS_DECREASE = 0.10
LEVEL_MARGIN = 0.02           # loss this far above the link's level still counts as the link's own
CUT_SIGMAS = 3.0
PLAIN_SIGMAS = 4.0            # loss this far over 10 % is congestion in a single interval
INCREASE_PER_S = 1.08
INCREASE_STEP_BPS = 1000
DECREASE_INTERVAL_S = 0.3
INTERVAL_S = 0.5
INTERVAL_PACKETS = 20
CUT_SETTLE_S = 2.0            # after a cut, loss is learnt as the link's own again once this long has passed
APP_LIMITED_SHARE = 0.8       # without another, while the sender uses under this share of the bound (a thin
                              # link's intervals of ~40 packets read one random loss as 2.5 %: the bound then
                              # never grew back to free the level, and RED stayed off)


class LossBasedControl:
    def __init__(self, start_bps: float, min_bps: float, max_bps: float) -> None:
        self.min_bps = min_bps
        self.max_bps = max_bps
        self.bound_bps = min(max(start_bps, min_bps), max_bps)
        self.own = LossLevel()                    # the link's own (random) loss
        self.heard = LossLevel()                  # any loss seen while no queue builds (see heard_level)
        self.interval_loss: Optional[float] = None
        self.cuts = 0
        self._interval_start: Optional[float] = None
        self._lost = 0
        self._reported = 0
        self._last_decrease: Optional[float] = None
        self._heavy = False                       # the previous interval's loss was over the cut threshold
        self._held_by_cut = False                 # a loss cut keeps the bound under the delay-based rate

    def on_feedback(self, now: float, lost: int, reported: int, overusing: bool, delay_based_bps: float,
                    rtt: float, acked_bps: Optional[float] = None) -> None:
        """Add one report's counts; when an interval is complete, act on its loss."""
        if self._interval_start is None:
            self._interval_start = now
        self._lost += lost
        self._reported += reported
        elapsed = now - self._interval_start
        if self._reported >= INTERVAL_PACKETS and elapsed >= INTERVAL_S:
            loss = self._lost / self._reported
            self._on_interval(now, elapsed, loss, self._reported, overusing, delay_based_bps, rtt, acked_bps)
            self._interval_start = now
            self._lost = self._reported = 0
        ceiling = max(delay_based_bps, self.min_bps)
        if self.bound_bps >= ceiling:
            self._held_by_cut = False
        self.bound_bps = min(self.bound_bps, ceiling)

    def _on_interval(self, now: float, elapsed: float, loss: float, packets: int, overusing: bool,
                     delay_based_bps: float, rtt: float, acked_bps: Optional[float]) -> None:
        self.interval_loss = loss
        heavy_before, self._heavy = self._heavy, loss > self.cut_threshold(packets)
        if self._heavy:
            plain = loss > self.cut_threshold(packets, PLAIN_SIGMAS)
            if ((heavy_before or plain)
                    and (self._last_decrease is None or now - self._last_decrease >= DECREASE_INTERVAL_S + rtt)):
                cut = min(self.bound_bps, delay_based_bps) * (1 - 0.5 * loss)
                if acked_bps is not None:
                    cut = min(cut, acked_bps)
                self.bound_bps = max(self.min_bps, cut)
                self._last_decrease = now
                self._held_by_cut = True
                self.cuts += 1
        elif loss <= self.increase_threshold():
            grown = self.bound_bps * INCREASE_PER_S ** min(elapsed, 1.0) + INCREASE_STEP_BPS
            tried = None if acked_bps is None else THROUGHPUT_HEADROOM * acked_bps + THROUGHPUT_SLACK_BPS
            if tried is not None and grown >= tried:
                # no further than was tried, as the delay-based rate; and the sender uses less than the bound
                # allows, so the bound holds nothing down and the loss at this rate is the link's own
                grown = max(self.bound_bps, tried)
                self._held_by_cut = False
            self.bound_bps = min(grown, self.max_bps)
        # a sender that uses clearly less than the bound is not pushing into a policer: once the cut is old, its
        # loss is the link's own even while the bound is still held (it may never grow back on a lossy link)
        settled = (self._last_decrease is not None and now - self._last_decrease >= CUT_SETTLE_S
                   and acked_bps is not None and acked_bps < APP_LIMITED_SHARE * self.bound_bps)
        if not overusing and (not self._held_by_cut or settled):
            self.own.learn(elapsed, loss)
        if not overusing and (self._last_decrease is None or now - self._last_decrease >= CUT_SETTLE_S):
            self.heard.learn(elapsed, loss)

    @property
    def level(self) -> float:
        """The link's own steady loss."""
        return self.own.level

    @property
    def heard_level(self) -> float:
        """The loss seen lately while no queue built and no cut was fresh, whatever its cause: the link's own, or
        a policer's at the rate we send. Unlike `level` it does not wait for a held bound to grow back, so it is
        known within seconds on a thin link that a start's cut holds; what it answers is audio redundancy, which
        any loss calls for (the bound must not learn a policer's loss, or every threshold would rise)."""
        return self.heard.level

    def cut_threshold(self, packets: int, sigmas: float = 1.0) -> float:
        packets = max(packets, 1)
        over_ten = LOSS_DECREASE + sigmas * math.sqrt(LOSS_DECREASE * (1 - LOSS_DECREASE) / packets)
        over_level = self.level + CUT_SIGMAS * math.sqrt(self.level * (1 - self.level) / packets)
        return max(over_ten, over_level)

    def increase_threshold(self) -> float:
        return min(max(LOSS_INCREASE, self.level + LEVEL_MARGIN), LOSS_DECREASE)

    def raise_to(self, bps: float) -> None:
        """A probe proved this rate under the link's own loss: the bound does not hold it back."""
        self.bound_bps = min(max(self.bound_bps, bps), self.max_bps)
