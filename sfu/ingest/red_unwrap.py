"""A publisher's redundant audio (RFC 2198 over Opus) turned back into plain Opus at ingest, with the frames of
lost packets recovered from the redundancy of later ones.

This is the one place RED from a publisher is unwrapped: everything after it (the recorder, viewers, per-viewer
redundancy, relays to other nodes) sees plain Opus, as from a publisher without RED. The publisher's redundancy
is not passed through: it covers the publisher's uplink, while each classroom's link loses differently, so each
RED viewer gets redundancy built for its own link (`sfu/forward/audio_redundancy.py`) and a clean link none.

Which packet a redundant block belongs to is not on the wire: Chromium carries the frames of the packets it
sent just before, so the block nearest the primary is taken as sequence S−1, the one before as S−2, and a block
is used only when its timestamp fits between the packets already seen around that sequence. Each sequence
number is emitted at most once (a receiver's jitter buffer dedupes by it): a late original after its recovery,
or a duplicate, is dropped. Pure: packets in, packets out; malformed input is a drop counted by reason.
"""
from __future__ import annotations

from collections import Counter
from typing import NamedTuple, Optional

from sfu.rtp.red import parse_red
from sfu.rtp.rtp_header import RtpView, seq_diff

WINDOW = 100          # sequence numbers (2 s of 20 ms Opus) within which packets are deduped and recovered
MAX_REDUNDANT = 4     # Chromium sends one or two; more is not a sender we know
MAX_SSRCS = 4         # streams followed per publisher connection (a stray SSRC must not grow the state)
_RING = 256           # > WINDOW + the neighbours looked at
_NEIGHBOURS = 8       # how far around a lost sequence its timestamp is checked against packets seen


class Unwrapped(NamedTuple):
    view: RtpView
    recovered: bool   # rebuilt from a later packet's redundancy (not received itself)


def _ts_after(a: int, b: int) -> bool:
    """32-bit RTP timestamp a is later than b."""
    d = (a - b) & 0xFFFFFFFF
    return d != 0 and d < 0x80000000


class _Stream:
    """One SSRC: the highest sequence number, the first after a (re)start, and the timestamps of the sequence
    numbers seen (received or recovered) around them."""

    __slots__ = ("highest", "base", "probation", "used", "seqs", "stamps")

    def __init__(self, seq: int) -> None:
        self.highest = self.base = seq
        self.probation = -1   # the sequence number that would confirm a jump
        self.used = 0         # when it last had a packet (the unwrapper's packet count)
        self.seqs: list[int] = [-1] * _RING
        self.stamps: list[int] = [0] * _RING

    def seen(self, seq: int) -> Optional[int]:
        """The timestamp of `seq` if it was seen within the window."""
        i = seq % _RING
        if self.seqs[i] == seq and 0 <= seq_diff(self.highest, seq) <= WINDOW + _NEIGHBOURS:
            return self.stamps[i]
        return None

    def note(self, seq: int, timestamp: int) -> None:
        i = seq % _RING
        self.seqs[i], self.stamps[i] = seq, timestamp
        if seq_diff(seq, self.highest) > 0:
            self.highest = seq


class RedUnwrap:
    """Unwraps one payload type pair: `red_pt` carrying `opus_pt`. Feed it every packet of either type."""

    def __init__(self, red_pt: int, opus_pt: int) -> None:
        self.red_pt = red_pt
        self.opus_pt = opus_pt
        self.unwrapped = 0      # RED packets whose primary went on
        self.recovered = 0      # lost packets rebuilt from redundancy
        self.dropped: Counter[str] = Counter()   # by reason
        self._streams: dict[int, _Stream] = {}
        self._packets = 0

    def push(self, view: RtpView) -> list[Unwrapped]:
        """The plain Opus packets `view` stands for, in order: recovered ones first, then its own (none when it
        is dropped). A plain Opus packet comes back as it is, only deduped on a stream that has sent RED."""
        if view.payload_type != self.red_pt or view.payload_size == 0:
            if view.ssrc not in self._streams and view.payload_type != self.red_pt:
                return [Unwrapped(view, False)]
            stream = self._follow(view)
            if stream is None:
                return []
            stream.note(view.seq, view.timestamp)
            if view.payload_type == self.red_pt:   # padding only: nothing to unwrap, counted by the ingest
                view = self._rebuild(view, view.marker, view.seq, view.timestamp, b"")
            return [Unwrapped(view, False)]
        try:
            blocks = parse_red(view.data[view.payload_start:view.payload_end])
        except ValueError:
            self.dropped["malformed"] += 1
            return []
        if len(blocks) > MAX_REDUNDANT + 1:
            self.dropped["too_many_blocks"] += 1
            return []
        if any(b.payload_type != self.opus_pt for b in blocks):
            self.dropped["not_opus"] += 1
            return []
        stream = self._follow(view)
        if stream is None:
            return []
        out = self._recover(stream, view, blocks)
        stream.note(view.seq, view.timestamp)
        self.unwrapped += 1
        out.append(Unwrapped(self._rebuild(view, view.marker, view.seq, view.timestamp, blocks[-1].data), False))
        return out

    def _follow(self, view: RtpView) -> Optional[_Stream]:
        """The SSRC's state for this packet (None: seen already). A jump no reordering explains restarts it
        only once the next packet confirms it (RFC 3550 A.1, as the ingest after us does); until then the
        packet passes on its own. Nothing from before a start is recovered."""
        self._packets += 1
        stream = self._streams.get(view.ssrc)
        if stream is None:
            if len(self._streams) >= MAX_SSRCS:   # the stream quiet the longest goes (strays, not the voice)
                del self._streams[min(self._streams, key=lambda ssrc: self._streams[ssrc].used)]
            stream = self._streams[view.ssrc] = _Stream(view.seq)
        elif abs(seq_diff(view.seq, stream.highest)) > WINDOW:
            if view.seq != stream.probation:
                stream.probation = (view.seq + 1) & 0xFFFF
                return _Stream(view.seq)   # a stray, or a restart's first packet: followed by no one
            stream = self._streams[view.ssrc] = _Stream(view.seq)
        elif stream.seen(view.seq) is not None:
            self.dropped["duplicate"] += 1
            return None
        stream.used = self._packets
        return stream

    def _recover(self, stream: _Stream, view: RtpView, blocks: list) -> list[Unwrapped]:
        out: list[Unwrapped] = []
        redundant = blocks[:-1]
        previous_offset = 0x10000
        for distance, block in zip(range(len(redundant), 0, -1), redundant):
            offset = block.timestamp_offset
            if not 0 < offset < previous_offset or not block.data:
                previous_offset = min(previous_offset, offset)
                continue   # out of order, or an empty frame: nothing to place
            previous_offset = offset
            seq = (view.seq - distance) & 0xFFFF
            timestamp = (view.timestamp - offset) & 0xFFFFFFFF
            if seq_diff(seq, stream.base) <= 0 or seq_diff(stream.highest, seq) >= WINDOW \
                    or stream.seen(seq) is not None:
                continue   # before the stream (re)started, too old, or already there
            if not self._fits(stream, seq, timestamp, view.seq):
                self.dropped["unaligned_block"] += 1   # the block is not that sequence's frame: leave the gap
                continue
            stream.note(seq, timestamp)
            self.recovered += 1
            out.append(Unwrapped(self._rebuild(view, 0, seq, timestamp, block.data), True))
        return out

    @staticmethod
    def _fits(stream: _Stream, seq: int, timestamp: int, primary_seq: int) -> bool:
        """`timestamp` is after that of every packet seen just before `seq` and before those seen just after."""
        for k in range(1, _NEIGHBOURS + 1):
            before = stream.seen((seq - k) & 0xFFFF)
            if before is not None and not _ts_after(timestamp, before):
                return False
            after_seq = (seq + k) & 0xFFFF
            if after_seq != primary_seq and seq_diff(primary_seq, after_seq) > 0:
                after = stream.seen(after_seq)
                if after is not None and not _ts_after(after, timestamp):
                    return False
        return True

    def _rebuild(self, view: RtpView, marker: int, seq: int, timestamp: int, payload: bytes) -> RtpView:
        """A plain Opus packet with `view`'s header (SSRC, CSRCs, extensions) and these numbers."""
        header = bytearray(view.data[:view.payload_start])
        header[0] &= 0xDF   # the RED packet's padding is not carried over
        header[1] = (marker << 7) | self.opus_pt
        header[2:4] = seq.to_bytes(2, "big")
        header[4:8] = timestamp.to_bytes(4, "big")
        return RtpView(bytes(header) + payload)

    def dump(self) -> dict:
        return {"red_pt": self.red_pt, "opus_pt": self.opus_pt, "unwrapped": self.unwrapped,
                "recovered": self.recovered, "dropped": dict(self.dropped)}
