"""H.264 RTP payloads (RFC 6184: single NAL unit, STAP-A, FU-A) -> an Annex-B access unit for a decoder."""
from __future__ import annotations

from typing import Optional

from sfu.rtp.codec_info import H264_FU_A, H264_STAP_A, h264_is_keyframe

START_CODE = b"\x00\x00\x00\x01"
_SEI, _SPS, _PPS, _AUD = 6, 7, 8, 9
_SLICE, _IDR = 1, 5


def _first_nal(payload: bytes) -> Optional[tuple[int, int]]:
    """(NAL type, offset of the byte after the NAL header) of the first NAL unit a packet starts, or None
    when the packet starts none (an FU-A continuation) or is malformed."""
    if not payload:
        return None
    kind = payload[0] & 0x1F
    if kind == H264_STAP_A:
        return (payload[3] & 0x1F, 4) if len(payload) >= 5 else None
    if kind == H264_FU_A:
        if len(payload) < 3 or not payload[1] & 0x80:
            return None
        return payload[1] & 0x1F, 2
    return kind, 1


def h264_starts_picture(payload: bytes) -> bool:
    """True when the packet's first NAL unit begins an access unit: a parameter set, AUD or SEI, or the
    first slice of a picture (first_mb_in_slice == 0, i.e. the slice header's first ue(v) bit is 1).
    Used to resynchronise after loss, when the previous packet (with its marker) is missing."""
    nal = _first_nal(payload)
    if nal is None:
        return False
    kind, pos = nal
    if kind in (_SEI, _SPS, _PPS, _AUD):
        return True
    return kind in (_SLICE, _IDR) and pos < len(payload) and bool(payload[pos] & 0x80)


def h264_access_unit(payloads: list[bytes]) -> Optional[tuple[bytes, bool]]:
    """(Annex-B access unit, keyframe) from one frame's payloads in sequence order; None when malformed
    (a truncated STAP-A, an FU-A without its start or end)."""
    out = bytearray()
    in_fu = False
    keyframe = False
    for p in payloads:
        if not p:
            return None
        keyframe = keyframe or h264_is_keyframe(p, 0, len(p))
        kind = p[0] & 0x1F
        if kind == H264_FU_A:
            if len(p) < 3:
                return None
            start, end = p[1] & 0x80, p[1] & 0x40
            if start:
                if in_fu:
                    return None
                out += START_CODE
                out.append((p[0] & 0xE0) | (p[1] & 0x1F))
                in_fu = True
            elif not in_fu:
                return None
            out += p[2:]
            if end:
                in_fu = False
            continue
        if in_fu:
            return None
        if kind == H264_STAP_A:
            pos = 1
            while pos < len(p):
                if pos + 2 > len(p):
                    return None
                size = (p[pos] << 8) | p[pos + 1]
                if size == 0 or pos + 2 + size > len(p):
                    return None
                out += START_CODE
                out += p[pos + 2:pos + 2 + size]
                pos += 2 + size
        elif 1 <= kind <= 23:
            out += START_CODE
            out += p
        else:
            return None  # STAP-B, MTAP, FU-B: not in packetization-mode 1 as browsers and FFmpeg send it
    if in_fu or not out:
        return None
    return bytes(out), keyframe
