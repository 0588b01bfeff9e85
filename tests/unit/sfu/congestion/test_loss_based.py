"""The loss-based bound: no cut below ~10 %, growth within the link's own loss level, a level learnt from random
loss and not from congestion."""
from __future__ import annotations

import random

import pytest

from sfu.congestion.loss_based import LossBasedControl

CEILING = 10_000_000  # a delay-based rate far above: only the loss rules act


def feed(control: LossBasedControl, start: float, seconds: float, loss: float, rng: random.Random | None = None,
         overusing: bool = False, delay_based: float = CEILING, packets: int = 10, step: float = 0.125) -> float:
    """Reports of `packets` every `step` s (exact in binary: intervals close on time); with `rng`, each packet is
    lost with probability `loss`, else exactly round(loss * packets) are."""
    for k in range(1, round(seconds / step) + 1):
        lost = sum(rng.random() < loss for _ in range(packets)) if rng else round(loss * packets)
        control.on_feedback(start + k * step, lost, packets, overusing, delay_based, 0.1)
    return start + seconds


def test_a_clean_link_grows_the_bound_about_8_percent_a_second_up_to_the_delay_based_rate() -> None:
    control = LossBasedControl(500_000, 50_000, 20_000_000)
    feed(control, 0.0, 5.0, 0.0)
    # intervals close every 0.5 s from the first report's: 4.5 s of growth by 5 s
    assert 500_000 * 1.08 ** 4.5 < control.bound_bps < 500_000 * 1.08 ** 5
    feed(control, 5.0, 30.0, 0.0, delay_based=900_000)
    assert control.bound_bps == 900_000


def test_loss_up_to_10_percent_never_cuts() -> None:
    for loss in (0.03, 0.05, 0.08, 0.10):
        control = LossBasedControl(1_000_000, 50_000, 20_000_000)
        feed(control, 0.0, 20.0, loss, packets=20)
        assert control.cuts == 0 and control.bound_bps >= 1_000_000


def test_sudden_moderate_loss_on_a_clean_link_holds_the_bound() -> None:
    control = LossBasedControl(1_000_000, 50_000, 20_000_000)
    t = feed(control, 0.0, 20.0, 0.0, delay_based=1_500_000)
    assert control.bound_bps == 1_500_000 and control.level == 0.0
    feed(control, t, 2.0, 0.06, delay_based=3_000_000, packets=50)
    assert control.bound_bps == 1_500_000  # 6 % on a link whose own level is 0: hold, neither grow nor cut
    assert control.interval_loss == pytest.approx(0.06, abs=0.01)


def test_persistent_loss_over_10_percent_cuts_by_half_the_loss() -> None:
    control = LossBasedControl(1_000_000, 50_000, 20_000_000)
    t = feed(control, 0.0, 0.625, 0.15, delay_based=1_000_000, packets=40)  # the first interval closes at 0.625 s
    assert control.cuts == 0  # one interval at 15 % may be noise
    t = feed(control, t, 0.5, 0.15, delay_based=1_000_000, packets=40)
    assert control.cuts == 1 and control.bound_bps == pytest.approx(1_000_000 * (1 - 0.5 * 0.15))
    feed(control, t, 3.0, 0.15, delay_based=1_000_000, packets=40)
    assert control.cuts == 7  # one per interval: the 300 ms + RTT between cuts is shorter than an interval
    assert control.bound_bps == pytest.approx(1_000_000 * 0.925 ** 7)
    assert control.level == 0.0  # congestion loss is not the link's own


def test_plain_heavy_loss_cuts_at_the_first_interval_but_no_more_often_than_300_ms_plus_rtt() -> None:
    plain = LossBasedControl(1_000_000, 50_000, 20_000_000)
    feed(plain, 0.0, 0.625, 0.4, delay_based=1_000_000, packets=40)
    assert plain.cuts == 1 and plain.bound_bps == pytest.approx(800_000)
    fast = LossBasedControl(1_000_000, 50_000, 20_000_000)
    feed(fast, 0.0, 6.0, 0.4, delay_based=1_000_000, step=0.5, packets=40)  # 11 intervals of 0.5 s: 11 cuts...
    assert fast.cuts == 11
    slow_rtt = LossBasedControl(1_000_000, 50_000, 20_000_000)
    for k in range(1, 13):  # ...but with a 400 ms RTT, cuts come at most every 700 ms
        slow_rtt.on_feedback(k * 0.5, 16, 40, False, 1_000_000, 0.4)
    assert slow_rtt.cuts == 6


def test_the_level_learns_random_loss_but_not_loss_while_a_queue_builds() -> None:
    rng = random.Random(11)
    for loss in (0.01, 0.03, 0.05):
        control = LossBasedControl(1_000_000, 50_000, 20_000_000)
        feed(control, 0.0, 30.0, loss, rng=rng, packets=10)
        assert control.level == pytest.approx(loss, abs=0.01)
        assert control.cuts == 0
    queued = LossBasedControl(1_000_000, 50_000, 20_000_000)
    feed(queued, 0.0, 10.0, 0.08, overusing=True)
    assert queued.level == 0.0


def test_the_increase_threshold_follows_the_level() -> None:
    control = LossBasedControl(500_000, 50_000, 20_000_000)
    assert control.increase_threshold() == 0.02
    feed(control, 0.0, 10.0, 0.05, packets=20)
    assert control.increase_threshold() == pytest.approx(0.07, abs=0.005)
    assert control.bound_bps > 500_000 * 1.08 ** 8  # a 5 % link grows as a clean one once its level is known
    assert control.cut_threshold(100) == pytest.approx(0.13)  # 10 % plus its noise over 100 packets


def test_the_bound_follows_the_delay_based_rate_down_and_a_probe_can_raise_it() -> None:
    control = LossBasedControl(2_000_000, 50_000, 20_000_000)
    control.on_feedback(0.1, 0, 10, False, 700_000, 0.1)
    assert control.bound_bps == 700_000
    control.raise_to(1_100_000)
    assert control.bound_bps == 1_100_000
    control.raise_to(30_000_000)
    assert control.bound_bps == 20_000_000


def test_a_heavy_loss_cut_goes_no_higher_than_what_was_acknowledged() -> None:
    # a start at 1 Mbit/s into a 300 kbit/s link: 60 % lost, 280 kbit/s arrive; one cut takes the bound there,
    # not to 700 kbit/s (halving by steps would leave the link flooded for seconds)
    control = LossBasedControl(1_000_000, 50_000, 20_000_000)
    for k in range(1, 6):
        control.on_feedback(k * 0.125, 24, 40, False, 1_000_000, 0.1, acked_bps=280_000)
    assert control.cuts == 1 and control.bound_bps == 280_000
    # a cut by half the loss that is already below what arrived keeps that rule
    other = LossBasedControl(1_000_000, 50_000, 20_000_000)
    for k in range(1, 6):
        other.on_feedback(k * 0.125, 16, 40, False, 1_000_000, 0.1, acked_bps=950_000)
    assert other.cuts == 1 and other.bound_bps == pytest.approx(800_000)


def test_after_a_start_cut_an_app_limited_sender_learns_the_links_own_loss() -> None:
    # a start into a 300 kbit/s link with 1 % random loss: one cut to what arrived; then the sender uses 150 kbit/s
    # of it: the bound grows no further than 1.5x that (it was not tried), holds nothing down, and the 1 % is
    # learnt as the link's own (redundant audio depends on it), while the delay-based rate never came down
    control = LossBasedControl(1_000_000, 50_000, 20_000_000)
    for k in range(1, 6):
        control.on_feedback(k * 0.125, 24, 40, False, 1_000_000, 0.1, acked_bps=280_000)
    assert control.cuts == 1 and control.bound_bps == 280_000 and control.level == 0.0
    t = 0.625
    for k in range(1, 161):   # 20 s of reports, one lost packet in every hundred
        control.on_feedback(t + k * 0.125, 1 if k % 10 == 0 else 0, 10, False, 1_000_000, 0.1, acked_bps=150_000)
    assert control.bound_bps == 280_000                       # not 8 %/s for 20 s: ~1.3 Mbit/s
    assert control.level == pytest.approx(0.01, abs=0.003)


def test_after_a_start_cut_the_level_is_learnt_even_while_the_bound_stays_held() -> None:
    # the same start, then 185 kbit/s used of the 280: 1.5x that is above the bound, and a random loss in each
    # interval of 40 packets reads 2.5 %, over the growth threshold: the bound stays where the cut left it, yet
    # once the cut is 2 s old the random loss is the link's own
    control = LossBasedControl(1_000_000, 50_000, 20_000_000)
    for k in range(1, 6):
        control.on_feedback(k * 0.125, 24, 40, False, 1_000_000, 0.1, acked_bps=280_000)
    assert control.cuts == 1
    t = 0.625
    for k in range(1, 121):   # 15 s, one loss in every 40 packets
        control.on_feedback(t + k * 0.125, 1 if k % 4 == 0 else 0, 10, False, 1_000_000, 0.1, acked_bps=185_000)
    assert control.level == pytest.approx(0.025, abs=0.005)
    # with the level known, 2.5 % is within it: the bound grows again, as far as was tried
    assert control.cuts == 1 and control.bound_bps == pytest.approx(1.5 * 185_000 + 10_000)


def test_loss_heard_at_a_held_bound_is_known_for_redundancy_but_not_learnt_as_the_links() -> None:
    # the same start, then the sender uses all the cut left it (as into a policer): its loss is not learnt as the
    # link's own (that would raise every threshold), but redundant audio hears it once the cut is 2 s old
    control = LossBasedControl(1_000_000, 50_000, 20_000_000)
    for k in range(1, 6):
        control.on_feedback(k * 0.125, 24, 40, False, 1_000_000, 0.1, acked_bps=280_000)
    t = 0.625
    for k in range(1, 9):     # the first second after the cut: its loss is the cut's own rate's
        control.on_feedback(t + k * 0.125, 2, 10, False, 1_000_000, 0.1, acked_bps=280_000)
    assert control.heard_level == 0.0
    t += 1.0
    for k in range(1, 121):   # 15 s, one loss in every 40 packets, at the bound
        control.on_feedback(t + k * 0.125, 1 if k % 4 == 0 else 0, 10, False, 1_000_000, 0.1, acked_bps=280_000)
    assert control.level == 0.0
    assert control.heard_level == pytest.approx(0.025, abs=0.005)
    for k in range(1, 9):     # a queue building: its loss is congestion, not heard as the link's
        control.on_feedback(t + 15 + k * 0.125, 3, 10, True, 1_000_000, 0.1, acked_bps=280_000)
    assert control.heard_level == pytest.approx(0.025, abs=0.005)
