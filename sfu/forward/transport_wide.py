"""One viewer connection's transport-wide sequence numbers: every RTP packet sent on it (media, retransmission,
probe, padding; audio and video alike) carries the next number in the transport-cc header extension, and the
send-side estimator hears of it with its send time and size, to match against the viewer's feedback later."""
from __future__ import annotations

from typing import Callable

from sfu.rtp.rtp_header import one_byte_extensions

# The extension is always the first element of the one-byte block we build: its 2-byte value then sits right
# after the 12-byte header, the 4-byte block header and the element's 1-byte id/length.
SEQ_OFFSET = 12 + 4 + 1
PLACEHOLDER = b"\x00\x00"

PacketSent = Callable[[float, int, int, bool], None]   # (now, transport seq, size, is a probe)


class TransportWideSequencer:
    __slots__ = ("ext_id", "next_seq", "_on_sent")

    def __init__(self, ext_id: int, on_sent: PacketSent, first_seq: int = 1) -> None:
        self.ext_id = ext_id
        self.next_seq = first_seq & 0xFFFF
        self._on_sent = on_sent

    def extensions(self, more: list[tuple[int, bytes]]) -> bytes:
        """An extension block with this sequence's element first (to be stamped) and `more` after it."""
        return one_byte_extensions([(self.ext_id, PLACEHOLDER), *more])

    def stamp(self, packet: bytearray, now: float, probe: bool = False) -> int:
        """Number a packet about to be sent (built with `extensions`), note it for the estimator; its number."""
        seq = self.next_seq
        self.next_seq = (seq + 1) & 0xFFFF
        packet[SEQ_OFFSET] = seq >> 8
        packet[SEQ_OFFSET + 1] = seq & 0xFF
        self._on_sent(now, seq, len(packet), probe)
        return seq
