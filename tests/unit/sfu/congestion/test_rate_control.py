"""The AIMD rate: multiplicative far from the capacity, additive near it, β times the acked rate on overuse."""
from __future__ import annotations

import math

import pytest

from sfu.congestion.delay_based import BandwidthUsage
from sfu.congestion.rate_control import AimdRateControl, LinkCapacity, RateControlState

NORMAL, OVER, UNDER = BandwidthUsage.NORMAL, BandwidthUsage.OVERUSING, BandwidthUsage.UNDERUSING


def run(control: AimdRateControl, start: float, seconds: float, usage=NORMAL, acked=None, step: float = 0.1) -> float:
    t = start
    while t < start + seconds - 1e-9:
        t += step
        control.update(t, usage, control.bitrate if acked is None else acked)
    return t


def test_far_from_any_known_capacity_the_rate_grows_about_8_percent_a_second() -> None:
    control = AimdRateControl(500_000, 50_000, 20_000_000)
    run(control, 0.0, 5.0)
    assert control.state is RateControlState.INCREASE
    assert control.bitrate == pytest.approx(500_000 * 1.08 ** 5, rel=0.02)


def test_the_increase_stops_at_one_and_a_half_times_what_is_acknowledged() -> None:
    control = AimdRateControl(100_000, 50_000, 20_000_000)
    run(control, 0.0, 20.0, acked=100_000)
    assert control.bitrate == pytest.approx(1.5 * 100_000 + 10_000)


def test_overuse_cuts_to_beta_times_the_acked_rate_then_holds() -> None:
    control = AimdRateControl(1_000_000, 50_000, 20_000_000)
    control.update(0.0, NORMAL, 900_000)
    control.update(1.0, OVER, 800_000)
    assert control.bitrate == pytest.approx(0.85 * 800_000)
    assert control.state is RateControlState.HOLD
    assert control.link_capacity.estimate_kbps == pytest.approx(800)
    control.update(1.05, OVER, 800_000)  # within an RTT of the cut: no second cut
    assert control.bitrate == pytest.approx(0.85 * 800_000)
    control.update(1.1, OVER, 300_000)   # unless what arrives fell under half the estimate
    assert control.bitrate == pytest.approx(0.85 * 300_000)


def test_near_the_capacity_the_increase_is_additive() -> None:
    control = AimdRateControl(1_000_000, 50_000, 20_000_000)
    control.update(0.0, OVER, 800_000)
    start = control.bitrate
    per_second = control.additive_bps_per_s()
    # 680 kbit/s: frames of 2833 bytes, three packets of 944 bytes; one packet per 2 * (RTT 200 ms + 100 ms)
    assert per_second == pytest.approx(2833.3 / 3 * 8 / 0.6, rel=0.01)
    t = run(control, 0.0, 5.0, acked=700_000)
    assert control.bitrate - start == pytest.approx(5 * per_second, rel=0.1)
    assert control.bitrate < start * 1.08 ** 2  # far slower than the multiplicative climb
    control.set_rtt(0.05)
    assert control.additive_bps_per_s() > per_second  # a shorter response time climbs faster
    run(control, t, 1.0, acked=1_200_000)  # the link carries far more than the capacity band: find it again fast
    assert not control.link_capacity.known


def test_underuse_holds_the_rate() -> None:
    control = AimdRateControl(600_000, 50_000, 20_000_000)
    run(control, 0.0, 2.0, usage=UNDER)
    assert control.bitrate == 600_000 and control.state is RateControlState.HOLD


def test_overuse_before_any_acked_rate_halves_at_most_every_200_ms() -> None:
    control = AimdRateControl(1_000_000, 50_000, 20_000_000)
    control.update(0.0, OVER, None)
    control.update(0.1, OVER, None)
    assert control.bitrate == 500_000
    control.update(0.2, OVER, None)
    assert control.bitrate == 250_000


def test_bounds_and_probes() -> None:
    control = AimdRateControl(10_000, 50_000, 2_000_000)
    assert control.bitrate == 50_000
    control.update(0.0, OVER, 10_000)
    assert control.bitrate == 50_000
    run(control, 0.0, 60.0)
    assert control.bitrate == 2_000_000
    probed = AimdRateControl(500_000, 50_000, 20_000_000)
    probed.on_probe(1.0, 900_000)
    assert probed.bitrate == 900_000 and not probed.link_capacity.known  # carries at least that: no limit known
    probed.on_probe(2.0, 400_000)  # a lower probe result does not lower the rate
    assert probed.bitrate == 900_000
    probed.update(3.0, OVER, 1_000_000)   # a queue at 1 Mbit/s: that is the capacity
    assert probed.link_capacity.estimate_kbps == pytest.approx(1000)
    probed.on_probe(4.0, 960_000)          # within its band: refines it
    assert probed.link_capacity.estimate_kbps == pytest.approx(980)
    probed.on_probe(5.0, 1_300_000)        # well past it: the link grew, its capacity is to be found anew
    assert not probed.link_capacity.known and probed.bitrate == 1_300_000


def test_link_capacity_band_narrows_with_steady_samples() -> None:
    capacity = LinkCapacity()
    assert (capacity.upper_bps(), capacity.lower_bps()) == (math.inf, 0.0)
    capacity.on_overuse(1_000_000)
    wide = capacity.upper_bps() - capacity.lower_bps()
    for _ in range(100):
        capacity.on_overuse(1_000_000)
    assert capacity.upper_bps() - capacity.lower_bps() == pytest.approx(wide)  # already at the minimum variance
    capacity.on_overuse(500_000)
    assert capacity.upper_bps() - capacity.lower_bps() > wide  # a surprising sample widens the band
    assert capacity.estimate_kbps == pytest.approx(975)
    assert wide == pytest.approx(6 * math.sqrt(0.4 * 1000) * 1000)
    capacity.reset()
    assert not capacity.known
