"""Per-viewer rewriting of sequence numbers, timestamps and VP8 picture ids across source changes.

A viewer sees one continuous stream even when the packets behind it change source (teacher reconnects,
later: layer switches): every switch starts on a keyframe and continues numbering where the last one ended.
Pure logic with time passed in.
"""
from __future__ import annotations

from typing import Optional

from .rtp_header import seq_diff

MAX_EPOCHS = 4


class StreamMunger:
    __slots__ = ("source", "seq_offset", "ts_offset", "pid_offset", "tl0_offset", "start_seq",
                 "last_seq", "last_ts", "last_pid", "last_tl0", "last_time", "epochs", "switches")

    def __init__(self, initial_seq: int = 0, initial_ts: int = 0) -> None:
        self.source: object = None
        self.seq_offset = 0
        self.ts_offset = 0
        self.pid_offset = 0
        self.tl0_offset = 0
        self.start_seq = 0
        self.last_seq: int = (initial_seq - 1) & 0xFFFF
        self.last_ts: int = initial_ts
        self.last_pid: Optional[int] = None
        self.last_tl0: Optional[int] = None
        self.last_time: Optional[float] = None
        # (first output seq, source, seq, ts, picture id and tl0 offsets) of the last few sources
        self.epochs: list[tuple[int, object, int, int, int, int]] = []
        self.switches = 0

    def start(self, source: object, seq: int, ts: int, now: float, clock_rate: int,
              picture_id: Optional[int] = None, tl0: Optional[int] = None) -> None:
        """Continue the output stream with a new source whose first forwarded packet is (seq, ts)."""
        out_seq = (self.last_seq + 1) & 0xFFFF
        if self.last_time is None:
            out_ts = self.last_ts
        else:  # keep real time: the gap stays a gap (at least one tick so timestamps never repeat)
            out_ts = self.last_ts + max(1, round((now - self.last_time) * clock_rate))
        self.seq_offset = (out_seq - seq) & 0xFFFF
        self.ts_offset = (out_ts - ts) & 0xFFFFFFFF
        self.pid_offset = 0 if picture_id is None or self.last_pid is None else (self.last_pid + 1 - picture_id)
        self.tl0_offset = 0 if tl0 is None or self.last_tl0 is None else (self.last_tl0 + 1 - tl0)
        self.source = source
        self.start_seq = seq
        self.epochs.append((out_seq, source, self.seq_offset, self.ts_offset, self.pid_offset, self.tl0_offset))
        del self.epochs[:-MAX_EPOCHS]
        self.switches += 1

    def map(self, seq: int, ts: int, now: float) -> Optional[tuple[int, int]]:
        """Output (seq, ts) for a packet of the current source; None if it predates the switch."""
        if seq_diff(seq, self.start_seq) < 0:
            return None
        out_seq = (seq + self.seq_offset) & 0xFFFF
        out_ts = (ts + self.ts_offset) & 0xFFFFFFFF
        if seq_diff(out_seq, self.last_seq) > 0:
            self.last_seq = out_seq
            self.last_ts = out_ts
            self.last_time = now
        return out_seq, out_ts

    def note_vp8(self, picture_id: Optional[int], tl0: Optional[int], bits: int) -> None:
        """Remember the last output PictureID/TL0PICIDX so a switch can continue them."""
        if picture_id is not None:
            self.last_pid = (picture_id + self.pid_offset) & (0x7FFF if bits == 15 else 0x7F)
        if tl0 is not None:
            self.last_tl0 = (tl0 + self.tl0_offset) & 0xFF

    def to_source(self, out_seq: int) -> Optional[tuple[object, int, tuple]]:
        """Which source packet an output sequence number carried, and that epoch (to answer a NACK)."""
        for epoch in reversed(self.epochs):
            if seq_diff(out_seq, epoch[0]) >= 0:
                return epoch[1], (out_seq - epoch[2]) & 0xFFFF, epoch
        return None
