"""Redundant audio payloads (RFC 2198): built as Chromium reads them, parsed back, malformed ones refused."""
from __future__ import annotations

import random

import pytest

from sfu.rtp.red import RedBlock, build_red, parse_red

OPUS = 111


def test_red_round_trip_with_two_earlier_frames():
    older, old = RedBlock(OPUS, 1920, b"\x01" * 80), RedBlock(OPUS, 960, b"\x02" * 90)
    payload = build_red(OPUS, b"\x03" * 100, [older, old])
    # RFC 2198's layout: 4-byte headers with F=1, PT, offset, length; then a 1-byte primary header
    assert payload[:4] == bytes([0x80 | OPUS]) + (1920 << 10 | 80).to_bytes(3, "big")
    assert payload[8] == OPUS and len(payload) == 4 + 4 + 1 + 80 + 90 + 100
    assert parse_red(payload) == [older, old, RedBlock(OPUS, 0, b"\x03" * 100)]


def test_blocks_that_do_not_fit_are_left_out():
    too_old = RedBlock(OPUS, 20000, b"x")       # beyond 14 bits of offset
    too_big = RedBlock(OPUS, 960, b"y" * 1100)  # beyond 10 bits of length
    assert parse_red(build_red(OPUS, b"p", [too_old, too_big])) == [RedBlock(OPUS, 0, b"p")]


def test_malformed_red_raises_value_error_only():
    good = build_red(OPUS, b"\x03" * 40, [RedBlock(OPUS, 960, b"\x02" * 30)])
    for bad in (b"", b"\x80\x00", good[:3], bytes([0x80 | OPUS]) + (960 << 10 | 500).to_bytes(3, "big") + b"\x6f"):
        with pytest.raises(ValueError):
            parse_red(bad)
    rng = random.Random(7)
    for _ in range(3000):
        data = bytearray(good[:rng.randrange(len(good) + 1)])
        for _ in range(rng.randrange(3)):
            if data:
                data[rng.randrange(len(data))] = rng.randrange(256)
        try:
            blocks = parse_red(bytes(data))
        except ValueError:
            continue
        assert blocks[-1].timestamp_offset == 0
