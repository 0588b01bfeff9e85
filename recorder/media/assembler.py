"""Packets of one kind, as a track's sink sees them -> encoded frames placed on local time. Pure: time is passed in.

Video packets are depacketized (sfu/rtp/depacketizer.py: reordering, holes waited for a retransmission, frames after
a loss flagged); nothing is written until a keyframe, and after a loss or a new stream (reconnect, layer change)
the next frames wait for a keyframe again, which `keyframe_wanted` asks for. An Opus packet is one frame.
"""
from __future__ import annotations

import heapq
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Optional

from sfu.rtp.codec_info import vp8_keyframe_size
from sfu.rtp.depacketizer import CODECS, Depacketizer
from sfu.rtp.rtp_header import RtpParseError, RtpView

from recorder.media import h264
from recorder.media.timeline import SenderClock, StreamTimeline, signed32

AUDIO_CODECS = ("opus",)
VIDEO_CODECS = tuple(CODECS)          # VP8, H264
NACK_HOLD = 0.3                       # a hole waits this long for its retransmission before the frame is dropped


@dataclass(order=True)
class Frame:
    local: float                              # capture time on the local monotonic clock
    seq: int                                  # tie-break: arrival order
    kind: str = field(compare=False)
    data: bytes = field(compare=False)
    keyframe: bool = field(compare=False)
    codec: str = field(compare=False, default="")


class TrackInput:
    def __init__(self, kind: str, sender: SenderClock, sr_wait: float = 2.5, hold: float = NACK_HOLD) -> None:
        self.kind = kind
        self.sender = sender
        self.sr_wait = sr_wait
        self.hold = hold
        self.source: Any = None
        self.codec: Optional[str] = None
        self.depack: Optional[Depacketizer] = None
        self.timeline: Optional[StreamTimeline] = None
        self.pending: deque[tuple[int, bytes, bool, float]] = deque()   # (rtp ts, data, keyframe, arrival)
        self.need_keyframe = kind == "video"
        self.keyframe_wanted = False
        self.codec_private = b""              # H.264 avcC from the first keyframe with parameter sets
        self.size: Optional[tuple[int, int]] = None   # VP8 picture size from the last keyframe
        self.last_arrival = -1.0
        self._last_audio_ts: Optional[int] = None
        self._out: list[Frame] = []
        self._seq = 0
        self.packets = self.frames = self.waited_for_keyframe = self.unsupported = self.malformed = 0
        self.sr_frames = self.arrival_frames = 0   # frames placed by sender reports / by arrival (no SR)
        self.sources = 0

    def push(self, source: Any, codec: str, clock_rate: int, data: bytes, arrival: float,
             sr: Optional[tuple[int, int, float]]) -> None:
        """One RTP packet of `source` (a publisher stream; a different object starts a new stream)."""
        self.packets += 1
        self.last_arrival = arrival
        if source is not self.source:
            self._new_source(source, codec, clock_rate, arrival)
        if self.timeline is None:
            self.unsupported += 1
            return
        try:
            view = RtpView(data)
        except RtpParseError:
            self.malformed += 1
            return
        self.timeline.on_packet(view.timestamp, arrival, sr)
        if self.depack is not None:
            for f in self.depack.push(data, arrival):
                self._video_frame(f.timestamp, f.data, f.keyframe, f.after_loss, f.arrival)
        else:
            ts = view.timestamp
            if self._last_audio_ts is not None and signed32(ts - self._last_audio_ts) <= 0:
                return  # duplicate or late: Opus frames are written in order
            self._last_audio_ts = ts
            self.pending.append((ts, data[view.payload_start:view.payload_end], True, arrival))
            self.frames += 1

    def _new_source(self, source: Any, codec: str, clock_rate: int, now: float) -> None:
        self._resolve(now, force=True)   # frames of the old stream keep their old clock
        self.source = source
        self.sources += 1
        self.codec = codec
        self.depack = None
        self.timeline = None
        self._last_audio_ts = None
        supported = VIDEO_CODECS if self.kind == "video" else AUDIO_CODECS
        if codec not in supported:
            return
        self.timeline = StreamTimeline(clock_rate, self.sender, self.sr_wait)
        if self.kind == "video":
            self.depack = Depacketizer(codec, hold=self.hold)
            self.need_keyframe = True
            self.keyframe_wanted = True

    def _video_frame(self, ts: int, data: bytes, keyframe: bool, after_loss: bool, arrival: float) -> None:
        if after_loss and not keyframe:
            self.need_keyframe = True
        if self.need_keyframe and not keyframe:
            self.waited_for_keyframe += 1
            self.keyframe_wanted = True
            return
        self.need_keyframe = False
        if keyframe:
            self.keyframe_wanted = False
        if self.codec == "H264":
            if keyframe and not self.codec_private:
                self.codec_private = h264.avcc_record(data) or b""
            data = h264.to_avcc(data)
        elif keyframe and self.codec == "VP8":
            self.size = vp8_keyframe_size(data, 0, len(data)) or self.size
        self.pending.append((ts, data, keyframe, arrival))
        self.frames += 1

    def _resolve(self, now: float, force: bool = False) -> None:
        tl = self.timeline
        if not self.pending or tl is None:
            return
        if not (force or tl.ready(now)):
            return
        if tl.sr is None and tl.first_arrival is None:
            return
        if tl.sr is not None:
            self.sr_frames += len(self.pending)
        else:
            self.arrival_frames += len(self.pending)
        while self.pending:
            ts, data, kf, arrival = self.pending.popleft()
            self._seq += 1
            self._out.append(Frame(tl.to_local(ts, arrival), self._seq, self.kind, data, kf, self.codec or ""))

    def take(self, now: float) -> list[Frame]:
        """The frames whose place on the timeline is known by `now`."""
        self._resolve(now)
        out, self._out = self._out, []
        return out

    def blocking_since(self) -> Optional[float]:
        """Arrival of the oldest frame still waiting for its clock (frames of other tracks should wait for it)."""
        return self.pending[0][3] if self.pending and self.timeline is not None and self.timeline.sr is None else None

    def flush(self, now: float) -> list[Frame]:
        """Everything, whatever waited (the recording stops)."""
        self._resolve(now, force=True)
        out, self._out = self._out, []
        return out


class Interleaver:
    """Frames of all tracks in capture-time order, released once no earlier frame can still arrive."""

    def __init__(self) -> None:
        self._heap: list[Frame] = []

    def push(self, frame: Frame) -> None:
        heapq.heappush(self._heap, frame)

    def pop(self, watermark: float) -> list[Frame]:
        out = []
        while self._heap and self._heap[0].local <= watermark:
            out.append(heapq.heappop(self._heap))
        return out

    def __len__(self) -> int:
        return len(self._heap)
