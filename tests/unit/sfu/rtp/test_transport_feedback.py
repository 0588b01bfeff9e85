"""The transport-wide feedback packet: hand-made bytes, round trips, and malformed input refused with ValueError."""
from __future__ import annotations

import random

import pytest

from sfu.rtp.transport_feedback import (
    DELTA_TICK_S, REFERENCE_TICK_S, TransportFeedback, build_feedback, parse_feedback, split_transport_feedback,
    read_transport_seq, transport_seq_extension,
)

SSRCS = bytes.fromhex("fa17fa17 193dd8bb")

# Packets as Chromium sends them (the test vectors pion's and webrtc-rs's RTCP packages check against).
# Seven packets received with small deltas 19, 9, 9, 4, 3, 3, 4 ms; P bit set, three bytes of padding.
SEVEN_SMALL = bytes.fromhex("afcd0007 fa17fa17 193dd8bb 00040007 10636e01 2007 4c242410 0c0c10 000003")
# Two packets with large deltas (2047.5 ms, 2022.5 ms), then four with small ones (52, 0, 52, 0 ms); no padding.
LARGE_THEN_SMALL = bytes.fromhex("8fcd0007 fa17fa17 193dd8bb 01740006 45b15a40 4002 2004 1ffe 1f9a d000d000")


def approx(values, expected, tolerance=1e-9):
    assert len(values) == len(expected)
    for value, want in zip(values, expected):
        if want is None:
            assert value is None
        else:
            assert value == pytest.approx(want, abs=tolerance)


def test_a_run_of_small_deltas_from_chromium_parses_to_cumulative_arrivals() -> None:
    feedback = parse_feedback(SEVEN_SMALL)
    assert (feedback.sender_ssrc, feedback.media_ssrc) == (0xFA17FA17, 0x193DD8BB)
    assert (feedback.base_seq, feedback.reference_ticks, feedback.feedback_count) == (4, 1074030, 1)
    assert feedback.reference_time == pytest.approx(1074030 * 0.064)
    approx(feedback.arrivals, [0.019, 0.028, 0.037, 0.041, 0.044, 0.047, 0.051])
    assert [seq for seq, _ in feedback.items()] == [4, 5, 6, 7, 8, 9, 10]


def test_large_deltas_are_two_signed_bytes() -> None:
    feedback = parse_feedback(LARGE_THEN_SMALL)
    assert (feedback.base_seq, feedback.reference_ticks, feedback.feedback_count) == (372, 4567386, 64)
    approx(feedback.arrivals, [2.0475, 4.070, 4.122, 4.122, 4.174, 4.174])


def test_status_vectors_of_one_and_two_bit_symbols() -> None:
    # 1-bit vector 0x9F1C: 1 0 | 0 1 1 1 1 1 0 0 0 1 1 1 0 0 -> lost, 5 received, 3 lost, 3 received, 2 lost
    one_bit = bytes.fromhex("8fcd0007") + SSRCS + bytes.fromhex("0001000e 00000100 9f1c") + bytes(range(1, 9)) + \
        bytes(2)
    feedback = parse_feedback(one_bit)
    received = [a is not None for a in feedback.arrivals]
    assert received == [False] + [True] * 5 + [False] * 3 + [True] * 3 + [False] * 2
    approx([a for a in feedback.arrivals if a is not None], [t * DELTA_TICK_S for t in (1, 3, 6, 10, 15, 21, 28, 36)])
    # 2-bit vector 0xD800: 1 1 | 01 10 00 00 00 00 00 -> small, large, five lost; the large delta is negative
    two_bit = bytes.fromhex("8fcd0006") + SSRCS + bytes.fromhex("00640007 00000200 d800 28 ffec 000000")
    feedback = parse_feedback(two_bit)
    approx(feedback.arrivals, [0.010, 0.005, None, None, None, None, None])


@pytest.mark.parametrize("arrivals", [
    [0.0],
    [None, None, 0.001, None],
    [i * 0.0005 for i in range(200)],                                    # long runs of small deltas
    [0.001 * i if i % 7 else None for i in range(300)],                  # vectors with losses
    [0.0, 0.07, 0.069, 2.5, -0.5, None, 7.0, 7.0001],                    # large, negative, big jumps
    [0.001 * (i // 3) for i in range(9000)],                             # more than one run chunk can hold
    [None] * 20 + [0.3] + [None] * 20,
])
def test_round_trip(arrivals) -> None:
    data = build_feedback(7, 9, 65530, (1 << 24) - 1, 300, arrivals)
    assert len(data) % 4 == 0
    feedback = parse_feedback(data)
    assert (feedback.sender_ssrc, feedback.media_ssrc, feedback.base_seq) == (7, 9, 65530)
    assert (feedback.reference_ticks, feedback.feedback_count) == ((1 << 24) - 1, 300 & 0xFF)
    approx(feedback.arrivals, arrivals, tolerance=DELTA_TICK_S / 2 + 1e-9)
    seqs = [seq for seq, _ in feedback.items()]
    assert seqs[:7] == [65530, 65531, 65532, 65533, 65534, 65535, 0][:len(seqs)]


def test_random_round_trips() -> None:
    rng = random.Random(13)
    for _ in range(200):
        count = rng.randint(1, 400)
        t = 0.0
        arrivals = []
        for _ in range(count):
            t += rng.choice((0.0, 0.0002, 0.001, 0.01, 0.08, -0.003))
            arrivals.append(None if rng.random() < 0.2 else t)
        feedback = parse_feedback(build_feedback(1, 2, rng.randrange(65536), rng.randrange(1 << 24), 0, arrivals))
        approx(feedback.arrivals, arrivals, tolerance=DELTA_TICK_S / 2 + 1e-9)


def test_build_refuses_what_the_format_cannot_say() -> None:
    with pytest.raises(ValueError):
        build_feedback(1, 2, 0, 0, 0, [])
    with pytest.raises(ValueError):
        build_feedback(1, 2, 0, 0, 0, [0.0, 9.0])  # a delta over 8.19 s: a new packet must start there
    with pytest.raises(ValueError):
        build_feedback(1, 2, 0, 0, 0, [0.0] * 65536)


@pytest.mark.parametrize("data,why", [
    (b"", "empty"),
    (SEVEN_SMALL[:19], "shorter than the fixed part"),
    (SEVEN_SMALL[:28], "length field says more than there is"),
    (bytes.fromhex("8fcd0004") + SSRCS + bytes.fromhex("00040000 10636e01"), "zero packets"),
    (bytes.fromhex("8fcd0005") + SSRCS + bytes.fromhex("00040040 10636e01 2007 0000"), "count overruns chunks"),
    (bytes.fromhex("8fcd0005") + SSRCS + bytes.fromhex("00040007 10636e01 2007 4c24"), "deltas end early"),
    (bytes.fromhex("afcd0005") + SSRCS + bytes.fromhex("00040001 10636e01 2001 4c00"), "zero padding count"),
    (bytes.fromhex("afcd0005") + SSRCS + bytes.fromhex("00040001 10636e01 2001 4c30"), "padding overruns"),
    (bytes.fromhex("8fcd0005") + SSRCS + bytes.fromhex("00040001 10636e01 6001 0000"), "reserved symbol"),
    (bytes.fromhex("8ecd0004") + SSRCS + bytes.fromhex("00040001 10636e01"), "another FMT"),
    (bytes.fromhex("8fc90004") + SSRCS + bytes.fromhex("00040001 10636e01"), "another PT"),
    (bytes.fromhex("4fcd0004") + SSRCS + bytes.fromhex("00040001 10636e01"), "version 1"),
])
def test_malformed_packets_raise_value_error(data: bytes, why: str) -> None:
    with pytest.raises(ValueError):
        parse_feedback(data)


def test_a_reserved_symbol_in_a_vector_is_refused_as_libwebrtc_does() -> None:
    # a capture whose second 2-bit vector (0xF0FF) uses symbol 3 within the status count
    data = bytes.fromhex("afcd0006fa17fa17193dd8bb0174000e45b15a40d800f0ffd0000003")
    with pytest.raises(ValueError):
        parse_feedback(data)


def test_truncations_and_mutations_raise_only_value_error() -> None:
    rng = random.Random(5)
    valid = [SEVEN_SMALL, LARGE_THEN_SMALL]
    for _ in range(30):
        arrivals = [None if rng.random() < 0.3 else rng.uniform(-1, 3) for _ in range(rng.randint(1, 120))]
        valid.append(build_feedback(1, 2, rng.randrange(65536), rng.randrange(1 << 24), 3, arrivals))
    parsed = failed = 0
    for _ in range(20_000):
        data = bytearray(rng.choice(valid))
        kind = rng.random()
        if kind < 0.3:
            data = data[:rng.randrange(len(data))]
        elif kind < 0.8:
            for _ in range(rng.randint(1, 4)):
                data[rng.randrange(len(data))] = rng.randrange(256)
        elif kind < 0.9:
            data = data[:rng.randrange(len(data))] + bytes(rng.randrange(256) for _ in range(rng.randint(1, 8)))
        else:
            data = bytearray(rng.randrange(256) for _ in range(rng.randint(0, 64)))
        try:
            result = parse_feedback(bytes(data))
        except ValueError:
            failed += 1
            continue
        assert isinstance(result, TransportFeedback) and len(result.arrivals) >= 1
        parsed += 1
    assert parsed > 1000 and failed > 1000  # both paths were really exercised


def test_feedback_is_found_inside_a_compound_packet() -> None:
    receiver_report = bytes.fromhex("80c90001 fa17fa17")
    compound = receiver_report + SEVEN_SMALL + LARGE_THEN_SMALL
    rest, found = split_transport_feedback(compound)
    assert rest == receiver_report and [parse_feedback(f).base_seq for f in found] == [4, 372]
    assert split_transport_feedback(receiver_report) == (receiver_report, [])
    with pytest.raises(ValueError):
        split_transport_feedback(compound[:-3])
    with pytest.raises(ValueError):
        split_transport_feedback(SEVEN_SMALL + b"\x8f")


def test_reference_time_unit_and_the_sequence_extension() -> None:
    assert REFERENCE_TICK_S == 0.064
    assert transport_seq_extension(0x1_0102) == b"\x01\x02"
    assert read_transport_seq(b"\xff\xfe") == 65534
    with pytest.raises(ValueError):
        read_transport_seq(b"\x01")
