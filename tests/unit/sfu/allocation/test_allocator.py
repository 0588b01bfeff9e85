"""The allocator's layer choice from one LinkReport at a time (time passed in): estimates, loss, probing, holds."""
from __future__ import annotations

import pytest

from sfu.allocation.allocator import (HOLD_MIN, PROBE_GAIN, PROBE_GRACE_S, PROBE_RAMP_S, PROBE_S, SPATIAL_UP_FILL,
                                      UNCHECKED_ROOM,
                                      Allocator, LinkReport)
from tests.unit.sfu.forward.simulcast_rig import RATES


def test_allocator_starts_high_and_drops_within_one_estimate():
    a = Allocator()
    assert a.update(0.0, LinkReport(None, 0.0, 0.0, RATES)) == (2, 2)
    assert a.update(0.25, LinkReport(500e3, 0.0, 1.5e6, RATES)) == (1, 2)        # fits 450k in 475k
    assert a.update(0.5, LinkReport(100e3, 0.0, 450e3, RATES)) == (0, 1)          # drops frame rate, then resolution


def test_allocator_climbs_after_the_hold_straight_to_what_fits():
    a = Allocator()
    a.update(0.0, LinkReport(100e3, 0.0, 0, RATES))
    assert a.state.current == (0, 1)
    t = 0.0
    while t < HOLD_MIN - 0.1:
        t += 0.25
        assert a.update(t, LinkReport(2.5e6, 0.0, 90e3, RATES)) == (0, 1)          # not before the hold
    t += 0.25
    assert a.update(t, LinkReport(2.5e6, 0.0, 90e3, RATES)) == (2, 2)             # the link came back: all the way up


def test_allocator_wants_headroom_for_a_higher_resolution():
    a = Allocator()
    assert a.update(0.0, LinkReport(500e3, 0.0, 0, RATES)) == (1, 2)
    # (3 % loss: no probing, to look at the rule alone)
    for i in range(20):  # 720p at half rate (1.1M) would fit in 0.85 of 1.35M, but its keyframe would not
        assert a.update(0.25 * (i + 1), LinkReport(1.35e6, 0.03, 450e3, RATES)) == (1, 2)
    assert a.update(6.0, LinkReport(1.6e6, 0.03, 450e3, RATES)) == (1, 2)
    assert a.update(8.5, LinkReport(1.6e6, 0.03, 450e3, RATES)) == (2, 1)


def test_allocator_does_not_trim_a_viewer_that_receives_well():
    # Chromium's REMB hovers near what it receives (it cannot exceed 1.5x that): no congestion, no trim
    a = Allocator()
    assert a.update(0.0, LinkReport(None, 0.0, 0.0, RATES)) == (2, 2)
    for i in range(40):
        assert a.update(0.25 * (i + 1), LinkReport(1.45e6 if i % 2 else 1.55e6, 0.0, 1.45e6, RATES)) == (2, 2)
    # the estimate falls under what it is sent: congestion, down at once
    assert a.update(11.0, LinkReport(1.2e6, 0.0, 1.45e6, RATES)) == (2, 1)
    assert a.update(11.25, LinkReport(300e3, 0.0, 1.1e6, RATES)) == (0, 2)         # never 720p or 360p at 5 fps


def test_allocator_ignores_a_keyframe_burst_while_the_estimate_rises():
    a = Allocator()
    a.update(0.0, LinkReport(None, 0.0, 0.0, RATES))
    for i in range(8):
        assert a.update(0.25 * i + 0.25, LinkReport(1.6e6 + 20e3 * i, 0.0, 1.5e6, RATES)) == (2, 2)
    # another viewer's keyframe request: this one is sent 2.4M for a second, its estimate keeps rising
    assert a.update(2.25, LinkReport(1.8e6, 0.0, 2.4e6, RATES)) == (2, 2)
    assert a.update(2.5, LinkReport(1.82e6, 0.0, 2.4e6, RATES)) == (2, 2)


def test_allocator_probes_prove_rates_in_slow_start_steps():
    a = Allocator()
    assert a.update(0.0, LinkReport(150e3, 0.0, 0, RATES)) == (0, 2)
    t, totals = 0.0, []
    while a.state.current == (0, 2) and t < 20:   # the estimate stays flat (as Chromium's REMB does)
        t += 0.25
        a.update(t, LinkReport(150e3, 0.0, 120e3, RATES))
        if a.probe_rate(t) and (not totals or a.state.probe_total_bps != totals[-1]):
            totals.append(a.state.probe_total_bps)
    # each clean probe proves its rate and the step above it doubles, until 360p fits with its headroom
    assert totals == pytest.approx([150e3 * 1.2, 180e3 * 1.4, 252e3 * 1.8], rel=0.01)
    assert 252e3 * 1.8 * SPATIAL_UP_FILL >= 320e3
    assert a.state.current == (1, 1) and t < 3 * (PROBE_S + PROBE_GRACE_S) + 1


def test_allocator_probes_gently_near_a_known_capacity():
    """Near the rate where a queue last built, a probe aims just past it (whatever slow start would say), so
    what queues up is little; one that shows the link carries more lets the next probes leap again."""
    a = Allocator()
    assert a.update(0.0, LinkReport(150e3, 0.0, 0, RATES)) == (0, 2)
    t, totals, capacity = 0.0, [], 260e3
    while a.state.current == (0, 2) and t < 30:
        t += 0.25
        proven = a.state.proven_bps
        a.update(t, LinkReport(150e3, 0.0, 120e3, RATES, capacity_bps=capacity))
        if a.probe_rate(t) and (not totals or a.state.probe_total_bps != totals[-1]):
            totals.append(a.state.probe_total_bps)
        if capacity and a.state.proven_bps > max(proven * 1.01, capacity):
            capacity = None   # the estimator saw more arrive than its capacity band: it forgot it
    # slow start alone would aim at 180k, 252k, 454k: 286k is 260k x 1.1; once it was proven the capacity is
    # forgotten, and the next probe goes straight to what 360p needs (320k / 0.75, +10 %)
    assert totals == pytest.approx([180e3, 252e3, 286e3, 320e3 / SPATIAL_UP_FILL * 1.1], rel=0.01)
    assert a.state.current == (1, 1)


def test_a_probe_that_passes_the_known_capacity_frees_the_next_ones_from_it():
    """The capacity holds a probe to 10 % past it; when that probe succeeds, the capacity is out of date (a cap
    was lifted) and the next probes climb by slow start, though the estimator still reports it: from the rate
    that probe proved (the estimate is no guide: it climbed unchecked while the stream sent less), and at the step
    it took before (a probe held at the capacity is no slow-start win)."""
    a = Allocator()
    assert a.update(0.0, LinkReport(150e3, 0.0, 0, RATES)) == (0, 2)
    t, starts = 0.0, []
    while t < 20 and a.state.current == (0, 2):
        t += 0.25
        window = a.probe_window(t)
        a.update(t, LinkReport(150e3, 0.0, 120e3, RATES, capacity_bps=200e3))
        if a.probe_window(t) and a.probe_window(t) != window:
            starts.append(a.state.probe_total_bps)
    assert starts == pytest.approx([180e3, 220e3, 220e3 * 1.4, 320e3 / SPATIAL_UP_FILL * 1.1], rel=0.01)
    assert a.state.current == (1, 1)


def test_an_estimate_past_the_known_capacity_does_not_lift_a_probe():
    """A stream that sends less than its estimate lets the estimate climb unchecked (to 1.5x what arrives): a
    probe still aims just past the capacity, from what is sent."""
    a = Allocator()
    assert a.update(0.0, LinkReport(150e3, 0.0, 0, RATES)) == (0, 2)
    t = 0.0
    while not a.probe_rate(t) and t < 10:
        t += 0.25
        a.update(t, LinkReport(300e3, 0.0, 120e3, RATES, capacity_bps=200e3))
    assert a.state.probe_total_bps == pytest.approx(220e3)


def test_after_passing_the_capacity_a_probe_steps_from_what_arrived_not_from_a_runaway_estimate():
    """A stream sending 120k of an estimate run up to 300k: the probe held at the capacity (220k) succeeds, and
    the next steps 20 % past the 220k it proved, not 40 % past the estimate (420k into a link that carried 220k,
    when the link had not grown: the queue it built held a thin link's voice back)."""
    a = Allocator()
    assert a.update(0.0, LinkReport(150e3, 0.0, 0, RATES)) == (0, 2)
    t, starts = 0.0, []
    while t < 20 and len(starts) < 2:
        t += 0.25
        window = a.probe_window(t)
        a.update(t, LinkReport(300e3, 0.0, 120e3, RATES, capacity_bps=200e3, arrived_bps=115e3))
        if a.probe_window(t) and a.probe_window(t) != window:
            starts.append(a.state.probe_total_bps)
    assert starts == pytest.approx([220e3, 220e3 * PROBE_GAIN], rel=0.01)


def test_a_probe_steps_from_what_arrives_not_from_an_estimate_run_past_it():
    """No capacity known yet: a stream sends 150k, 150k arrives, and the delay-based estimate has climbed to 285k
    unchecked. The probe steps from a little over what arrived (1.2x 150k, then 1.2x that: 216k), not 1.2x the
    285k (342k video into a 300k link: the voice waits in its queue). Without transport feedback (REMB, which
    Chromium holds under 1.5x what arrives) the estimate is the base."""
    def first_probe(arrived):
        a = Allocator()
        a.update(0.0, LinkReport(150e3, 0.0, 0, RATES))
        t = 0.0
        while not a.probe_rate(t) and t < 10:
            t += 0.25
            a.update(t, LinkReport(285e3, 0.0, 150e3, RATES, arrived_bps=arrived))
        return a.state.probe_total_bps
    assert first_probe(150e3) == pytest.approx(150e3 * UNCHECKED_ROOM * PROBE_GAIN, rel=0.01)
    assert first_probe(None) == pytest.approx(285e3 * PROBE_GAIN, rel=0.01)
    # a probe that proved more than arrives since (the stream has not grown into it yet) is stepped from
    a = Allocator()
    a.state.proven_bps = 260e3
    a.update(0.0, LinkReport(150e3, 0.0, 0, RATES))
    t = 0.0
    while not a.probe_rate(t) and t < 10:
        t += 0.25
        a.update(t, LinkReport(285e3, 0.0, 150e3, RATES, arrived_bps=150e3))
    assert a.state.probe_total_bps == pytest.approx(260e3 * PROBE_GAIN, rel=0.01)


def test_allocator_probe_backs_off_and_stays_under_a_failed_rate():
    a = Allocator()
    a.update(0.0, LinkReport(150e3, 0.0, 0, RATES))
    a.update(0.25, LinkReport(150e3, 0.0, 120e3, RATES))
    assert a.probe_rate(0.25) == 0                                            # its padding ramps up ...
    assert a.probe_rate(0.25 + PROBE_RAMP_S / 2) == pytest.approx((150e3 * PROBE_GAIN - 120e3) / 2, rel=0.01)
    assert a.probe_rate(0.25 + PROBE_RAMP_S) == pytest.approx(150e3 * PROBE_GAIN - 120e3, rel=0.01)  # ... and holds
    a.update(1.0, LinkReport(150e3, 0.05, 120e3, RATES))                         # loss while probing: stop, back off
    assert a.probe_rate(1.0) == 0
    a.update(2.0, LinkReport(150e3, 0.0, 120e3, RATES))
    assert a.probe_rate(2.0) == 0                                   # still backing off (2 s)
    t = 1.0 + HOLD_MIN + 0.1
    a.update(t, LinkReport(150e3, 0.0, 120e3, RATES))
    assert a.state.probe_total_bps == pytest.approx((150e3 + 180e3) / 2)   # halfway to the failed rate
    t += PROBE_S + PROBE_GRACE_S + 0.1
    a.update(t, LinkReport(150e3, 0.0, 120e3, RATES))
    assert a.state.proven_bps == pytest.approx(165e3)
    # proven under the failed rate: the same limit found again, so the back-off (now 4 s) stands for the next fail
    assert a.state.probe_backoff == 2 * HOLD_MIN
    # an estimate cut disproves the rate: back to what the estimate says (down at once if congested)
    assert a.update(t + 0.25, LinkReport(100e3, 0.0, 120e3, RATES)) == (0, 1)
    assert a.state.proven_bps == 0


def test_allocator_probe_stops_when_the_estimate_is_cut():
    a = Allocator()
    a.update(0.0, LinkReport(150e3, 0.0, 0, RATES))
    a.update(0.25, LinkReport(150e3, 0.0, 120e3, RATES))
    assert a.probe_rate(0.3) > 0
    a.update(0.5, LinkReport(130e3, 0.0, 120e3, RATES))                          # the receiver saw its queue grow
    assert a.probe_rate(0.5) == 0 and a.state.proven_bps == 0
    a.update(1.5, LinkReport(150e3, 0.0, 120e3, RATES))
    assert a.probe_rate(1.5) == 0                                   # backing off


def test_allocator_probe_fails_on_nacks():
    a = Allocator()
    a.update(0.0, LinkReport(150e3, 0.0, 0, RATES, nacks=10))
    a.update(0.25, LinkReport(150e3, 0.0, 120e3, RATES, nacks=10))
    assert a.probe_rate(0.3) > 0
    a.update(0.5, LinkReport(150e3, 0.0, 120e3, RATES, nacks=12))                # two: a reordering, not an overflow
    assert a.probe_rate(0.5) > 0
    a.update(0.75, LinkReport(150e3, 0.0, 120e3, RATES, nacks=20))               # the probe overflowed a queue
    assert a.probe_rate(0.75) == 0
    a.update(PROBE_S + PROBE_GRACE_S + 0.5, LinkReport(150e3, 0.0, 120e3, RATES, nacks=20))
    assert a.state.proven_bps == 0 and a.probe_rate(PROBE_S + PROBE_GRACE_S + 0.5) == 0


def test_allocator_probes_from_the_bottom_when_the_estimate_starved():
    # an estimate under the lowest layer (it cannot exceed 1.5x what little arrives): stay, but probe
    a = Allocator()
    assert a.update(0.0, LinkReport(40e3, 0.0, 0, RATES)) == (0, 0)
    t, probed = 0.0, []
    for _ in range(12):
        t += 0.25
        assert a.update(t, LinkReport(40e3, 0.0, 55e3, RATES)) == (0, 0)
        probed.append(a.state.probe_total_bps if a.probe_window(t) else 0)
    assert probed[0] > 0 and max(probed) > probed[0]   # proven, the next probe goes higher


def test_allocator_backs_off_after_a_failed_upgrade_and_respects_cap():
    a = Allocator()
    a.update(0.0, LinkReport(500e3, 0.0, 0, RATES))
    t = 0.0
    switches = 0
    last = a.state.current
    for _ in range(400):                                            # estimate oscillating every 1.5 s
        t += 0.25
        estimate = 800e3 if int(t / 1.5) % 2 == 0 else 480e3
        q = a.update(t, LinkReport(estimate, 0.0, 0, RATES))
        if q != last:
            switches += 1
            last = q
    assert switches <= 12, f"{switches} switches in 100 s: flapping"
    capped = Allocator()
    assert capped.update(0.0, LinkReport(5e6, 0.0, 0, RATES, cap=1)) == (1, 2)


def test_allocator_heavy_loss_cuts_the_rate():
    a = Allocator()
    a.update(0.0, LinkReport(2e6, 0.0, 0, RATES))
    assert a.update(1.0, LinkReport(2e6, 0.3, 1.5e6, RATES)) < (2, 2)


def test_allocator_reflex_sheds_resolution_where_no_temporal_layer_can_go():
    single = [[60e3, 90e3, 150e3], [200e3, 300e3, 500e3], [1.5e6]]      # ladder rungs, then the source
    a = Allocator()
    assert a.update(0.0, LinkReport(None, 0.0, 0.0, single)) == (2, 0)
    assert a.update(0.25, LinkReport(2.2e6, 0.0, 1.5e6, single)) == (2, 0)
    # what fits in 15 % of 1.5M, with room for its keyframe (nothing to thin meanwhile)
    assert a.update(0.5, LinkReport(2.2e6, 0.0, 1.5e6, single, reflex=True)) == (0, 1)
    c = Allocator()                       # already switching to the 360p rung, still sent the 1.5M source
    c.update(0.0, LinkReport(None, 0.0, 0.0, single))
    c.update(0.25, LinkReport(2.2e6, 0.0, 1.5e6, single))
    assert c.update(0.5, LinkReport(1.0e6, 0.0, 1.5e6, single, nacks=10)) == (1, 1)
    assert c.update(0.55, LinkReport(1.0e6, 0.0, 1.5e6, single, nacks=30, reflex=True)) == (1, 1)   # it could thin
    assert c.update(0.6, LinkReport(1.0e6, 0.0, 1.5e6, single, nacks=40, reflex=True, forwarding_single=True)) == (0, 1)
    b = Allocator()                                                   # with temporal layers: the consumer thins
    b.update(0.0, LinkReport(None, 0.0, 0.0, RATES))
    assert b.update(0.5, LinkReport(2.2e6, 0.0, 1.5e6, RATES, reflex=True)) == (2, 2)


def test_allocator_big_step_down_waits_for_loss_or_a_deep_cut():
    single = [[60e3, 90e3, 150e3], [200e3, 300e3, 500e3], [1.5e6]]      # ladder rungs, then the source
    a = Allocator()
    a.update(0.0, LinkReport(None, 0.0, 0.0, single))
    a.update(0.25, LinkReport(2.0e6, 0.0, 1.5e6, single, nacks=0))
    assert a.update(0.5, LinkReport(1.2e6, 0.0, 1.5e6, single, nacks=0)) == (2, 0)      # a shallow dip, nothing lost
    # ... with NACKs: down, with room for the lower layer's keyframe (the estimate still lags the link)
    assert a.update(0.75, LinkReport(1.2e6, 0.0, 1.5e6, single, nacks=5)) == (1, 2)
    b = Allocator()
    b.update(0.0, LinkReport(None, 0.0, 0.0, single))
    b.update(0.25, LinkReport(2.0e6, 0.0, 1.5e6, single))
    assert b.update(0.5, LinkReport(0.9e6, 0.0, 1.5e6, single)) == (1, 1)               # a deep cut: down at once


def lossy_run(a: Allocator, seconds: float, estimate: float, floor: float, loss_of=lambda t: 0.03,
              nack_share_of=lambda t: 0.03, pkts_per_s: int = 100) -> list[tuple[float, tuple[int, int]]]:
    """Reports every 0.25 s from a link that loses `loss_of(t)` at random, with the viewer NACKing that share
    of what it is sent; the estimate stays flat (Chromium's REMB on such a link)."""
    t, sent, nacks, out = 0.0, 0, 0, []
    while t < seconds:
        t += 0.25
        sent += pkts_per_s // 4
        nacks += round(nack_share_of(t) * pkts_per_s / 4 + (t * 4 % 2) * 0.5)  # uneven, as random loss is
        out.append((t, a.update(t, LinkReport(estimate, loss_of(t), 120e3, RATES, nacks=nacks,
                                               loss_floor=floor, sent_packets=sent))))
    return out


def test_allocator_probes_succeed_on_a_link_with_random_loss():
    # 3 % of packets lost at random, no queue: the probes must still prove their rates (loss and NACKs at the
    # link's own level are not a queue overflowing)
    a = Allocator()
    a.update(0.0, LinkReport(150e3, 0.03, 0, RATES, loss_floor=0.03))
    out = lossy_run(a, 10.0, 150e3, floor=0.03)
    assert out[-1][1] >= (1, 1) and a.state.switches_up >= 1
    # the same link judged as if its loss were congestion (no floor known): stuck at the bottom
    b = Allocator()
    b.update(0.0, LinkReport(150e3, 0.03, 0, RATES))
    assert lossy_run(b, 10.0, 150e3, floor=0.0)[-1][1] == (0, 2)


def test_allocator_probe_fails_when_loss_rises_above_the_links_own():
    steady = Allocator()
    steady.update(0.0, LinkReport(150e3, 0.03, 0, RATES, loss_floor=0.03))
    lossy_run(steady, 0.75, 150e3, floor=0.03)
    assert steady.probe_rate(0.75) > 0                               # the link's own loss: the probe goes on
    a = Allocator()
    a.update(0.0, LinkReport(150e3, 0.03, 0, RATES, loss_floor=0.03))
    # the probe overflows a queue: loss and NACKs climb to 9 % while it runs
    lossy_run(a, 0.75, 150e3, floor=0.03, loss_of=lambda t: 0.03 if t < 0.5 else 0.09,
              nack_share_of=lambda t: 0.03 if t < 0.5 else 0.09)
    assert a.probe_rate(0.75) == 0 and a.state.probe_blocked_until > 0.75 and a.state.ceiling_bps > 0


def test_above_the_lowest_resolution_no_jerky_frame_rates():
    from sfu.allocation.allocator import qualities
    fps = [[5.0, 10.0, 20.0]] * 3                                           # a 20 fps camera, L1T3
    assert [q for q, _ in qualities(RATES, fps)] == [(0, 0), (0, 1), (0, 2), (1, 2), (2, 2)]
    assert [q for q, _ in qualities(RATES)] == [(0, 0), (0, 1), (0, 2), (1, 1), (1, 2), (2, 1), (2, 2)]
    slow = [[2.5, 5.0, 10.0]] * 3                                           # a 10 fps source: its full rate stays
    assert (2, 2) in [q for q, _ in qualities(RATES, slow)]
    # 1 Mbit/s: 360p at 20 fps, not 720p at 10
    a = Allocator()
    assert a.update(0.0, LinkReport(1.0e6, 0.0, 0.0, RATES, frame_rates=fps)) == (1, 2)



def test_a_failed_probe_stops_capping_probes_once_the_estimate_passes_it():
    # a probe that failed while a link was capped caps the next probes; once the estimate has grown past that
    # rate (the cap was lifted) it says nothing any more, and probing resumes after the back-off
    a = Allocator()
    a.update(0.0, LinkReport(150e3, 0.0, 0, RATES))
    lossy_run(a, 0.75, 150e3, floor=0.0, loss_of=lambda t: 0.0 if t < 0.5 else 0.09,
              nack_share_of=lambda t: 0.0 if t < 0.5 else 0.09)
    ceiling = a.state.ceiling_bps
    assert ceiling > 0 and a.probe_rate(0.75) == 0
    blocked_until = a.state.probe_blocked_until
    t, probed_at = 0.75, None
    while t < blocked_until + 2.0 and probed_at is None:
        t += 0.25
        a.update(t, LinkReport(1.1 * ceiling, 0.0, 120e3, RATES))   # the estimate crept past the failed rate
        if a.probe_rate(t):
            probed_at = t
    assert probed_at is not None and probed_at <= blocked_until + 0.25, (probed_at, blocked_until)
    assert a.state.probe_total_bps > 1.1 * ceiling
    # while the estimate stays under the failed rate, the ceiling still holds probes halfway to it
    b = Allocator()
    b.update(0.0, LinkReport(150e3, 0.0, 0, RATES))
    lossy_run(b, 0.75, 150e3, floor=0.0, loss_of=lambda t: 0.0 if t < 0.5 else 0.09,
              nack_share_of=lambda t: 0.0 if t < 0.5 else 0.09)
    t = 0.75
    while t < b.state.probe_blocked_until + 2.0:
        t += 0.25
        b.update(t, LinkReport(0.9 * b.state.ceiling_bps, 0.0, 120e3, RATES))
        assert b.probe_rate(t) == 0 or b.state.probe_total_bps < b.state.ceiling_bps


def test_a_noisy_interval_of_a_lossy_links_own_loss_does_not_move_it_down():
    # a 3 % link's half-second intervals read 11 % now and then: its own loss, not congestion
    a = Allocator()
    assert a.update(0.0, LinkReport(1.0e6, 0.03, 0, RATES, loss_floor=0.03)) == (1, 2)
    assert a.update(0.5, LinkReport(1.0e6, 0.11, 450e3, RATES, loss_floor=0.03)) == (1, 2)
    # the same 11 % on a link that loses nothing of its own is heavy loss: down at once
    b = Allocator()
    assert b.update(0.0, LinkReport(1.0e6, 0.0, 0, RATES)) == (1, 2)
    assert b.update(0.5, LinkReport(1.0e6, 0.11, 450e3, RATES)) < (1, 2)


def test_a_probe_aborted_for_a_queue_stops_at_once_and_counts_as_failed():
    a = Allocator()
    a.update(0.0, LinkReport(150e3, 0.0, 0, RATES))
    lossy_run(a, 0.25, 150e3, floor=0.0, loss_of=lambda t: 0.0, nack_share_of=lambda t: 0.0)
    window = a.probe_window(0.25)
    assert window is not None and window[0] <= 0.25 < window[1] < window[2] and a.probe_rate(0.3) > 0
    a.abort_probe(0.4)
    assert a.probe_window(0.4) is None and a.probe_rate(0.4) == 0
    assert a.state.probe_blocked_until > 0.4 and a.state.ceiling_bps > 0 and a.state.probe_wins == 0
    a.abort_probe(0.5)                                   # nothing under way: nothing changes
    assert a.state.probe_blocked_until == pytest.approx(0.4 + HOLD_MIN)


def test_a_probe_proves_what_arrived_not_what_it_aimed_at():
    def proven_after(arrived):
        a = Allocator()
        a.update(0.0, LinkReport(150e3, 0.0, 0, RATES))
        t, proven = 0.0, 0.0
        while t < 3.0 and not proven:
            t += 0.25
            if arrived is not None and a.probe_window(t) is not None and t >= a.probe_window(t)[2]:
                a.probe_arrived(arrived)
            a.update(t, LinkReport(150e3, 0.0, 120e3, RATES))
            proven = a.state.proven_bps
        return proven
    aimed = proven_after(None)
    assert aimed > 160e3                         # without feedback on it, the probe proves its aim
    assert proven_after(155e3) == 155e3          # with it, only what arrived
