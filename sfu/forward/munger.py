"""Per-viewer rewriting of sequence numbers, timestamps and VP8 picture ids across source changes and drops.

A viewer sees one continuous stream even when the packets behind it change source (teacher reconnects,
simulcast layer switches) or when some are left out (VP8 temporal layers above the viewer's frame rate):
every switch starts on a keyframe and continues numbering where the last one ended, and dropped packets and
pictures are renumbered away so the viewer sees no holes that look like loss. Pure logic with time passed in.
"""
from __future__ import annotations

from collections import deque
from typing import Generic, Optional, TypeVar

from sfu.rtp.rtp_header import seq_diff

S = TypeVar("S")   # what a source is (the consumer's: an inbound stream); the munger only tells them apart

HISTORY = 1024    # output packets remembered for answering NACKs
DROP_WINDOW = 512  # recent drops remembered for renumbering late packets


class DropCounter:
    """Counts values left out of a wrapping counter (sequence numbers, picture ids), so that the values kept
    can be renumbered without holes, including ones that arrive late."""

    __slots__ = ("mod", "half", "highest", "dropped", "count")

    def __init__(self, bits: int) -> None:
        self.mod = 1 << bits
        self.half = self.mod >> 1
        self.highest: Optional[int] = None
        self.dropped: deque[int] = deque(maxlen=DROP_WINDOW)
        self.count = 0

    def _diff(self, a: int, b: int) -> int:
        d = (a - b) % self.mod
        return d - self.mod if d >= self.half else d

    def see(self, v: int) -> None:
        if self.highest is None or self._diff(v, self.highest) > 0:
            self.highest = v

    def drop(self, v: int) -> bool:
        """Leave `v` out. True when renumbering absorbs it; False when it is late (older than values already
        numbered): its output slot exists and must be filled some other way."""
        if self.highest is not None and self._diff(v, self.highest) <= 0:
            return False
        self.highest = v
        self.dropped.append(v)
        self.count += 1
        return True

    def before(self, v: int) -> int:
        """How many values older than `v` were left out."""
        n = self.count
        if self.highest is None or self._diff(v, self.highest) > 0:
            return n
        for d in reversed(self.dropped):
            if self._diff(d, v) < 0:
                break
            n -= 1
        return n


class Epoch(Generic[S]):
    """One stretch of output from one source: the offsets that map its numbering onto the output's."""

    __slots__ = ("source", "seq_offset", "ts_offset", "pid_offset", "tl0_offset", "pid_mask", "seq_drops",
                 "pid_drops", "start_seq")

    def __init__(self, source: S, start_seq: int, seq_offset: int, ts_offset: int, pid_offset: int,
                 tl0_offset: int, pid_bits: int) -> None:
        self.source = source
        self.start_seq = start_seq
        self.seq_offset = seq_offset
        self.ts_offset = ts_offset
        self.pid_offset = pid_offset
        self.tl0_offset = tl0_offset
        self.pid_mask = (1 << pid_bits) - 1
        self.seq_drops = DropCounter(16)
        self.pid_drops = DropCounter(pid_bits)

    def out_seq(self, seq: int) -> int:
        return (seq + self.seq_offset - self.seq_drops.before(seq)) & 0xFFFF

    def out_pid(self, pid: int) -> int:
        return (pid + self.pid_offset - self.pid_drops.before(pid)) & self.pid_mask

    def out_tl0(self, tl0: int) -> int:
        return (tl0 + self.tl0_offset) & 0xFF


class StreamMunger(Generic[S]):
    __slots__ = ("epoch", "last_seq", "last_ts", "last_pid", "last_tl0", "last_time", "switches",
                 "_sent_seq", "_sent_src", "_sent_epoch", "dropped", "fills")

    def __init__(self, initial_seq: int = 0, initial_ts: int = 0) -> None:
        self.epoch: Optional[Epoch[S]] = None
        self.last_seq: int = (initial_seq - 1) & 0xFFFF
        self.last_ts: int = initial_ts
        self.last_pid: Optional[int] = None   # last output PictureID / TL0PICIDX, to continue across switches
        self.last_tl0: Optional[int] = None
        self.last_time: Optional[float] = None
        self.switches = 0
        self.dropped = 0
        self.fills = 0
        # output seq -> (source seq, epoch) of what was sent, to answer NACKs
        self._sent_seq = [-1] * HISTORY
        self._sent_src = [0] * HISTORY
        self._sent_epoch: list[Optional[Epoch[S]]] = [None] * HISTORY

    @property
    def source(self) -> Optional[S]:
        return self.epoch.source if self.epoch is not None else None

    def start(self, source: S, seq: int, ts: int, now: float, clock_rate: int,
              picture_id: Optional[int] = None, tl0: Optional[int] = None, pid_bits: int = 15) -> Epoch[S]:
        """Continue the output stream with a new source whose first forwarded packet is (seq, ts)."""
        out_seq = (self.last_seq + 1) & 0xFFFF
        if self.last_time is None:
            out_ts = self.last_ts
        else:  # keep real time: the gap stays a gap (at least one tick so timestamps never repeat)
            out_ts = self.last_ts + max(1, round((now - self.last_time) * clock_rate))
        mask = (1 << pid_bits) - 1
        pid_offset = 0 if picture_id is None or self.last_pid is None else (self.last_pid + 1 - picture_id) & mask
        tl0_offset = 0 if tl0 is None or self.last_tl0 is None else (self.last_tl0 + 1 - tl0) & 0xFF
        self.epoch = Epoch(source, seq, (out_seq - seq) & 0xFFFF, (out_ts - ts) & 0xFFFFFFFF,
                           pid_offset, tl0_offset, pid_bits)
        self.switches += 1
        return self.epoch

    def map(self, seq: int, ts: int, now: float) -> Optional[tuple[int, int]]:
        """Output (seq, ts) for a forwarded packet of the current source; None if it predates the switch."""
        e = self.epoch
        if e is None or (seq - e.start_seq) & 0xFFFF >= 0x8000:
            return None
        drops = e.seq_drops
        if drops.count:
            drops.see(seq)
            out_seq = e.out_seq(seq)
        else:  # nothing left out yet (the usual case): plain offset
            h = drops.highest
            if h is None or 0 < (seq - h) & 0xFFFF < 0x8000:
                drops.highest = seq
            out_seq = (seq + e.seq_offset) & 0xFFFF
        out_ts = (ts + e.ts_offset) & 0xFFFFFFFF
        if 0 < (out_seq - self.last_seq) & 0xFFFF < 0x8000:
            self.last_seq = out_seq
            self.last_ts = out_ts
            self.last_time = now
        i = out_seq % HISTORY
        self._sent_seq[i] = out_seq
        self._sent_src[i] = seq
        self._sent_epoch[i] = e
        return out_seq, out_ts

    def drop(self, seq: int, ts: int) -> Optional[tuple[int, int]]:
        """Leave a packet of the current source out. None when renumbering absorbs it; else the (seq, ts)
        slot the viewer will miss, to be filled with padding (the packet came late, after later ones)."""
        e = self.epoch
        if e is None or seq_diff(seq, e.start_seq) < 0:
            return None
        self.dropped += 1
        if e.seq_drops.drop(seq):
            return None
        self.fills += 1
        return e.out_seq(seq), (ts + e.ts_offset) & 0xFFFFFFFF

    def drop_picture(self, picture_id: int) -> None:
        """A whole VP8 picture is left out (at its first packet): later picture ids close the gap."""
        if self.epoch is not None:
            self.epoch.pid_drops.drop(picture_id)

    def note_picture(self, picture_id: Optional[int], tl0: Optional[int]) -> tuple[Optional[int], Optional[int]]:
        """A forwarded picture's (PictureID, TL0PICIDX) as the viewer sees them; remembered for the next switch."""
        e = self.epoch
        out_pid = out_tl0 = None
        if e is not None:
            if picture_id is not None:
                e.pid_drops.see(picture_id)
                out_pid = e.out_pid(picture_id)
                self.last_pid = out_pid
            if tl0 is not None:
                out_tl0 = e.out_tl0(tl0)
                self.last_tl0 = out_tl0
        return out_pid, out_tl0

    def to_source(self, out_seq: int) -> Optional[tuple[S, int, Epoch[S]]]:
        """Which source packet an output sequence number carried, and its epoch (to answer a NACK)."""
        i = out_seq % HISTORY
        e = self._sent_epoch[i]
        if self._sent_seq[i] != out_seq or e is None:
            return None
        return e.source, self._sent_src[i], e
