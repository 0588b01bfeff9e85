"""Codec-specific facts read from RTP payloads without decoding: keyframes, VP8 picture ids and layers."""
from __future__ import annotations

from typing import Optional


class Vp8Descriptor:
    """The RFC 7741 payload descriptor fields the forwarder reads or rewrites."""

    __slots__ = ("start_of_partition", "partition_id", "picture_id", "picture_id_pos", "picture_id_bits",
                 "tl0picidx", "tl0_pos", "tid", "layer_sync", "keyframe", "size")

    def __init__(self) -> None:
        self.picture_id: Optional[int] = None
        self.picture_id_pos = -1
        self.picture_id_bits = 0
        self.tl0picidx: Optional[int] = None
        self.tl0_pos = -1
        self.tid = 0
        self.layer_sync = False
        self.keyframe = False


def parse_vp8(data: bytes, start: int, end: int) -> Optional[Vp8Descriptor]:
    """Parse the VP8 payload descriptor at data[start:end]; None when malformed."""
    if end - start < 1:
        return None
    d = Vp8Descriptor()
    b0 = data[start]
    d.start_of_partition = bool(b0 & 0x10)
    d.partition_id = b0 & 0x07
    pos = start + 1
    if b0 & 0x80:
        if pos >= end:
            return None
        x = data[pos]
        pos += 1
        if x & 0x80:  # I: PictureID
            if pos >= end:
                return None
            d.picture_id_pos = pos
            if data[pos] & 0x80:
                if pos + 1 >= end:
                    return None
                d.picture_id = ((data[pos] & 0x7F) << 8) | data[pos + 1]
                d.picture_id_bits = 15
                pos += 2
            else:
                d.picture_id = data[pos] & 0x7F
                d.picture_id_bits = 7
                pos += 1
        if x & 0x40:  # L: TL0PICIDX
            if pos >= end:
                return None
            d.tl0_pos = pos
            d.tl0picidx = data[pos]
            pos += 1
        if x & 0x30:  # T or K
            if pos >= end:
                return None
            if x & 0x20:
                d.tid = data[pos] >> 6
                d.layer_sync = bool(data[pos] & 0x20)
            pos += 1
    d.size = pos - start
    if d.start_of_partition and d.partition_id == 0:
        if pos >= end:
            return None
        d.keyframe = not (data[pos] & 0x01)
    return d


def write_vp8_ids(buf: bytearray, d: Vp8Descriptor, picture_id: Optional[int], tl0picidx: Optional[int],
                  shift: int = 0) -> None:
    """Write PictureID and TL0PICIDX in place (same field sizes); `shift` moves the parsed offsets to where
    buf holds the payload."""
    if picture_id is not None and d.picture_id is not None:
        pos = d.picture_id_pos + shift
        if d.picture_id_bits == 15:
            buf[pos] = 0x80 | ((picture_id >> 8) & 0x7F)
            buf[pos + 1] = picture_id & 0xFF
        else:
            buf[pos] = picture_id & 0x7F
    if tl0picidx is not None and d.tl0picidx is not None:
        buf[d.tl0_pos + shift] = tl0picidx & 0xFF


H264_IDR = 5
H264_SPS = 7
H264_STAP_A = 24
H264_FU_A = 28


def h264_is_keyframe(data: bytes, start: int, end: int) -> bool:
    """True when the payload starts an IDR picture (SPS or IDR slice, single, STAP-A or FU-A start)."""
    if end - start < 1:
        return False
    nal = data[start] & 0x1F
    if nal in (H264_IDR, H264_SPS):
        return True
    if nal == H264_FU_A:
        return end - start >= 2 and bool(data[start + 1] & 0x80) and (data[start + 1] & 0x1F) in (H264_IDR, H264_SPS)
    if nal == H264_STAP_A:
        pos = start + 1
        while pos + 2 < end:
            size = (data[pos] << 8) | data[pos + 1]
            if size == 0 or pos + 2 + size > end:
                return False
            if data[pos + 2] & 0x1F in (H264_IDR, H264_SPS):
                return True
            pos += 2 + size
    return False


def is_keyframe_start(codec: str, data: bytes, start: int, end: int) -> bool:
    """True when this packet is the first packet of a keyframe for the given codec name."""
    if codec == "VP8":
        d = parse_vp8(data, start, end)
        return d is not None and d.keyframe
    if codec == "H264":
        return h264_is_keyframe(data, start, end)
    return True  # audio: every packet is a start


def vp8_keyframe_size(data: bytes, start: int, end: int) -> Optional[tuple[int, int]]:
    """(width, height) from a VP8 keyframe's header (RFC 6386 9.1) at data[start:end], the VP8 payload
    after the descriptor of a keyframe's first packet; None when it is not there."""
    if end - start < 10 or data[start + 3:start + 6] != b"\x9d\x01\x2a":
        return None
    width = (data[start + 6] | (data[start + 7] << 8)) & 0x3FFF
    height = (data[start + 8] | (data[start + 9] << 8)) & 0x3FFF
    return width, height
