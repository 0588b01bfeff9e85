"""Delay-based detection: send groups, the trendline's slope, the adaptive threshold and the overuse hysteresis."""
from __future__ import annotations

import random

import pytest

from sfu.congestion.delay_based import (
    THRESHOLD_MAX_MS, THRESHOLD_MIN_MS, THRESHOLD_START_MS, AdaptiveThreshold, BandwidthUsage, DelayBasedDetector,
    InterArrival, OveruseDetector, TrendlineFilter,
)


def test_packets_sent_within_5_ms_form_one_group() -> None:
    groups = InterArrival()
    deltas = []
    for i in range(30):  # a packet every 2 ms, arriving 50 ms later, spaced as sent
        out = groups.add(i * 0.002, 0.05 + i * 0.002)
        if out is not None:
            deltas.append(out)
    assert len(deltas) == 8  # groups of 3 packets (0-4 ms after each group's first), minus the first and last
    for send_delta, arrival_delta in deltas:
        assert send_delta == pytest.approx(0.006) and arrival_delta == pytest.approx(0.006)


def test_a_burst_arriving_back_to_back_joins_the_group() -> None:
    groups = InterArrival()
    assert groups.add(0.000, 0.100) is None
    assert groups.add(0.010, 0.101) is None  # sent 10 ms later, arrived 1 ms later: queued behind it
    assert groups.add(0.020, 0.130) is None  # a new group: the first one is complete, but had no previous
    out = groups.add(0.030, 0.140)
    assert out == pytest.approx((0.010, 0.029))


def test_reordered_packets_are_skipped() -> None:
    groups = InterArrival()
    groups.add(0.020, 0.100)
    assert groups.add(0.010, 0.101) is None


def test_trendline_slope_follows_a_growing_queue() -> None:
    trendline = TrendlineFilter()
    arrival = 0.0
    for _ in range(100):  # groups sent 10 ms apart arrive 12 ms apart: the delay grows 2 ms per group
        arrival += 12
        trend = trendline.update(12.0, 10.0, arrival)
    assert trend == pytest.approx(2 / 12, rel=0.01)
    for _ in range(100):  # and then the queue drains
        arrival += 8
        trend = trendline.update(8.0, 10.0, arrival)
    assert trend == pytest.approx(-2 / 8, rel=0.01)


def test_the_threshold_sinks_on_a_calm_path_rises_with_jitter_and_ignores_spikes() -> None:
    threshold = AdaptiveThreshold()
    assert threshold.value_ms == THRESHOLD_START_MS
    for t in range(0, 5000, 20):
        threshold.update(1.0, float(t))
    assert threshold.value_ms == THRESHOLD_MIN_MS
    for t in range(5000, 60000, 20):
        threshold.update(threshold.value_ms + 10, float(t))  # jitter just above it, again and again
    assert threshold.value_ms > 100
    spiky = AdaptiveThreshold()
    spiky.update(0.0, 0.0)
    spiky.update(THRESHOLD_START_MS + 16, 100.0)  # a spike: no adaptation
    assert spiky.value_ms == THRESHOLD_START_MS
    for t in range(0, 10_000_000, 100):
        spiky.update(spiky.value_ms + 14, float(t))
    assert spiky.value_ms == THRESHOLD_MAX_MS


def test_overuse_needs_10_ms_and_two_groups_over_the_threshold() -> None:
    detector = OveruseDetector()
    high = 1.0  # scaled by 60 samples and the gain 4: far over 12.5
    assert detector.detect(high, 100, 10.0, 0.0) is BandwidthUsage.NORMAL  # 5 ms, one group
    assert detector.detect(high, 100, 10.0, 10.0) is BandwidthUsage.OVERUSING  # 15 ms, two groups
    single = OveruseDetector()
    assert single.detect(high, 100, 30.0, 0.0) is BandwidthUsage.NORMAL  # 15 ms but one group
    assert single.detect(0.0, 100, 30.0, 30.0) is BandwidthUsage.NORMAL
    falling = OveruseDetector()
    falling.detect(high, 100, 10.0, 0.0)
    assert falling.detect(high / 2, 100, 10.0, 10.0) is BandwidthUsage.NORMAL  # over, but the trend is falling
    assert OveruseDetector().detect(-high, 100, 10.0, 0.0) is BandwidthUsage.UNDERUSING
    assert OveruseDetector().detect(high, 1, 10.0, 0.0) is BandwidthUsage.NORMAL  # too few samples to judge


def drive(detector: DelayBasedDetector, rng: random.Random, start: float, end: float, send_bps: float,
          link_bps: float, busy_until: float, jitter: float = 0.0) -> tuple[float, float | None]:
    """Packets of 1200 bytes at send_bps through a FIFO at link_bps; returns (queue end, first overuse time)."""
    t = start
    first_overuse = None
    while t < end:
        busy_until = max(t, busy_until) + 9600 / link_bps
        state = detector.on_packet(t, busy_until + 0.03 + rng.uniform(0, jitter))
        if state is BandwidthUsage.OVERUSING and first_overuse is None:
            first_overuse = t
        t += 9600 / send_bps
    return busy_until, first_overuse


def test_a_path_under_its_capacity_stays_normal_despite_jitter() -> None:
    detector = DelayBasedDetector()
    states = set()
    rng = random.Random(2)
    t, busy = 0.0, 0.0
    while t < 20:
        busy = max(t, busy) + 9600 / 2e6
        states.add(detector.on_packet(t, busy + 0.03 + rng.uniform(0, 0.004)))
        t += 9600 / 1e6
    assert BandwidthUsage.OVERUSING not in states


def test_a_queue_is_detected_within_a_few_hundred_ms_and_its_draining_is_underuse() -> None:
    detector = DelayBasedDetector()
    rng = random.Random(3)
    busy, _ = drive(detector, rng, 0.0, 5.0, 600e3, 1e6, 0.0, jitter=0.002)
    assert detector.state is BandwidthUsage.NORMAL
    busy, first_overuse = drive(detector, rng, 5.0, 6.0, 1.3e6, 1e6, busy, jitter=0.002)
    assert first_overuse is not None and first_overuse - 5.0 < 0.3
    underused = False
    t = 6.0
    while t < 6.3:  # the sender backs off to half the link: the queue drains
        busy = max(t, busy) + 9600 / 1e6
        underused |= detector.on_packet(t, busy + 0.03) is BandwidthUsage.UNDERUSING
        t += 9600 / 500e3
    assert underused


def test_threshold_bounds() -> None:
    assert (THRESHOLD_MIN_MS, THRESHOLD_MAX_MS) == (6.0, 600.0)
