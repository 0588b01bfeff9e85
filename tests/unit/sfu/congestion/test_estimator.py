"""The send-side estimator over simulated links: a clean link, a queue, random loss, both, a policer, and probes.

Every run is seeded and driven by injected time (link_model.py): the figures asserted are what GoogCC-like
estimation should show, with margins for the model's randomness.
"""
from __future__ import annotations

import pytest

from sfu.congestion.delay_based import BandwidthUsage
from sfu.congestion.estimator import SendSideEstimator, ProbeOutcome
from sfu.rtp.transport_feedback import build_feedback, parse_feedback

from .link_model import LinkModel, Simulation


def simulate(capacity: float, start_bps: float, until: float, send=None, **link) -> Simulation:
    sim = Simulation(SendSideEstimator(start_bps=start_bps), LinkModel(capacity, **link))
    sim.run(until, send or sim.follow_estimate())
    return sim


def first_sample_time(sim: Simulation, predicate) -> float:
    return next(s.time for s in sim.samples if predicate(s))


# (a) a clean link

def test_clean_link_the_estimate_climbs_to_the_capacity_and_settles_there() -> None:
    capacity = 1.5e6
    sim = simulate(capacity, 500e3, 40.0)
    est = sim.estimator
    reached = first_sample_time(sim, lambda s: s.estimate >= capacity)
    assert sim.overuse_times, "the estimate never met the link's capacity"
    assert sim.estimates(10.0, 10.1)[0] > 500e3 * 1.08 ** 8   # ~8 %/s while the capacity is unknown
    assert 12.0 < reached < 18.0
    assert min(sim.overuse_times) >= reached - 0.2             # no overuse before we sent more than the link takes
    assert 0.85 * capacity < sim.mean_estimate(25.0, 40.0) < 1.05 * capacity
    assert 0.8 * capacity < min(sim.estimates(20.0, 40.0)) and max(sim.estimates(20.0, 40.0)) < 1.1 * capacity
    assert est.loss.cuts == 0 and est.loss_level == 0.0


def test_clean_link_an_app_limited_sender_never_sees_overuse_and_keeps_its_estimate() -> None:
    capacity = 2e6
    sim = simulate(capacity, 500e3, 20.0, send=lambda now: 0.6 * capacity)
    assert sim.overuse_times == []
    assert min(sim.estimates(0.0, 20.0)) >= 500e3
    # what the estimate may claim is bounded by what was tried: 1.5 x acked + 10 kbit/s
    assert sim.estimates(19.9, 20.0)[0] == pytest.approx(1.5 * 0.6 * capacity + 10e3, rel=0.02)


# (b) a queue builds

@pytest.mark.parametrize("loss", [0.0, 0.03])
def test_sending_above_capacity_is_detected_within_a_second_and_the_estimate_drops_under_it(loss: float) -> None:
    capacity = 1e6
    sim = simulate(capacity, 1.2e6, 7.0, send=lambda now: 0.8 * capacity if now < 5.0 else 1.3 * capacity,
                   loss=loss, seed=4)
    assert sim.estimates(4.9, 5.0)[0] > 1.1 * capacity       # it believed the link bigger than it is
    assert sim.overuse_times and all(t > 5.0 for t in sim.overuse_times)
    detected = min(sim.overuse_times)
    assert detected - 5.0 < 0.5                             # the queue began at 5 s; seen in ~0.2 s
    assert sim.estimates(6.0, 6.1)[0] < 0.9 * capacity      # β x what arrived: ~0.85 of the capacity
    assert sim.estimator.overuse_events >= 1


# (c) random loss, no queue

@pytest.mark.parametrize("loss", [0.03, 0.05])
def test_random_loss_alone_does_not_lower_the_estimate_and_its_level_is_measured(loss: float) -> None:
    capacity = 1.5e6
    sim = simulate(capacity, 500e3, 40.0, loss=loss, seed=2)
    est = sim.estimator
    assert sim.overuse_times, "the estimate never reached the link's capacity"
    first_overuse = min(sim.overuse_times)
    before_queue = sim.estimates(0.0, first_overuse)
    assert est.loss.cuts == 0
    assert min(sim.estimates(0.0, 40.0)) >= 500e3
    assert all(later >= earlier for earlier, later in zip(before_queue, before_queue[1:]))  # it only climbs
    assert first_overuse > 14.0 and max(before_queue) > 0.9 * capacity  # it climbed to the link, not a queue
    assert sim.mean_estimate(30.0, 40.0) > 0.85 * capacity
    # a 10 s average of ~1,300 packets: its noise is ~0.4 % at 5 % loss (over 40 seeds: bias -0.3 %, worst 1.1 %)
    assert est.loss_level == pytest.approx(loss, abs=0.015)
    assert est.interval_loss is not None and est.interval_loss < 0.15


# (e) loss rising with the rate

def test_a_policer_cuts_on_loss_without_any_queue() -> None:
    capacity = 1e6
    sim = simulate(capacity, 2e6, 10.0, queue_limit=0.005)  # a tiny buffer: no delay grows, packets are dropped
    est = sim.estimator
    assert est.overuse_events == 0
    assert est.loss.cuts >= 1
    assert max(sim.estimates(1.0, 10.0)) < 1.15 * capacity   # one cut, to what the policer let through
    assert est.loss_level < 0.02  # the policer's drops are not taken for the link's own loss


def test_loss_rising_with_the_rate_moves_down_within_a_second() -> None:
    capacity = 1e6
    sim = Simulation(SendSideEstimator(start_bps=800e3), LinkModel(capacity, queue_limit=0.005))
    sim.run(5.0, lambda now: 0.8 * capacity)
    before = sim.estimator.estimate(5.0)
    sim.run(6.0, lambda now: 1.5 * capacity)
    assert sim.estimator.loss.cuts >= 1 and sim.estimator.overuse_events == 0
    assert sim.estimator.estimate(6.0) < min(0.9 * before, 1.05 * capacity)


# (f) probes

def probe(capacity: float, loss: float, probe_bps: float, seed: int = 1, **link) -> tuple[Simulation, float]:
    sim = Simulation(SendSideEstimator(start_bps=600e3), LinkModel(capacity, loss=loss, seed=seed, **link))
    sim.run(10.0, lambda now: 600e3)
    sim.run(11.0, lambda now: probe_bps, is_probe=True)
    return sim, probe_bps


@pytest.mark.parametrize("loss", [0.03, 0.05])
def test_a_probe_on_a_lossy_link_without_a_queue_succeeds(loss: float) -> None:
    sim, aim = probe(2e6, loss, 1.2e6, seed=3)
    est = sim.estimator
    assert est.probe_verdict(11.0, 10.0, 11.0, aim).outcome is ProbeOutcome.PENDING  # its feedback is due
    sim.run(11.6, lambda now: 600e3)
    verdict = est.probe_verdict(11.6, 10.0, 11.0, aim)
    assert verdict.succeeded, verdict
    assert verdict.loss > 0.01 and verdict.loss_level == pytest.approx(loss, abs=0.015)
    assert verdict.acked_bps == pytest.approx(aim * (1 - loss), rel=0.05)
    before = est.estimate(11.6)
    est.accept_probe(11.6, verdict)
    assert est.estimate(11.6) == pytest.approx(verdict.acked_bps, rel=0.01) and est.estimate(11.6) > before


@pytest.mark.parametrize("loss", [0.0, 0.03])
def test_a_probe_that_builds_a_queue_fails(loss: float) -> None:
    sim, aim = probe(1e6, loss, 1.5e6)
    est = sim.estimator
    verdict = est.probe_verdict(11.0, 10.0, 11.0, aim)
    assert verdict.outcome is ProbeOutcome.FAILED and verdict.reason == "overuse"  # at once: no need to wait
    assert verdict.acked_bps == pytest.approx(1e6 * (1 - loss), rel=0.05)
    before = est.estimate(11.0)
    est.accept_probe(11.0, verdict)
    assert est.estimate(11.0) == before


def test_a_probe_into_a_policer_fails_on_loss_above_the_links_own() -> None:
    sim, aim = probe(1e6, 0.0, 1.5e6, queue_limit=0.005)
    sim.run(11.6, lambda now: 600e3)
    verdict = sim.estimator.probe_verdict(11.6, 10.0, 11.0, aim)
    assert verdict.outcome is ProbeOutcome.FAILED and verdict.reason == "loss above the link's own level"
    assert verdict.loss == pytest.approx(1 / 3, abs=0.03)


def test_a_probe_whose_rate_did_not_arrive_fails() -> None:
    sim, _ = probe(2e6, 0.0, 1.2e6)
    sim.run(11.6, lambda now: 600e3)
    verdict = sim.estimator.probe_verdict(11.6, 10.0, 11.0, target_bps=2.0e6)  # it aimed higher than it sent
    assert verdict.outcome is ProbeOutcome.FAILED and verdict.reason == "the rate that arrived fell short"
    nothing = sim.estimator.probe_verdict(11.6, 20.0, 21.0)
    assert nothing.outcome is ProbeOutcome.FAILED


# the estimator's own bookkeeping

def test_feedback_silence_halves_the_reported_estimate_until_feedback_returns() -> None:
    est = SendSideEstimator(start_bps=1e6)
    for seq in range(10):
        est.on_packet_sent(seq * 0.01, seq, 1200)
    est.on_feedback(0.2, parse_feedback(build_feedback(1, 2, 0, 0, 0, [0.03 + seq * 0.01 for seq in range(10)])))
    for seq in range(10, 300):
        est.on_packet_sent(seq * 0.01, seq, 1200)
    assert est.estimate(1.1) == 1_000_000
    assert est.estimate(2.5) == 500_000
    est.on_feedback(2.6, parse_feedback(build_feedback(1, 2, 10, 0, 1, [0.13 + i * 0.01 for i in range(290)])))
    assert est.estimate(2.6) >= 1_000_000


def test_rtt_and_read_only_figures() -> None:
    est = SendSideEstimator(start_bps=700e3, min_bps=100e3, max_bps=5e6)
    assert est.rtt is None and est.interval_loss is None and est.acked_bps() is None
    assert est.delay_state is BandwidthUsage.NORMAL and est.estimate(0.0) == 700_000
    est.on_rtt(1.0, 0.08)
    assert est.rtt == 0.08 and est.rate.rtt == 0.08
    assert est.delay_based_bps == 700e3 and est.loss_based_bps == 700e3
    est.on_feedback(1.0, parse_feedback(build_feedback(1, 2, 0, 0, 0, [0.0])))  # nothing sent: ignored
    assert est.estimate(1.0) == 700_000


def test_the_dump_says_what_the_estimate_is_made_of() -> None:
    sim = simulate(1.5e6, 500e3, 10.0, loss=0.03, seed=3)
    d = sim.estimator.dump(10.0)
    assert d["estimate_bps"] == min(d["delay_based_bps"], d["loss_based_bps"]) == sim.estimator.estimate(10.0)
    assert d["delay_state"] in ("normal", "underusing", "overusing") and d["loss_cuts"] == 0
    assert d["loss_level"] == pytest.approx(0.03, abs=0.015) and d["acked_bps"] > 0


def test_a_probe_under_way_shows_its_queue_within_a_few_hundred_milliseconds() -> None:
    # a thin link: 300 kbit/s carrying 200; a probe to 450 builds a queue the audio would wait behind
    sim = Simulation(SendSideEstimator(start_bps=250e3), LinkModel(300e3, loss=0.01, seed=2))
    sim.run(10.0, lambda now: 200e3)
    est = sim.estimator
    seen_at = None
    while sim.time < 11.0 and seen_at is None:
        sim.run(sim.time + 0.05, lambda now: 450e3, is_probe=True)
        if est.probe_queueing(10.0, sim.time):
            seen_at = sim.time
    assert seen_at is not None and seen_at < 10.4, seen_at     # from the first feedback on the rise
    assert sim.link.queue_delay(seen_at) < 0.2                  # a whole second of it would queue ~0.5 s
    # a probe the link has room for shows none
    roomy = Simulation(SendSideEstimator(start_bps=600e3), LinkModel(2e6, loss=0.03, seed=3))
    roomy.run(10.0, lambda now: 600e3)
    roomy.run(11.0, lambda now: 1.2e6, is_probe=True)
    assert not any(roomy.estimator.probe_queueing(10.0, t) for t in (10.3, 10.6, 11.0))
