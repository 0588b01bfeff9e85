"""What was sent, matched with feedback: unwrapping, duplicates, bounds, the acked rate and window sums."""
from __future__ import annotations

import pytest

from sfu.congestion.send_history import AckedBitrate, ReferenceClock, SendHistory, unwrap_closest
from sfu.rtp.transport_feedback import REFERENCE_TICK_S, TransportFeedback


def feedback(base: int, arrivals: list, ticks: int = 100) -> TransportFeedback:
    return TransportFeedback(1, 2, base & 0xFFFF, ticks, 0, arrivals)


def test_unwrap_closest() -> None:
    assert unwrap_closest(2, 65534, 1 << 16) == 65538
    assert unwrap_closest(65534, 65538, 1 << 16) == 65534
    assert unwrap_closest(5, 5, 1 << 16) == 5


def test_sequence_numbers_unwrap_across_the_16_bit_wrap() -> None:
    history = SendHistory()
    for i in range(12):
        history.on_packet_sent(i * 0.01, (65530 + i) & 0xFFFF, 1000 + i)
    result = history.on_feedback(feedback(65534, [0.001, None, 0.021, 0.031]))
    assert [p.seq for p in result.received] == [65534, 65536, 65537]
    assert [p.size for p in result.received] == [1004, 1006, 1007]
    assert (result.lost, result.reported, result.loss) == (1, 4, 0.25)
    assert result.received[0].arrival == pytest.approx(100 * REFERENCE_TICK_S + 0.001)
    assert result.last_send_time == pytest.approx(0.07)


def test_a_packet_reported_twice_counts_once_and_a_late_arrival_is_acknowledged_once() -> None:
    history = SendHistory()
    for seq in range(5):
        history.on_packet_sent(seq * 0.01, seq, 500)
    first = history.on_feedback(feedback(0, [0.0, None, 0.02]))
    again = history.on_feedback(feedback(0, [0.0, 0.015, 0.02, 0.03]))
    assert (first.lost, first.reported) == (1, 3)
    assert [p.seq for p in again.received] == [1, 3]  # 1 arrived late; 0 and 2 were acknowledged already
    assert (again.lost, again.reported) == (0, 1)       # only 3 is newly reported


def test_feedback_about_unknown_or_forgotten_packets_is_ignored() -> None:
    history = SendHistory(max_age=1.0)
    for i in range(300):
        history.on_packet_sent(i * 0.01, i, 100)
    assert len(history) <= 101                  # 1 s at 100 packets/s
    result = history.on_feedback(feedback(0, [0.0] * 50))
    assert (result.reported, result.received) == (0, [])
    history = SendHistory(max_packets=64)
    for i in range(1000):
        history.on_packet_sent(i * 0.001, i & 0xFFFF, 100)
    assert len(history) <= 64
    assert SendHistory().on_feedback(feedback(0, [0.0])).reported == 0


def test_reference_time_unwraps_over_its_24_bit_wrap() -> None:
    clock = ReferenceClock()
    last = (1 << 24) - 1
    assert clock.seconds(last) == pytest.approx(last * REFERENCE_TICK_S)
    assert clock.seconds(0) == pytest.approx((last + 1) * REFERENCE_TICK_S)
    assert clock.seconds(last) == pytest.approx(last * REFERENCE_TICK_S)  # a late, older report


def test_acked_bitrate_is_what_arrived_per_second_over_the_window() -> None:
    acked = AckedBitrate(window=0.5)
    assert acked.bps() is None
    for i in range(200):
        acked.add(10.0 + i * 0.01, 1000)  # 1000 bytes every 10 ms: 800 kbit/s
    assert acked.bps() == pytest.approx(800_000, rel=1e-6)
    for i in range(100):
        acked.add(12.0 + i * 0.02, 1000)  # the link slowed to 400 kbit/s
    assert acked.bps() == pytest.approx(400_000, rel=1e-6)
    short = AckedBitrate()
    short.add(1.0, 1000)
    short.add(1.05, 1000)
    assert short.bps() is None  # 50 ms of arrivals do not make a rate


def test_window_stats_sum_up_a_probe_window() -> None:
    history = SendHistory()
    # 1.2 Mbit/s for 1 s (1200-byte packets every 8 ms) into a 1 Mbit/s link: a queue builds, every 10th is lost
    for i in range(125):
        history.on_packet_sent(i * 0.008, i, 1200, is_probe=i % 2 == 0)
    arrivals = [None if i % 10 == 9 else 0.02 + (i + 1) * 0.0096 for i in range(125)]
    history.on_feedback(feedback(0, arrivals[:100], ticks=0))
    stats = history.window_stats(0.0, 1.0)
    assert (stats.sent, stats.probes, stats.received, stats.lost, stats.unreported) == (125, 63, 90, 10, 25)
    assert stats.loss == pytest.approx(0.1)
    assert stats.sent_bps == pytest.approx(1_200_000, rel=1e-6)
    assert stats.acked_bps == pytest.approx(0.9 * 1_000_000, rel=0.02)  # the link's rate, less what was lost
    assert stats.delay_growth == pytest.approx(0.0016 * 80, abs=0.002)  # 1.6 ms more per packet: 80 packets apart
    quiet = history.window_stats(5.0, 6.0)
    assert (quiet.sent, quiet.sent_bps, quiet.acked_bps, quiet.delay_growth) == (0, None, None, None)


def test_a_number_older_than_the_history_is_not_kept() -> None:
    history = SendHistory(max_packets=10)
    for seq in range(100, 130):
        history.on_packet_sent(seq * 0.01, seq, 100)
    history.on_packet_sent(1.3, 50, 100)
    assert len(history) <= 10 and history.on_feedback(feedback(50, [0.0])).reported == 0



def test_queue_growth_compares_the_latest_arrivals_with_those_before_a_rise() -> None:
    h = SendHistory()
    assert h.queue_growth(1.0, 2.0) is None
    # 20 ms one-way until t=1.0 (one packet 40 ms late: jitter), then each packet 10 ms later than the last
    sends = [(i * 0.02, 0.02 + (0.02 if i == 30 else 0.0) + max(0, i - 50) * 0.01) for i in range(60)]
    for seq, (t, _) in enumerate(sends):
        h.on_packet_sent(t, seq, 1000)
    h.on_feedback(feedback(0, [t + d for t, d in sends], ticks=0))
    assert h.queue_growth(1.0, 1.2) == pytest.approx(0.07, abs=1e-6)   # the quickest of the latest three
    assert h.queue_growth(0.5, 0.9) == pytest.approx(0.0, abs=1e-6)    # the late packet alone is no queue
    assert h.queue_growth(1.0, 1.03) is None                            # too few arrivals since the rise
