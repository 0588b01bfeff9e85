"""H.264 access units for Matroska: Annex-B (start codes, as depacketized) -> AVCC (length prefixes), and the
avcC record (CodecPrivate) from a keyframe's SPS/PPS. No re-encoding."""
from __future__ import annotations

from typing import Optional

_SPS, _PPS = 7, 8


def split_annexb(data: bytes) -> list[bytes]:
    """The NAL units of an Annex-B byte stream (3- or 4-byte start codes)."""
    nals = []
    i, n = 0, len(data)
    start = -1
    while i + 2 < n:
        if data[i] == 0 and data[i + 1] == 0 and data[i + 2] == 1:
            if start >= 0:
                end = i - 1 if i > 0 and data[i - 1] == 0 else i
                if end > start:
                    nals.append(data[start:end])
            i += 3
            start = i
            continue
        i += 1
    if start >= 0 and start < n:
        nals.append(data[start:])
    return nals


def to_avcc(data: bytes) -> bytes:
    return b"".join(len(nal).to_bytes(4, "big") + nal for nal in split_annexb(data))


def avcc_record(data: bytes) -> Optional[bytes]:
    """An AVCDecoderConfigurationRecord from the SPS and PPS in an access unit; None when they are missing."""
    nals = split_annexb(data)
    sps = [x for x in nals if x and x[0] & 0x1F == _SPS]
    pps = [x for x in nals if x and x[0] & 0x1F == _PPS]
    if not sps or not pps or len(sps[0]) < 4:
        return None
    out = bytearray([1, sps[0][1], sps[0][2], sps[0][3], 0xFF, 0xE0 | len(sps[:31])])
    for s in sps[:31]:
        out += len(s).to_bytes(2, "big") + s
    out.append(len(pps[:255]))
    for p in pps[:255]:
        out += len(p).to_bytes(2, "big") + p
    return bytes(out)
