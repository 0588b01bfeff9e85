"""The transport-wide congestion control feedback packet (RTCP RTPFB, PT=205, FMT=15;
draft-holmer-rmcat-transport-wide-cc-extensions-01) and the transport-wide sequence number header extension.

    header (V=2, P, FMT=15, PT=205, length) · sender SSRC · media SSRC
    base sequence number (16) · packet status count (16) · reference time (24, 64 ms units) · feedback count (8)
    packet status chunks (16 bits each) · receive deltas (1 or 2 bytes each) · padding to 32 bits

A chunk is a run (0 · symbol:2 · length:13) or a status vector (1 · 0 · 14 one-bit symbols, or 1 · 1 · 7 two-bit
symbols). Symbols: 0 not received, 1 received with a small delta (one unsigned byte), 2 received with a large or
negative delta (two bytes, signed), 3 reserved. Deltas count 250 µs; the first is relative to the reference time,
each next one to the previous received packet.

Malformed input raises ValueError and nothing else: this reads bytes a peer chose.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Iterator, Optional, Sequence

RTCP_RTPFB = 205
FMT_TRANSPORT_CC = 15
REFERENCE_TICK_S = 0.064
REFERENCE_WRAP = 1 << 24
DELTA_TICK_S = 0.00025
MAX_STATUS_COUNT = 0xFFFF
TRANSPORT_CC_EXTENSION_URI = "http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01"

NOT_RECEIVED = 0
SMALL_DELTA = 1
LARGE_DELTA = 2
RESERVED = 3

_FIXED = struct.Struct("!BBHIIHHI")  # header, SSRCs, base, count, reference time << 8 | feedback count
_RUN_MAX = 0x1FFF


@dataclass(slots=True)
class TransportFeedback:
    """One parsed feedback packet. `arrivals[i]` is about sequence number base_seq + i (mod 2^16): its arrival in
    seconds after the reference time, or None when it was not received. The reference time itself is 24 bits of
    the receiver's clock and wraps (every ~12 days): unwrapping it across packets is the consumer's job."""
    sender_ssrc: int
    media_ssrc: int
    base_seq: int
    reference_ticks: int
    feedback_count: int
    arrivals: list[Optional[float]]

    @property
    def reference_time(self) -> float:
        """The reference time in seconds (still wrapped at 2^24 ticks)."""
        return self.reference_ticks * REFERENCE_TICK_S

    def items(self) -> Iterator[tuple[int, Optional[float]]]:
        """(16-bit transport sequence number, arrival after the reference time or None) in sequence order."""
        base = self.base_seq
        for i, arrival in enumerate(self.arrivals):
            yield (base + i) & 0xFFFF, arrival


def parse_feedback(data: bytes) -> TransportFeedback:
    """Parse one feedback packet (the RTCP packet at the start of `data`, as long as its length field says)."""
    if len(data) < _FIXED.size:
        raise ValueError("transport feedback shorter than its fixed part")
    b0, pt, length_words, sender, media, base, count, ref_and_count = _FIXED.unpack_from(data)
    if b0 >> 6 != 2 or b0 & 0x1F != FMT_TRANSPORT_CC or pt != RTCP_RTPFB:
        raise ValueError("not a transport-wide congestion control feedback packet")
    end = (length_words + 1) * 4
    if end < _FIXED.size or end > len(data):
        raise ValueError("transport feedback length field does not match the data")
    if b0 & 0x20:
        padding = data[end - 1]
        if padding == 0 or padding > end - _FIXED.size:
            raise ValueError("transport feedback padding is invalid")
        end -= padding
    if count == 0:
        raise ValueError("transport feedback reports no packets")
    symbols, pos = _read_chunks(data, _FIXED.size, end, count)
    arrivals = _read_deltas(data, pos, end, symbols)
    return TransportFeedback(sender, media, base, ref_and_count >> 8, ref_and_count & 0xFF, arrivals)


def _read_chunks(data: bytes, pos: int, end: int, count: int) -> tuple[bytearray, int]:
    symbols = bytearray()
    while len(symbols) < count:
        if pos + 2 > end:
            raise ValueError("packet status chunks end before the status count is reached")
        chunk = (data[pos] << 8) | data[pos + 1]
        pos += 2
        if not chunk & 0x8000:
            symbols += bytes(((chunk >> 13) & 3,)) * (chunk & _RUN_MAX)
        elif not chunk & 0x4000:
            symbols.extend((chunk >> shift) & 1 for shift in range(13, -1, -1))
        else:
            symbols.extend((chunk >> shift) & 3 for shift in range(12, -1, -2))
    del symbols[count:]  # the last chunk may describe more packets than were counted
    if RESERVED in symbols:
        raise ValueError("reserved packet status symbol")
    return symbols, pos


def _read_deltas(data: bytes, pos: int, end: int, symbols: bytearray) -> list[Optional[float]]:
    arrivals: list[Optional[float]] = [None] * len(symbols)
    ticks = 0
    for i, symbol in enumerate(symbols):
        if symbol == NOT_RECEIVED:
            continue
        if symbol == SMALL_DELTA:
            if pos >= end:
                raise ValueError("receive deltas end early")
            ticks += data[pos]
            pos += 1
        else:
            if pos + 2 > end:
                raise ValueError("receive deltas end early")
            ticks += int.from_bytes(data[pos:pos + 2], "big", signed=True)
            pos += 2
        arrivals[i] = ticks * DELTA_TICK_S
    return arrivals


def build_feedback(sender_ssrc: int, media_ssrc: int, base_seq: int, reference_ticks: int, feedback_count: int,
                   arrivals: Sequence[Optional[float]]) -> bytes:
    """A feedback packet about sequence numbers base_seq, base_seq + 1, ...: `arrivals` in seconds after the
    reference time (None: not received). Raises ValueError when a delta does not fit in 16 bits (over ~8 s): the
    caller starts a new packet there. Padded with the P bit and a count byte, as libwebrtc writes it."""
    if not 0 < len(arrivals) <= MAX_STATUS_COUNT:
        raise ValueError("a feedback packet reports 1 to 65535 packets")
    symbols = bytearray()
    deltas = bytearray()
    previous = 0
    for arrival in arrivals:
        if arrival is None:
            symbols.append(NOT_RECEIVED)
            continue
        ticks = round(arrival / DELTA_TICK_S)  # absolute ticks: rounding does not accumulate over the packet
        delta = ticks - previous
        previous = ticks
        if 0 <= delta <= 0xFF:
            symbols.append(SMALL_DELTA)
            deltas.append(delta)
        elif -0x8000 <= delta <= 0x7FFF:
            symbols.append(LARGE_DELTA)
            deltas += delta.to_bytes(2, "big", signed=True)
        else:
            raise ValueError("a receive delta does not fit in 16 bits")
    body = _encode_chunks(symbols) + deltas
    padding = -(_FIXED.size + len(body)) % 4
    if padding:
        body += bytes(padding - 1) + bytes((padding,))
    length_words = (_FIXED.size + len(body)) // 4 - 1
    fixed = _FIXED.pack(0x80 | (0x20 if padding else 0) | FMT_TRANSPORT_CC, RTCP_RTPFB, length_words,
                        sender_ssrc & 0xFFFFFFFF, media_ssrc & 0xFFFFFFFF, base_seq & 0xFFFF, len(arrivals),
                        ((reference_ticks % REFERENCE_WRAP) << 8) | (feedback_count & 0xFF))
    return fixed + bytes(body)


def _encode_chunks(symbols: bytearray) -> bytearray:
    """Greedy: long runs as run chunks, else a one-bit vector when the next 14 symbols allow it, else two-bit."""
    out = bytearray()
    i, n = 0, len(symbols)
    while i < n:
        first = symbols[i]
        run = 1
        while i + run < n and run < _RUN_MAX and symbols[i + run] == first:
            run += 1
        window = symbols[i:i + 14]
        if run >= 14 or (run >= 7 and max(window) > SMALL_DELTA):
            chunk = (first << 13) | run
            i += run
        elif max(window) <= SMALL_DELTA:
            chunk = 0x8000
            for k, symbol in enumerate(window):
                chunk |= symbol << (13 - k)
            i += len(window)
        else:
            chunk = 0xC000
            for k, symbol in enumerate(window[:7]):
                chunk |= symbol << (12 - 2 * k)
            i += min(7, len(window))
        out += chunk.to_bytes(2, "big")
    return out


def split_transport_feedback(data: bytes) -> tuple[bytes, list[bytes]]:
    """The compound without its transport feedback parts, and those parts. aiortc reads transport feedback as a
    NACK list and refuses the whole compound over its padding, so those parts never reach it."""
    pos, n = 0, len(data)
    while pos + 4 <= n:   # the common case: no transport feedback, nothing copied
        if data[pos + 1] == RTCP_RTPFB and data[pos] & 0x1F == FMT_TRANSPORT_CC:
            break
        pos += (((data[pos + 2] << 8) | data[pos + 3]) + 1) * 4
    else:
        return data, []
    rest, feedback = bytearray(data[:pos]), []
    while pos < n:
        if pos + 4 > n:
            raise ValueError("RTCP compound ends inside a header")
        end = pos + (((data[pos + 2] << 8) | data[pos + 3]) + 1) * 4
        if end > n:
            raise ValueError("RTCP length field overruns the compound")
        if data[pos + 1] == RTCP_RTPFB and data[pos] & 0x1F == FMT_TRANSPORT_CC:
            feedback.append(data[pos:end])
        else:
            rest += data[pos:end]
        pos = end
    return bytes(rest), feedback


def transport_seq_extension(seq: int) -> bytes:
    """The header extension's value for a transport-wide sequence number (16 bits, big-endian)."""
    return (seq & 0xFFFF).to_bytes(2, "big")


def read_transport_seq(value: bytes) -> int:
    if len(value) != 2:
        raise ValueError("transport-wide sequence number extension must be 2 bytes")
    return (value[0] << 8) | value[1]
