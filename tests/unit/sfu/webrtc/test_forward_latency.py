"""The node's holding time per packet: arrivals noted by SSRC and sequence number, a log-bucket histogram and
its quantiles. Pure: times are arguments."""
from __future__ import annotations

import struct

import pytest

from sfu.webrtc.forward_latency import BOUNDS, RATIO, ArrivalStamps, LatencyHistogram, quantile


def rtp(ssrc: int, seq: int, pt: int = 96) -> bytes:
    return struct.pack("!BBHII", 0x80, pt, seq, 1234, ssrc) + b"\x00" * 20


def test_an_arrival_is_found_once_by_ssrc_and_sequence_number():
    stamps = ArrivalStamps()
    stamps.note(rtp(7, 100), 1.0)
    stamps.note(rtp(7, 101), 1.1)
    stamps.note(rtp(8, 100), 1.2)
    assert stamps.take(7, 101) == 1.1 and stamps.take(7, 101) is None
    assert stamps.take(8, 100) == 1.2 and stamps.take(7, 100) == 1.0


def test_rtcp_dtls_and_runts_are_not_noted():
    stamps = ArrivalStamps()
    rr = struct.pack("!BBHI", 0x81, 201, 1, 7) + b"\x00" * 8      # a receiver report: payload type 201
    stamps.note(rr, 1.0)
    stamps.note(b"\x16\xfe\xfd" + b"\x00" * 20, 1.0)               # DTLS
    stamps.note(rtp(7, 1)[:11], 1.0)                                # shorter than an RTP header
    assert stamps.take(7, 1) is None
    assert stamps.take(int.from_bytes(rr[8:12], "big"), 1) is None   # where an RTP packet's would be


def test_the_stamps_stay_bounded_forgetting_the_oldest():
    stamps = ArrivalStamps(limit=100)
    for seq in range(1000):           # packets nobody asked about (a publisher nobody watches)
        stamps.note(rtp(5, seq), seq / 1000)
    assert stamps.take(5, 899) is None and stamps.take(5, 900) == pytest.approx(0.9)


def test_quantiles_come_within_a_bucket_of_the_truth():
    h = LatencyHistogram()
    samples = [0.0002 * (1 + i % 50) for i in range(1000)]   # 0.2 .. 10 ms, uniform
    for s in samples:
        h.add(s)
    ordered = sorted(samples)
    for q in (0.5, 0.99):
        truth = ordered[int(q * len(ordered)) - 1]
        assert truth / RATIO <= quantile(h.counts, q) <= truth * RATIO
    assert h.total == 1000 and h.sum_s == pytest.approx(sum(samples))


def test_quantile_of_a_window_is_the_difference_of_two_snapshots():
    h = LatencyHistogram()
    for _ in range(100):
        h.add(0.050)                   # a slow start, before the window
    before = list(h.counts)
    for _ in range(100):
        h.add(0.001)
    window = [b - a for a, b in zip(before, h.counts)]
    assert quantile(window, 0.99) < 0.001 * RATIO
    assert quantile([0] * len(h.counts), 0.5) is None
    h.add(100.0)                       # beyond the last bound: counted, reported as the last bound
    assert h.counts[-1] == 1 and quantile(h.counts, 1.0) >= BOUNDS[-1]
