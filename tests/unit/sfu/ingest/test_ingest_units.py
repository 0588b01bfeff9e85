"""The publisher ingest fed raw packets with chosen arrival times: stream learning, sequence sanity, RTX."""
from __future__ import annotations

from sfu.ingest.publisher import PayloadInfo, PublisherIngest
from sfu.room.room import Room
from sfu.rtp.rtp_header import build_header

VP8, RTX, OPUS = 96, 97, 111


def ingest() -> tuple[PublisherIngest, Room]:
    room = Room("unit")
    payloads = {VP8: PayloadInfo("video", "VP8", 90000, None), RTX: PayloadInfo("video", "rtx", 90000, VP8),
                OPUS: PayloadInfo("audio", "opus", 48000, None)}
    return PublisherIngest(room.main, payloads, rtcp_ssrc=1), room


def vp8(seq: int, ssrc: int = 5000, key: bool = False) -> bytes:
    return bytes(build_header(0, VP8, seq, seq * 3000, ssrc)) + bytes([0x10, 0x00 if key else 0x01, 0, 0])


def test_wild_sequence_number_is_dropped_unless_confirmed():
    ing, room = ingest()
    for seq in range(100, 110):
        ing.on_rtp(vp8(seq), seq * 0.01)
    first = room.tracks["video"].source
    ing.on_rtp(vp8(30000), 1.1)                      # one stray: dropped, stream untouched
    assert ing.malformed == 1 and room.tracks["video"].source is first
    ing.on_rtp(vp8(110), 1.11)
    assert first.stats.max_seq == 110
    ing.on_rtp(vp8(40000), 1.2)
    ing.on_rtp(vp8(40001), 1.21)                     # confirmed: a restart, viewers re-sync on a keyframe
    assert room.tracks["video"].source is not first
    assert room.tracks["video"].source.stats.max_seq == 40001


def test_stray_ssrc_cannot_take_over_a_live_stream():
    ing, room = ingest()
    for seq in range(10):
        ing.on_rtp(vp8(seq), seq * 0.03)
    live = room.tracks["video"].source
    ing.on_rtp(vp8(5, ssrc=666), 0.3)
    assert room.tracks["video"].source is live and ing.unknown == 1
    ing.on_rtp(vp8(6, ssrc=666), 1.5)                  # the old SSRC fell silent a second ago: new source
    assert room.tracks["video"].source.ssrc == 666


def test_rtx_is_forwarded_only_when_we_asked_for_it():
    ing, room = ingest()
    ing.on_rtp(vp8(1), 0.0)
    ing.on_rtp(vp8(3), 0.01)                          # 2 missing: NACKed
    stream = room.tracks["video"].source
    assert stream.nack.was_requested(2)
    probe = bytes(build_header(0, RTX, 900, 0, 7000)) + (1).to_bytes(2, "big") + b"\x10\x00\x00"
    ing.on_rtp(probe, 0.02)                           # repair of seq 1, which was never lost: a probe
    assert stream.rtx_forwarded == 0 and stream.rtx_dropped == 1
    repair = bytes(build_header(0, RTX, 901, 6000, 7000)) + (2).to_bytes(2, "big") + b"\x10\x01\x00"
    ing.on_rtp(repair, 0.03)
    assert stream.rtx_forwarded == 1 and stream.nack.recovered == 1
    assert stream.cached(2) is not None and stream.cached(2).view.ssrc == 5000
