"""A clip's video as the RTP packets a single-layer publisher would send, one list per frame (no encoding)."""
from __future__ import annotations

import random
from pathlib import Path

import av

from sfu.rtp.rtp_header import build_header
from sfu.rtp.vp8_packetizer import Vp8Packetizer


def _frames(path: Path) -> list[tuple[int, bytes]]:
    """(90 kHz presentation time, encoded frame) in presentation order."""
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        frames = [(int(p.pts * s.time_base * 90000), bytes(p)) for p in c.demux(s) if p.size]
    return sorted(frames)


def vp8_clip_rtp(path: Path, ts0: int, ssrc: int = 4321, seed: int = 4) -> list[list[bytes]]:
    """A WebM VP8 clip as RFC 7741 packets (PictureID, no temporal layers), timestamps from ts0."""
    pk = Vp8Packetizer(ssrc=ssrc, rng=random.Random(seed))
    return [pk.packetize(data, (ts0 + t) & 0xFFFFFFFF, None) for t, data in _frames(path)]


def h264_rtp(access_units: list[list[bytes]], timestamps: list[int], ssrc: int = 9, payload_type: int = 102,
             seq0: int = 500) -> list[list[bytes]]:
    """Access units (lists of NAL units) as RFC 6184 packets with aiortc's packetizer (STAP-A, FU-A, single)."""
    from aiortc.codecs.h264 import H264Encoder

    out, seq = [], seq0
    for nals, ts in zip(access_units, timestamps):
        payloads = H264Encoder._packetize(iter(nals))
        out.append([bytes(build_header(int(i == len(payloads) - 1), payload_type, (seq + i) & 0xFFFF,
                                       ts & 0xFFFFFFFF, ssrc)) + pl for i, pl in enumerate(payloads)])
        seq += len(payloads)
    return out


def h264_clip_rtp(path: Path, ts0: int) -> list[list[bytes]]:
    """An Annex-B H.264 clip (MPEG-TS) as RTP packets."""
    from aiortc.codecs.h264 import H264Encoder

    frames = _frames(path)
    return h264_rtp([list(H264Encoder._split_bitstream(data)) for _, data in frames], [ts0 + t for t, _ in frames])


def relabel(packet: bytes, lap: int, ts_step: int, seq_step: int) -> bytes:
    """A packet of a looped clip's `lap`-th pass: its sequence number and timestamp moved on by `lap` times
    the clip's packets and ticks, so the loop goes on like a live source."""
    if not lap:
        return packet
    p = bytearray(packet)
    p[2:4] = ((int.from_bytes(p[2:4], "big") + lap * seq_step) & 0xFFFF).to_bytes(2, "big")
    p[4:8] = ((int.from_bytes(p[4:8], "big") + lap * ts_step) & 0xFFFFFFFF).to_bytes(4, "big")
    return bytes(p)
