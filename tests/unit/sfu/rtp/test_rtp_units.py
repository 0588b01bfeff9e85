"""Pure logic of the forwarding path, fed packet sequences and times (no sockets, no sleeping)."""
from __future__ import annotations

import struct

import pytest

from sfu.rtp.codec_info import h264_is_keyframe, parse_vp8, write_vp8_ids
from sfu.ingest.ingest_estimator import IngestEstimator
from sfu.ingest.keyframe_requester import KeyframeRequester
from sfu.forward.munger import StreamMunger
from sfu.ingest.nack_generator import NackGenerator
from sfu.ingest.reception_stats import ReceptionStats
from sfu.rtp.rtp_header import RtpParseError, RtpView, build_header, one_byte_extensions, seq_diff


def rtp(seq: int, ts: int = 0, ssrc: int = 1, pt: int = 96, payload: bytes = b"\x10\x00", ext: bytes = b"",
        pad: int = 0) -> bytes:
    data = bytes(build_header(0, pt, seq, ts, ssrc, ext)) + payload
    if pad:
        data = bytearray(data)
        data[0] |= 0x20
        data = bytes(data) + b"\x00" * (pad - 1) + bytes([pad])
    return data


def vp8_payload(picture_id: int, tl0: int, tid: int, keyframe: bool, start: bool = True) -> bytes:
    b0 = 0x80 | (0x10 if start else 0)
    return bytes([b0, 0xE0, 0x80 | (picture_id >> 8), picture_id & 0xFF, tl0, tid << 6,
                  0x00 if keyframe else 0x01, 0, 0])


def test_rtp_view_parses_header_extension_and_padding():
    ext = one_byte_extensions([(3, b"\x01\x02\x03")])
    v = RtpView(rtp(65535, 1234, 99, 111, b"abc", ext, pad=4))
    assert (v.seq, v.timestamp, v.ssrc, v.payload_type) == (65535, 1234, 99, 111)
    assert v.payload == b"abc"
    assert v.extension(3) == b"\x01\x02\x03"
    assert v.extension(4) is None


@pytest.mark.parametrize("data", [b"", b"\x80" * 11, b"\x00" * 12,
                                  bytes([0x90]) + b"\x00" * 11,                       # extension missing
                                  bytes([0xA0]) + b"\x00" * 11 + b"\x00",            # padding length 0
                                  bytes([0x8F]) + b"\x00" * 20])                      # CSRCs past the end
def test_rtp_view_rejects_malformed(data):
    with pytest.raises(RtpParseError):
        RtpView(data)


def test_vp8_descriptor_and_rewrite():
    payload = vp8_payload(0x7FFE, 250, 2, keyframe=True)
    d = parse_vp8(payload, 0, len(payload))
    assert d is not None and d.keyframe and d.picture_id == 0x7FFE and d.tl0picidx == 250 and d.tid == 2
    buf = bytearray(payload)
    write_vp8_ids(buf, d, (0x7FFE + 3) & 0x7FFF, (250 + 10) & 0xFF)
    d2 = parse_vp8(bytes(buf), 0, len(buf))
    assert d2.picture_id == 1 and d2.tl0picidx == 4  # both wrapped
    assert not parse_vp8(vp8_payload(5, 0, 0, keyframe=False), 0, 9).keyframe
    assert parse_vp8(b"\x90", 0, 1) is None  # X set but truncated


def test_h264_keyframe_detection():
    assert h264_is_keyframe(b"\x65\x88", 0, 2)           # IDR slice
    assert not h264_is_keyframe(b"\x41\x9a", 0, 2)       # non-IDR
    assert h264_is_keyframe(b"\x7c\x85", 0, 2)           # FU-A start of IDR
    assert not h264_is_keyframe(b"\x7c\x05", 0, 2)       # FU-A continuation
    stap = b"\x78" + struct.pack("!H", 2) + b"\x67\x42" + struct.pack("!H", 2) + b"\x68\xce"
    assert h264_is_keyframe(stap, 0, len(stap))           # STAP-A with SPS


def test_nack_generator_reports_gap_then_retries_and_gives_up():
    g = NackGenerator(retry_interval=0.05)
    assert g.on_packet(10, 0.0) == []
    assert g.on_packet(11, 0.01) == []
    assert g.on_packet(14, 0.02) == [12, 13]
    assert g.poll(0.03) == []                      # too soon to ask again
    assert g.poll(0.08) == [12, 13]
    assert g.on_packet(12, 0.09) == []             # recovered
    assert g.was_requested(13) and not g.was_requested(12)
    assert g.recovered == 1
    for t in (0.14, 0.2, 0.3, 0.4):
        g.poll(t)
    assert not g.was_requested(13) and g.lost_for_good == 1


def test_nack_generator_handles_wrap_reorder_and_restart():
    g = NackGenerator()
    g.on_packet(65534, 0.0)
    assert g.on_packet(1, 0.01) == [65535, 0]
    assert g.on_packet(0, 0.02) == []               # late arrival fills the gap
    assert g.on_packet(30000, 0.03) == []           # a jump this large is a restart, not 30000 losses
    assert g.missing == {}


def test_munger_keeps_output_continuous_across_source_switch():
    m = StreamMunger(initial_seq=1000, initial_ts=50000)
    a, b = object(), object()
    m.start(a, seq=500, ts=9000, now=0.0, clock_rate=90000, picture_id=100, tl0=7)
    assert m.map(500, 9000, 0.0) == (1000, 50000)
    assert m.map(501, 12000, 0.033) == (1001, 53000)
    assert m.map(499, 6000, 0.04) is None           # older than the switch point
    assert m.note_picture(101, 7) == (101, 7)
    e = m.start(b, seq=40000, ts=123, now=1.033, clock_rate=90000, picture_id=9000, tl0=200)
    out = m.map(40000, 123, 1.033)
    assert out[0] == 1002                             # sequence continues
    assert out[1] == 53000 + 90000                    # the one-second gap stays a gap
    assert e.out_pid(9000) == 102 and e.out_tl0(200) == 8
    assert m.to_source(1001)[:2] == (a, 501)
    assert m.to_source(1002)[:2] == (b, 40000)


def test_keyframe_requests_are_coalesced():
    k = KeyframeRequester(min_interval=0.5)
    assert k.request(0.0)
    assert not k.request(0.1)                          # the keyframe already asked for serves this joiner
    k.on_keyframe(0.15)
    assert not k.request(0.2)                          # too soon after the last PLI: deferred
    assert not k.poll(0.4)
    assert k.poll(0.5)
    assert not k.poll(0.6)
    assert k.sent_count == 2
    assert k.poll(1.6)                                 # unanswered for a second: ask again


def test_ingest_estimator_backs_off_on_loss_and_recovers():
    e = IngestEstimator(max_bps=4_000_000, min_bps=150_000, start_bps=4_000_000)
    t = 0.0
    for _ in range(5):
        for _ in range(100):
            e.on_bytes(1250, t)
            t += 0.01
        bps = e.update(t, fraction_lost=0.3)
    assert bps < 1_000_000 and bps >= 150_000
    for _ in range(40):
        for _ in range(100):
            e.on_bytes(1250, t)
            t += 0.01
        bps = e.update(t, fraction_lost=0.0)
    assert bps == 4_000_000


def test_reception_stats_loss_and_wrap():
    s = ReceptionStats(90000)
    for i, seq in enumerate([65533, 65534, 1, 2]):    # 65535 and 0 lost
        s.on_packet(seq, i * 3000, i / 30, 1000)
    assert s.expected == 6 and s.lost == 2 and s.extended_max == 65536 + 2
    assert s.interval_fraction_lost() == pytest.approx(2 / 6)
    assert s.interval_fraction_lost() == 0.0
    assert seq_diff(1, 65535) == 2 and seq_diff(65535, 1) == -2
