"""RTP payload for redundant audio (RFC 2198), as WebRTC uses it for Opus: the packet's own frame (primary) after
copies of one or two earlier frames, so that one lost packet's frame arrives in the next. Pure: bytes in, bytes
out; malformed input raises ValueError.

    redundant block header (4 bytes): F=1 · block PT (7) · timestamp offset (14) · block length (10)
    primary block header (1 byte):    F=0 · block PT (7)
    then the redundant blocks' data in order, then the primary's.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

MAX_OFFSET = (1 << 14) - 1
MAX_BLOCK = (1 << 10) - 1


@dataclass(frozen=True, slots=True)
class RedBlock:
    payload_type: int
    timestamp_offset: int   # how much earlier than the packet's timestamp (0 for the primary)
    data: bytes


def build_red(primary_pt: int, primary: bytes, redundant: Sequence[RedBlock]) -> bytes:
    """A RED payload: `redundant` (oldest first) then the primary. Blocks that cannot be carried (too old, too
    big) are left out rather than failing the packet."""
    blocks = [b for b in redundant if 0 < b.timestamp_offset <= MAX_OFFSET and len(b.data) <= MAX_BLOCK]
    head = bytearray()
    for b in blocks:
        head += (0x80000000 | (b.payload_type & 0x7F) << 24 | b.timestamp_offset << 10 | len(b.data)).to_bytes(4, "big")
    head.append(primary_pt & 0x7F)
    return bytes(head) + b"".join(b.data for b in blocks) + primary


def parse_red(payload: bytes | memoryview) -> list[RedBlock]:
    """The blocks of a RED payload, oldest first, the primary last (timestamp offset 0)."""
    headers: list[tuple[int, int, int]] = []
    pos = 0
    n = len(payload)
    while True:
        if pos >= n:
            raise ValueError("RED payload ends inside its block headers")
        b0 = payload[pos]
        if not b0 & 0x80:
            headers.append((b0 & 0x7F, 0, -1))
            pos += 1
            break
        if pos + 4 > n:
            raise ValueError("RED payload ends inside a block header")
        word = int.from_bytes(payload[pos:pos + 4], "big")
        headers.append(((word >> 24) & 0x7F, (word >> 10) & MAX_OFFSET, word & MAX_BLOCK))
        pos += 4
    blocks = []
    for pt, offset, length in headers:
        end = n if length < 0 else pos + length
        if end > n:
            raise ValueError("RED block runs past the payload")
        blocks.append(RedBlock(pt, offset, bytes(payload[pos:end])))
        pos = end
    return blocks
