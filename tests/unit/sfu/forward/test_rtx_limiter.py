"""The RTX budget and the resend gap: what a viewer's NACKs may cost, on a clean link and a lossy one."""
from __future__ import annotations

from sfu.forward.rtx_limiter import RtxLimiter


def test_rtx_limiter_suppresses_repeats_and_enforces_budget():
    r = RtxLimiter(min_interval=0.1, max_per_seq=2, budget_ratio=0.25, min_budget_bps=80_000, burst_s=0.25)
    assert r.allow(5, 1000, 0.0, 1_000_000)
    assert not r.allow(5, 1000, 0.05, 1_000_000)       # same seq again within the interval
    assert r.allow(5, 1000, 0.2, 1_000_000)
    assert not r.exhausted
    assert not r.allow(5, 1000, 0.4, 1_000_000)        # max per seq reached
    assert r.exhausted                                 # ... only a keyframe repairs that viewer now
    assert r.allow(6, 1000, 0.4, 1_000_000) and not r.exhausted
    # a storm of distinct NACKs: bounded by 25 % of 1 Mbit/s
    sent = sum(r.allow(100 + i, 1200, 1.0 + i * 0.001, 1_000_000) for i in range(1000))
    assert 0 < sent * 1200 * 8 <= 0.25 * 1_000_000 * (1.0 + 0.25) + 2400 * 8


def test_rtx_limiter_lets_a_keyframe_overdraw_one_burst():
    r = RtxLimiter(min_interval=0.1, max_per_seq=3, budget_ratio=0.25, min_budget_bps=80_000, burst_s=0.25)
    sent = sum(r.allow(i, 1000, 0.0, 0) for i in range(10))          # the bucket: 2500 bytes
    assert sent == 2 and not r.allow(50, 1000, 0.0, 0)
    urgent = sum(r.allow(100 + i, 1000, 0.0, 0, urgent=True) for i in range(10))
    assert urgent == 3                                                  # one more burst, no further
    assert not r.allow(200, 1000, 0.01, 0) and r.allow(200, 1000, 0.3, 0) is False  # paid back first
    assert r.allow(200, 1000, 0.6, 0)


def test_a_resend_is_not_repeated_within_the_links_round_trip():
    r = RtxLimiter(min_interval=0.05)
    assert r.allow(7, 1000, 0.0, 1e6) and r.allow(7, 1000, 0.06, 1e6)      # RTT unknown: the fixed gap
    r = RtxLimiter(min_interval=0.05)
    r.observe(0.2, 0.0)                                                    # a 200 ms rural link
    assert r.allow(7, 1000, 0.0, 1e6)
    assert not r.allow(7, 1000, 0.1, 1e6)    # the viewer NACKed before our resend could reach it
    assert r.allow(7, 1000, 0.21, 1e6)       # a round trip later the resend was lost too: again
    r.observe(0.001, 0.0)                                                  # a LAN: not at once either
    assert not r.allow(7, 1000, 0.215, 1e6) and r.allow(7, 1000, 0.23, 1e6)
    r.observe(5.0, 0.0)                                                    # an RTT inflated by a queue
    assert r.allow(8, 1000, 1.0, 1e6) and r.allow(8, 1000, 1.51, 1e6)


def test_the_budget_grows_with_the_links_own_loss():
    def resendable_bps(loss: float) -> float:
        """Distinct NACKs over 10 s from a 1 Mbit/s stream, each granted or refused: what got through."""
        r = RtxLimiter(budget_ratio=0.15, min_budget_bps=100_000)
        r.observe(0.05, loss)
        granted = sum(r.allow(i, 1200, i * 0.001, 1e6) for i in range(10_000))
        return granted * 1200 * 8 / 10
    clean, lossy = resendable_bps(0.0), resendable_bps(0.05)
    assert 140e3 <= clean <= 160e3                       # 15 % of the stream: a congested link is not fed
    assert lossy >= 2.5 * 0.05 / 0.95 * 1e6              # 5 % random loss: every loss resent, some twice
    assert resendable_bps(0.4) <= 0.5e6 * 1.01           # never more than half the stream
    thin = RtxLimiter(budget_ratio=0.15, min_budget_bps=100_000)
    assert thin.budget_bps(60e3) == 100_000              # a thin layer still gets its keyframe repaired
