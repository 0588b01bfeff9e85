"""Delay-based congestion detection, as GoogCC's: is a queue building on the path?

Packets are grouped into send bursts (5 ms of send time; a packet arriving on the heels of the previous group's
last one, sooner than it was sent after it, joins that group). For consecutive groups the growth of the one-way
delay is (arrival delta - send delta); the trendline filter accumulates it, smooths it and fits a line through the
last 20 points: the slope is ~ (send rate - capacity) / capacity. The overuse detector compares the slope, scaled
by the number of samples and a gain, with a threshold that adapts to the path's own jitter, and says overusing
only when the excess lasts 10 ms and two groups and is not falling.

Times are seconds at the interface; inside, milliseconds, the unit GoogCC's constants are tuned in.
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from enum import Enum
from typing import Optional


class BandwidthUsage(Enum):
    NORMAL = "normal"
    UNDERUSING = "underusing"
    OVERUSING = "overusing"


SEND_GROUP_S = 0.005
BURST_DELTA_S = 0.005
MAX_BURST_S = 0.1
REORDERED_RESET = 3
CLOCK_RESOLUTION_S = 1e-6    # libwebrtc compares whole microseconds; float noise must not make a burst

TRENDLINE_WINDOW = 20
TRENDLINE_SMOOTHING = 0.9
TRENDLINE_GAIN = 4.0
TREND_SAMPLES_CAP = 60       # the scaled trend grows with the samples seen, up to this many
DELTA_COUNTER_MAX = 1000

THRESHOLD_START_MS = 12.5
THRESHOLD_MIN_MS = 6.0
THRESHOLD_MAX_MS = 600.0
THRESHOLD_K_UP = 0.0087
THRESHOLD_K_DOWN = 0.039
THRESHOLD_MAX_STEP_MS = 100.0
THRESHOLD_IGNORE_ABOVE_MS = 15.0  # a spike this far over the threshold (a sudden capacity drop) does not adapt it
OVERUSE_TIME_MS = 10.0
OVERUSE_MIN_GROUPS = 2


@dataclass(slots=True)
class _SendGroup:
    first_send: float = 0.0
    last_send: float = 0.0
    first_arrival: float = 0.0
    last_arrival: float = 0.0
    empty: bool = True


class InterArrival:
    """Groups packets into send bursts; yields (send delta, arrival delta) in seconds when a group completes."""

    def __init__(self, group_length: float = SEND_GROUP_S) -> None:
        self.group_length = group_length
        self._current = _SendGroup()
        self._previous = _SendGroup()
        self._reordered = 0

    def add(self, send_time: float, arrival_time: float) -> Optional[tuple[float, float]]:
        current = self._current
        if current.empty:
            self._start(current, send_time, arrival_time)
        elif send_time < current.first_send:
            return None  # reordered: older than the group being built
        elif self._starts_new_group(send_time, arrival_time):
            deltas = None
            previous = self._previous
            if not previous.empty:
                send_delta = current.last_send - previous.last_send
                arrival_delta = current.last_arrival - previous.last_arrival
                if arrival_delta < 0:
                    self._reordered += 1
                    if self._reordered >= REORDERED_RESET:
                        self.reset()
                    return None
                self._reordered = 0
                deltas = (send_delta, arrival_delta)
            self._current, self._previous = previous, current  # reuse the old group's record
            self._start(self._current, send_time, arrival_time)
            return deltas
        else:
            current.last_send = max(current.last_send, send_time)
        current.last_arrival = arrival_time
        return None

    @staticmethod
    def _start(group: _SendGroup, send_time: float, arrival_time: float) -> None:
        group.first_send = group.last_send = send_time
        group.first_arrival = group.last_arrival = arrival_time
        group.empty = False

    def _starts_new_group(self, send_time: float, arrival_time: float) -> bool:
        current = self._current
        if self._belongs_to_burst(send_time, arrival_time):
            return False
        return send_time - current.first_send > self.group_length

    def _belongs_to_burst(self, send_time: float, arrival_time: float) -> bool:
        # packets queued behind each other arrive closer together than they were sent: one burst
        current = self._current
        send_delta = send_time - current.last_send
        if send_delta == 0:
            return True
        arrival_delta = arrival_time - current.last_arrival
        return (arrival_delta - send_delta < -CLOCK_RESOLUTION_S and arrival_delta <= BURST_DELTA_S
                and arrival_time - current.first_arrival < MAX_BURST_S)

    def reset(self) -> None:
        self._current = _SendGroup()
        self._previous = _SendGroup()
        self._reordered = 0


class TrendlineFilter:
    """Least-squares slope of the smoothed accumulated delay over the last `window` groups."""

    def __init__(self, window: int = TRENDLINE_WINDOW, smoothing: float = TRENDLINE_SMOOTHING) -> None:
        self.window = window
        self.smoothing = smoothing
        self.num_deltas = 0
        self.trend = 0.0
        self._first_arrival_ms: Optional[float] = None
        self._accumulated_ms = 0.0
        self._smoothed_ms = 0.0
        self._points: deque[tuple[float, float]] = deque(maxlen=window)

    def update(self, arrival_delta_ms: float, send_delta_ms: float, arrival_ms: float) -> float:
        self.num_deltas = min(self.num_deltas + 1, DELTA_COUNTER_MAX)
        if self._first_arrival_ms is None:
            self._first_arrival_ms = arrival_ms
        self._accumulated_ms += arrival_delta_ms - send_delta_ms
        self._smoothed_ms = self.smoothing * self._smoothed_ms + (1 - self.smoothing) * self._accumulated_ms
        self._points.append((arrival_ms - self._first_arrival_ms, self._smoothed_ms))
        if len(self._points) == self.window:
            slope = _slope(self._points)
            if slope is not None:
                self.trend = slope
        return self.trend


def _slope(points: deque[tuple[float, float]]) -> Optional[float]:
    n = len(points)
    mean_x = sum(x for x, _ in points) / n
    mean_y = sum(y for _, y in points) / n
    numerator = denominator = 0.0
    for x, y in points:
        dx = x - mean_x
        numerator += dx * (y - mean_y)
        denominator += dx * dx
    return numerator / denominator if denominator else None


class AdaptiveThreshold:
    """Follows |scaled trend| slowly up (k_up) and faster down (k_down): a jittery path earns a higher threshold,
    so its jitter is not read as a queue; a clean path keeps a low one, so a real queue is seen early."""

    def __init__(self) -> None:
        self.value_ms = THRESHOLD_START_MS
        self._last_ms: Optional[float] = None

    def update(self, scaled_trend: float, now_ms: float) -> None:
        if self._last_ms is None:
            self._last_ms = now_ms
        magnitude = abs(scaled_trend)
        if magnitude > self.value_ms + THRESHOLD_IGNORE_ABOVE_MS:
            self._last_ms = now_ms
            return
        k = THRESHOLD_K_DOWN if magnitude < self.value_ms else THRESHOLD_K_UP
        step_ms = min(max(now_ms - self._last_ms, 0.0), THRESHOLD_MAX_STEP_MS)
        self.value_ms += k * (magnitude - self.value_ms) * step_ms
        self.value_ms = min(max(self.value_ms, THRESHOLD_MIN_MS), THRESHOLD_MAX_MS)
        self._last_ms = now_ms


class OveruseDetector:
    def __init__(self, gain: float = TRENDLINE_GAIN) -> None:
        self.gain = gain
        self.threshold = AdaptiveThreshold()
        self.state = BandwidthUsage.NORMAL
        self.scaled_trend = 0.0
        self._time_over_ms = -1.0
        self._over_count = 0
        self._previous_trend = 0.0

    def detect(self, trend: float, num_deltas: int, send_delta_ms: float, now_ms: float) -> BandwidthUsage:
        if num_deltas < 2:
            self.state = BandwidthUsage.NORMAL
            return self.state
        scaled = min(num_deltas, TREND_SAMPLES_CAP) * trend * self.gain
        self.scaled_trend = scaled
        threshold = self.threshold.value_ms
        if scaled > threshold:
            # the first sample over the threshold is assumed to have been over for half its interval
            self._time_over_ms = send_delta_ms / 2 if self._time_over_ms < 0 else self._time_over_ms + send_delta_ms
            self._over_count += 1
            if (self._time_over_ms > OVERUSE_TIME_MS and self._over_count >= OVERUSE_MIN_GROUPS
                    and trend >= self._previous_trend):
                self._time_over_ms = 0.0
                self._over_count = 0
                self.state = BandwidthUsage.OVERUSING
        else:
            self._time_over_ms = -1.0
            self._over_count = 0
            self.state = BandwidthUsage.UNDERUSING if scaled < -threshold else BandwidthUsage.NORMAL
        self._previous_trend = trend
        self.threshold.update(scaled, now_ms)
        return self.state


class DelayBasedDetector:
    """Feed it acknowledged packets in arrival order; `state` says whether a queue is building."""

    def __init__(self) -> None:
        self.inter_arrival = InterArrival()
        self.trendline = TrendlineFilter()
        self.detector = OveruseDetector()

    @property
    def state(self) -> BandwidthUsage:
        return self.detector.state

    def on_packet(self, send_time: float, arrival_time: float) -> BandwidthUsage:
        deltas = self.inter_arrival.add(send_time, arrival_time)
        if deltas is not None:
            send_delta_ms = deltas[0] * 1000
            arrival_ms = arrival_time * 1000
            trend = self.trendline.update(deltas[1] * 1000, send_delta_ms, arrival_ms)
            self.detector.detect(trend, self.trendline.num_deltas, send_delta_ms, arrival_ms)
        return self.detector.state
