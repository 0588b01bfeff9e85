"""Pacing one viewer's packets: at the rate, in priority order, a keyframe spread, probes only into room."""
from __future__ import annotations

import pytest

from sfu.forward.pacer import AUDIO, BURST_S, MAX_QUEUE_S, PROBE, RETRANSMISSION, VIDEO, Pacer

RATE = 1_000_000   # pacing rate, bit/s


def drain(p: Pacer, start: float, until: float, step: float = 0.001) -> list[tuple[float, object]]:
    out, t = [], start
    while t <= until:
        out += [(t, pkt) for pkt, _, _ in p.due(t)]
        t = round(t + step, 6)
    return out


def test_a_keyframe_leaves_at_the_pacing_rate_not_at_once():
    p: Pacer = Pacer(RATE)
    sent_now = [p.offer(0.0, VIDEO, i, 1250) for i in range(40)]            # 40 x 1250 B = 400 kbit
    assert sent_now.count(True) <= 2 and len(p) == 40 - sent_now.count(True)
    out = drain(p, 0.0, 1.0)
    assert [pkt for _, pkt in out] == list(range(sent_now.count(True), 40))   # in order, none lost
    assert 0.35 <= out[-1][0] <= 0.42                                        # 400 kbit at 1 Mbit/s
    assert p.next_due(1.0) is None


def test_audio_never_waits_and_retransmissions_go_before_video():
    p: Pacer = Pacer(RATE)
    for i in range(10):
        p.offer(0.0, VIDEO, f"v{i}", 1250)
    assert p.offer(0.001, AUDIO, "a", 120)                                   # at once, behind no one
    assert not p.offer(0.001, RETRANSMISSION, "r", 1250)
    order = [pkt for _, pkt in drain(p, 0.002, 0.2)]
    assert order[0] == "r" and order[1:] == [f"v{i}" for i in range(10) if f"v{i}" in order[1:]]


def test_probes_are_paced_after_media_and_refused_beyond_their_queue():
    p: Pacer = Pacer(RATE)
    assert p.offer(0.0, PROBE, "p0", 1000)                                   # room: at once
    queued = [p.offer(0.0, PROBE, f"p{i}", 1000) for i in range(1, 12)]
    assert not any(queued) and p.probes_refused == 4   # 60 ms of 1 Mbit/s (7,500 bytes) queued, the rest refused
    p.offer(0.0, VIDEO, "v", 1250)
    out = drain(p, 0.001, 0.2)
    order = [pkt for _, pkt in out]
    assert order == ["v"] + [f"p{i}" for i in range(1, 8)]                  # media first, then the probes
    times = [t for t, _ in out]
    assert times[-1] == pytest.approx(0.066, abs=0.006)                      # paced: 9,250 bytes at 1 Mbit/s
    assert len(p) == 0
    q: Pacer = Pacer(RATE)
    q.offer(0.0, VIDEO, "v", 1250)
    q.offer(0.0, VIDEO, "w", 1250)
    q.offer(0.0, PROBE, "p", 1000)
    flags = [(pkt, probe) for t in (0.02, 0.04) for pkt, probe, _ in q.due(t)]
    assert flags == [("w", False), ("p", True)]                                # each says whether it is a probe


def test_a_switched_layers_backlog_is_dropped_and_the_rest_kept():
    p: Pacer = Pacer(RATE)
    old, new = object(), object()
    for i in range(20):
        p.offer(0.0, VIDEO, ("old", i), 1250, tag=old)
    p.offer(0.0, RETRANSMISSION, ("rtx", 0), 1250, tag=old)
    assert p.drop(old) >= 18 and p.dropped >= 18
    p.offer(0.0, VIDEO, ("new", 0), 1250, tag=new)
    assert [pkt[0] for _, pkt in drain(p, 0.0, 0.1)] == ["rtx", "new"]      # repairs are not a backlog


def test_a_long_queue_drains_within_half_a_second_whatever_the_rate():
    p: Pacer = Pacer(RATE)
    p.set_rate(100_000)                                                      # a stale low estimate
    at_once = sum(p.offer(0.0, VIDEO, i, 1250) for i in range(100))         # 1 Mbit: 10 s at 100 k
    out = drain(p, 0.0, 2.0, step=0.005)
    assert len(out) + at_once == 100 and out[-1][0] <= MAX_QUEUE_S + 0.02


def test_rate_and_burst_are_what_they_say():
    p: Pacer = Pacer(RATE)
    burst = RATE / 8 * BURST_S
    sent = 0
    while p.offer(0.0, VIDEO, sent, 100):
        sent += 1
    assert sent * 100 >= burst and (sent - 1) * 100 <= burst
