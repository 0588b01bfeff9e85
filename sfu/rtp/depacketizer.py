"""RTP video packets (possibly reordered, lost, duplicated) -> complete encoded frames, in order.

Runs on the event loop for every packet, so it only sorts and joins bytes. A frame is the run of packets
with one RTP timestamp from a frame start to its marker (or to the next timestamp). A hole is waited for
`hold` seconds (a retransmission may fill it); then the incomplete frame is dropped and the next frame that
provably starts a picture is released with `after_loss` set, so the decoder can wait for a keyframe.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

from sfu.rtp.codec_info import parse_vp8
from sfu.rtp.h264_depacketizer import h264_access_unit, h264_starts_picture
from sfu.rtp.rtp_header import RtpParseError, RtpView, seq_diff

HOLD = 0.1          # seconds a hole may block the frames behind it
MAX_SPAN = 512      # packets buffered behind a hole at most (bounds memory whatever the clock does)
RESET_JUMP = 3000   # a sequence jump this large is a new stream, not loss


@dataclass
class EncodedFrame:
    timestamp: int      # RTP timestamp of the source
    data: bytes         # a VP8 frame, or an H.264 Annex-B access unit
    keyframe: bool
    after_loss: bool    # frames before this one were dropped: decodable only from a keyframe
    arrival: float      # arrival time of its last packet


class _Packet:
    __slots__ = ("ts", "marker", "payload", "start", "arrival")

    def __init__(self, ts: int, marker: bool, payload: bytes, start: bool, arrival: float) -> None:
        self.ts = ts
        self.marker = marker
        self.payload = payload
        self.start = start
        self.arrival = arrival


def _vp8_start(payload: bytes) -> bool:
    d = parse_vp8(payload, 0, len(payload))
    return d is not None and d.start_of_partition and d.partition_id == 0


def _vp8_frame(payloads: list[bytes]) -> Optional[tuple[bytes, bool]]:
    parts = []
    keyframe = False
    for i, p in enumerate(payloads):
        d = parse_vp8(p, 0, len(p))
        if d is None:
            return None
        if i == 0:
            keyframe = d.keyframe
        parts.append(p[d.size:])
    frame = b"".join(parts)
    if len(frame) < 3:  # not even a frame tag; an empty one would be a flush for the decoder (EOF ever after)
        return None
    return frame, keyframe


# codec -> (does this payload start a picture, payloads of one frame -> (frame, keyframe) or None)
CODECS: dict[str, tuple[Callable[[bytes], bool], Callable[[list[bytes]], Optional[tuple[bytes, bool]]]]] = {
    "VP8": (_vp8_start, _vp8_frame),
    "H264": (h264_starts_picture, h264_access_unit),
}


class Depacketizer:
    def __init__(self, codec: str, hold: float = HOLD, max_span: int = MAX_SPAN) -> None:
        self.codec = codec
        self._starts, self._assemble = CODECS[codec]
        self.hold = hold
        self.max_span = max_span
        self._buf: dict[int, _Packet] = {}   # extended sequence number -> packet
        self._head = -1                      # next extended sequence number to release
        self._top = -1                       # highest extended sequence number seen
        self._ssrc = -1
        self._in_sync = False                # the packet before head ended a frame we released
        self._loss = True                    # nothing decodable released yet / dropped since
        self._dropped_ts = -1                # stragglers of a dropped frame are dropped too
        self.packets = self.duplicates = self.late = self.malformed = 0
        self.frames = self.frames_dropped = self.resets = 0

    def push(self, data: bytes, now: float) -> list[EncodedFrame]:
        """One RTP packet; returns the frames it completes (often none, sometimes several after a hole)."""
        try:
            v = RtpView(data)
        except RtpParseError:
            self.malformed += 1
            return []
        self.packets += 1
        if self._top < 0 or v.ssrc != self._ssrc:  # first packet, or the publisher reconnected
            if self._top >= 0:
                self.resets += 1
            self._reset(v.seq)
            self._ssrc = v.ssrc
            ext = v.seq
        else:
            ext = self._top + seq_diff(v.seq, self._top & 0xFFFF)
            if abs(ext - self._head) > RESET_JUMP:
                self.resets += 1
                self._reset(ext)
        if ext < self._head:
            self.late += 1
            return []
        if ext in self._buf:
            self.duplicates += 1
            return []
        payload = data[v.payload_start:v.payload_end]
        self._buf[ext] = _Packet(v.timestamp, bool(v.marker), payload, self._starts(payload), now)
        self._top = max(self._top, ext)
        return self._release(now)

    def _reset(self, ext: int) -> None:
        self._buf.clear()
        self._head = self._top = ext
        self._in_sync = False
        self._loss = True

    def _release(self, now: float) -> list[EncodedFrame]:
        out: list[EncodedFrame] = []
        buf = self._buf
        while buf:
            first = buf.get(self._head)
            if first is None:
                if not self._stalled(self._head, now):
                    break
                self._head = min(buf)
                self._in_sync = False
                self._loss = True
                continue
            if not self._in_sync and (not first.start or first.ts == self._dropped_ts):
                self._drop_frame(first.ts)  # its beginning is gone
                continue
            seq, complete = self._head, False
            while True:
                p = buf.get(seq)
                if p is None or p.ts != first.ts:
                    complete = p is not None  # a new timestamp ends the frame even without a marker
                    break
                if p.marker:
                    complete = True
                    seq += 1
                    break
                seq += 1
            if not complete:
                if not self._stalled(seq, now):
                    break
                self._drop_frame(first.ts)
                continue
            payloads = [buf.pop(s).payload for s in range(self._head, seq)]
            self._head = seq
            self._in_sync = True
            frame = self._assemble(payloads)
            if frame is None:
                self.malformed += 1
                self.frames_dropped += 1
                self._loss = True
                continue
            self.frames += 1
            out.append(EncodedFrame(first.ts, frame[0], frame[1], self._loss, now))
            self._loss = False
        return out

    def _stalled(self, missing: int, now: float) -> bool:
        """True when the hole at `missing` has blocked later packets for `hold`, or too many of them."""
        if self._top - missing > self.max_span:
            return True
        for s in range(missing + 1, self._top + 1):
            p = self._buf.get(s)
            if p is not None:
                return now - p.arrival >= self.hold
        return False

    def _drop_frame(self, ts: int) -> None:
        """Drop the frame at head (its packets up to the first hole or the next timestamp); head moves on."""
        while (p := self._buf.get(self._head)) is not None and p.ts == ts:
            del self._buf[self._head]
            self._head += 1
        if ts != self._dropped_ts:
            self.frames_dropped += 1
        self._dropped_ts = ts
        self._in_sync = False
        self._loss = True

    def stats(self) -> dict:
        return {"packets": self.packets, "frames": self.frames, "frames_dropped": self.frames_dropped,
                "duplicates": self.duplicates, "late": self.late, "malformed": self.malformed,
                "resets": self.resets, "buffered": len(self._buf)}
