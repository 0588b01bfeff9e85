"""Raw RTP header parsing and building (RFC 3550, RFC 8285 one-byte extensions).

The forwarding path works on bytes, not on aiortc's RtpPacket objects: parsing once per ingest packet and
patching a few header bytes per viewer is what keeps the per-viewer cost low.
"""
from __future__ import annotations

import struct
from typing import Optional

_SEQ_TS_SSRC = struct.Struct("!HII")
_HDR = struct.Struct("!BBHII")
_EXT_HDR = struct.Struct("!HH")

ONE_BYTE_PROFILE = 0xBEDE
TWO_BYTE_PROFILE_MASK = 0xFFF0
TWO_BYTE_PROFILE = 0x1000


class RtpParseError(ValueError):
    pass


class RtpView:
    """The fields of one RTP packet the SFU needs, with offsets into the original bytes."""

    __slots__ = (
        "data", "marker", "payload_type", "seq", "timestamp", "ssrc",
        "payload_start", "payload_end", "ext_profile", "ext_start", "ext_end",
    )

    def __init__(self, data: bytes) -> None:
        n = len(data)
        if n < 12:
            raise RtpParseError("RTP packet shorter than its fixed header")
        b0 = data[0]
        if b0 >> 6 != 2:
            raise RtpParseError("RTP version is not 2")
        b1 = data[1]
        self.data = data
        self.marker = b1 >> 7
        self.payload_type = b1 & 0x7F
        self.seq, self.timestamp, self.ssrc = _SEQ_TS_SSRC.unpack_from(data, 2)
        pos = 12 + 4 * (b0 & 0x0F)
        self.ext_profile = 0
        self.ext_start = self.ext_end = pos
        if b0 & 0x10:
            if pos + 4 > n:
                raise RtpParseError("RTP extension header truncated")
            self.ext_profile, words = _EXT_HDR.unpack_from(data, pos)
            self.ext_start = pos + 4
            pos = self.ext_end = pos + 4 + 4 * words
        end = n
        if b0 & 0x20:
            pad = data[-1]
            if pad == 0 or pad > n - pos:
                raise RtpParseError("RTP padding length invalid")
            end = n - pad
        if pos > end:
            raise RtpParseError("RTP header longer than packet")
        self.payload_start = pos
        self.payload_end = end

    @property
    def payload(self) -> bytes:
        return self.data[self.payload_start:self.payload_end]

    @property
    def payload_size(self) -> int:
        return self.payload_end - self.payload_start

    def extension(self, ext_id: int) -> Optional[bytes]:
        """Value of a header extension by its negotiated id, or None."""
        if not ext_id or self.ext_start == self.ext_end:
            return None
        return find_extension(self.data, self.ext_start, self.ext_end, self.ext_profile, ext_id)


def find_extension(data: bytes, start: int, end: int, profile: int, ext_id: int) -> Optional[bytes]:
    pos = start
    if profile == ONE_BYTE_PROFILE:
        while pos < end:
            b = data[pos]
            if b == 0:  # padding
                pos += 1
                continue
            xid = b >> 4
            length = (b & 0x0F) + 1
            if xid == 15:
                return None
            if xid == ext_id:
                return data[pos + 1:pos + 1 + length] if pos + 1 + length <= end else None
            pos += 1 + length
    elif profile & TWO_BYTE_PROFILE_MASK == TWO_BYTE_PROFILE:
        while pos + 1 < end:
            xid = data[pos]
            if xid == 0:
                pos += 1
                continue
            length = data[pos + 1]
            if xid == ext_id:
                return data[pos + 2:pos + 2 + length] if pos + 2 + length <= end else None
            pos += 2 + length
    return None


def one_byte_extensions(items: list[tuple[int, bytes]]) -> bytes:
    """An RFC 8285 one-byte extension block (with its 4-byte header), or b'' for no items."""
    if not items:
        return b""
    body = b"".join(bytes([(xid << 4) | (len(value) - 1)]) + value for xid, value in items)
    body += b"\x00" * (-len(body) % 4)
    return _EXT_HDR.pack(ONE_BYTE_PROFILE, len(body) // 4) + body


def build_header(marker: int, payload_type: int, seq: int, timestamp: int, ssrc: int,
                 extensions: bytes = b"") -> bytearray:
    """A fresh 12-byte header (plus extension block) with no CSRCs."""
    b0 = 0x90 if extensions else 0x80
    return bytearray(_HDR.pack(b0, (marker << 7) | payload_type, seq & 0xFFFF,
                               timestamp & 0xFFFFFFFF, ssrc) + extensions)


def abs_send_time(now: float) -> bytes:
    """abs-send-time extension value: 6.18 fixed-point seconds, 24 bits."""
    return (int(now * (1 << 18)) & 0xFFFFFF).to_bytes(3, "big")


def seq_newer(a: int, b: int) -> bool:
    """True when 16-bit sequence number a is after b (RFC 1982 serial arithmetic)."""
    return a != b and ((a - b) & 0xFFFF) < 0x8000


def seq_diff(a: int, b: int) -> int:
    """Signed distance a - b between 16-bit sequence numbers."""
    d = (a - b) & 0xFFFF
    return d - 0x10000 if d >= 0x8000 else d
