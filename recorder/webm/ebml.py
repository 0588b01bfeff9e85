"""EBML (the binary format under Matroska/WebM): element encoding and a bounded reader.

Only what the recorder needs: unsigned/float/string/binary elements, known and unknown sizes, and walking
elements of a file without trusting their sizes (a file cut short by a crash or a full disk must never make
the reader run past its end or loop).
"""
from __future__ import annotations

import struct
from typing import BinaryIO, Iterator, NamedTuple, Optional

# Matroska element ids (RFC 9559) the recorder writes or reads
EBML = 0x1A45DFA3
EBML_VERSION, EBML_READ_VERSION, EBML_MAX_ID_LENGTH, EBML_MAX_SIZE_LENGTH = 0x4286, 0x42F7, 0x42F2, 0x42F3
DOC_TYPE, DOC_TYPE_VERSION, DOC_TYPE_READ_VERSION = 0x4282, 0x4287, 0x4285
SEGMENT = 0x18538067
SEEK_HEAD, SEEK, SEEK_ID, SEEK_POSITION = 0x114D9B74, 0x4DBB, 0x53AB, 0x53AC
VOID = 0xEC
INFO, TIMESTAMP_SCALE, DURATION, MUXING_APP, WRITING_APP, DATE_UTC, TITLE = (
    0x1549A966, 0x2AD7B1, 0x4489, 0x4D80, 0x5741, 0x4461, 0x7BA9)
TRACKS, TRACK_ENTRY, TRACK_NUMBER, TRACK_UID, TRACK_TYPE, FLAG_LACING, CODEC_ID, CODEC_PRIVATE = (
    0x1654AE6B, 0xAE, 0xD7, 0x73C5, 0x83, 0x9C, 0x86, 0x63A2)
CODEC_DELAY, SEEK_PRE_ROLL, LANGUAGE = 0x56AA, 0x56BB, 0x22B59C
VIDEO, PIXEL_WIDTH, PIXEL_HEIGHT = 0xE0, 0xB0, 0xBA
AUDIO, SAMPLING_FREQUENCY, CHANNELS = 0xE1, 0xB5, 0x9F
CLUSTER, TIMESTAMP, SIMPLE_BLOCK, BLOCK_GROUP = 0x1F43B675, 0xE7, 0xA3, 0xA0
CUES, CUE_POINT, CUE_TIME, CUE_TRACK_POSITIONS, CUE_TRACK, CUE_CLUSTER_POSITION = (
    0x1C53BB6B, 0xBB, 0xB3, 0xB7, 0xF7, 0xF1)
TAGS, CHAPTERS, ATTACHMENTS = 0x1254C367, 0x1043A770, 0x1941A469

UNKNOWN_SIZE = 0x01FFFFFFFFFFFFFF          # the 8-byte "unknown" size (a live segment)
_F64 = struct.Struct(">d")


class EbmlError(ValueError):
    """Bytes that are not the EBML the reader expected."""


def encode_id(eid: int) -> bytes:
    return eid.to_bytes((eid.bit_length() + 7) // 8, "big")


def encode_size(size: int, length: Optional[int] = None) -> bytes:
    """An EBML variable-size integer; `length` forces a width (to patch a size in place later)."""
    if length is None:
        length = 1
        while size >= (1 << (7 * length)) - 1:  # all-ones is reserved for "unknown"
            length += 1
    if length > 8 or size >= (1 << (7 * length)) - 1:
        raise ValueError(f"size {size} does not fit in {length} bytes")
    return ((1 << (7 * length)) | size).to_bytes(length, "big")


def element(eid: int, payload: bytes) -> bytes:
    return encode_id(eid) + encode_size(len(payload)) + payload


def uint(eid: int, value: int) -> bytes:
    n = max(1, (value.bit_length() + 7) // 8)
    return element(eid, value.to_bytes(n, "big"))


def sint(eid: int, value: int) -> bytes:
    n = 1
    while not -(1 << (8 * n - 1)) <= value < (1 << (8 * n - 1)):
        n += 1
    return element(eid, value.to_bytes(n, "big", signed=True))


def float64(eid: int, value: float) -> bytes:
    return element(eid, _F64.pack(value))


def string(eid: int, value: str) -> bytes:
    return element(eid, value.encode("utf-8"))


def void(total: int) -> bytes:
    """A Void element exactly `total` bytes long (at least 2), to reserve space for a later patch."""
    if total < 2:
        raise ValueError("a Void element takes at least 2 bytes")
    if total - 2 < 127:
        return bytes([VOID]) + encode_size(total - 2, 1) + bytes(total - 2)
    return bytes([VOID]) + encode_size(total - 9, 8) + bytes(total - 9)


# ---- reading -------------------------------------------------------------------------------------------------

class Element(NamedTuple):
    id: int
    start: int            # offset of the id
    data_start: int       # offset of the payload
    size: Optional[int]   # payload size; None when unknown

    @property
    def end(self) -> Optional[int]:
        return None if self.size is None else self.data_start + self.size


def read_vint(buf: bytes, pos: int, is_id: bool = False) -> tuple[int, int]:
    """(value, position after it) of an EBML variable-size integer (or an element id) at buf[pos:]."""
    if pos >= len(buf):
        raise EbmlError("truncated")
    first = buf[pos]
    if first == 0:
        raise EbmlError("invalid variable-size integer")
    length = 9 - first.bit_length()
    if pos + length > len(buf) or (is_id and length > 4):
        raise EbmlError("truncated" if pos + length > len(buf) else "element id longer than 4 bytes")
    raw = int.from_bytes(buf[pos:pos + length], "big")
    if is_id:
        return raw, pos + length
    value = raw & ((1 << (7 * length)) - 1)
    if value == (1 << (7 * length)) - 1:
        value = -1  # unknown size
    return value, pos + length


def parse_header(buf: bytes, pos: int, base: int = 0) -> Element:
    """The element header at buf[pos:] (offsets reported + `base`)."""
    eid, p = read_vint(buf, pos, is_id=True)
    size, p = read_vint(buf, p)
    return Element(eid, base + pos, base + p, None if size < 0 else size)


def read_header(f: BinaryIO, pos: int) -> Optional[Element]:
    """The element header at file offset `pos`, or None at end of file / on a truncated header."""
    f.seek(pos)
    head = f.read(12)
    if not head:
        return None
    try:
        return parse_header(head, 0, pos)
    except EbmlError:
        return None


def children(buf: bytes, start: int = 0, end: Optional[int] = None) -> Iterator[tuple[int, bytes]]:
    """(id, payload) of the elements in buf[start:end] (a master element's payload held in memory)."""
    end = len(buf) if end is None else end
    pos = start
    while pos < end:
        el = parse_header(buf, pos)
        if el.size is None or el.data_start + el.size > end:
            raise EbmlError("child element runs past its parent")
        yield el.id, buf[el.data_start:el.data_start + el.size]
        pos = el.data_start + el.size


def read_uint(payload: bytes) -> int:
    return int.from_bytes(payload, "big") if payload else 0


def read_float(payload: bytes) -> float:
    if len(payload) == 8:
        return _F64.unpack(payload)[0]
    if len(payload) == 4:
        return struct.unpack(">f", payload)[0]
    return 0.0
