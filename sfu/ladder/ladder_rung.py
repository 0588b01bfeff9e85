"""One rung of the server-side ladder on the worker thread: frame-rate gate, keyframe schedule, a libvpx
VP8 encoder with three temporal layers, and the RTP packetizer whose numbering outlives encoder restarts."""
from __future__ import annotations

import fractions
import random
import time
from dataclasses import dataclass
from typing import Optional

import av
from av.video.frame import PictureType

from sfu.rtp.vp8_packetizer import Vp8Packetizer, l1t3_layer

KEYFRAME_INTERVAL = 3.0       # seconds of media time between periodic keyframes
KEYFRAME_MIN_INTERVAL = 0.5   # requested keyframes: at most one per this (DESIGN §5)
TL_SHARE = (0.4, 0.6, 1.0)    # cumulative bitrate of TL0, TL0+1, all (libwebrtc's 3-layer split)


@dataclass(frozen=True)
class Rung:
    width: int
    height: int
    bitrate: int
    fps: int


def fit_within(src_w: int, src_h: int, box_w: int, box_h: int) -> tuple[int, int]:
    """The largest even size within the box with the source's aspect ratio, never above the source."""
    scale = min(box_w / src_w, box_h / src_h, 1.0)
    return max(2, round(src_w * scale / 2) * 2), max(2, round(src_h * scale / 2) * 2)


class FrameRateGate:
    """Keeps at most `fps` frames per second of media time, evenly spaced (30 -> 15 keeps every other one).
    A frame up to a quarter interval early still counts as on time: capture timestamps jitter."""

    def __init__(self, fps: int, clock_rate: int = 90000) -> None:
        self.interval = clock_rate / fps
        self.due: Optional[float] = None

    def take(self, ts: int) -> bool:
        if self.due is not None and self.due - 2 * self.interval < ts < self.due - self.interval / 4:
            return False
        on_grid = self.due is not None and abs(ts - self.due) < self.interval
        self.due = self.due + self.interval if on_grid else ts + self.interval  # type: ignore[operator]
        return True


class KeyframeSchedule:
    """Whether the next encoded frame must be a keyframe: the first one, every `interval`, and on request
    (several requests before it are one keyframe; one right after a keyframe waits `min_interval`)."""

    def __init__(self, interval: float = KEYFRAME_INTERVAL, min_interval: float = KEYFRAME_MIN_INTERVAL) -> None:
        self.interval = interval
        self.min_interval = min_interval
        self.last: Optional[float] = None

    def due(self, now: float, requested: bool) -> bool:
        if self.last is None:
            return True
        elapsed = now - self.last
        return elapsed < 0 or elapsed >= self.interval or (requested and elapsed >= self.min_interval)

    def sent(self, now: float) -> None:
        self.last = now


def open_vp8_encoder(width: int, height: int, bitrate: int, fps: int, clock_rate: int,
                     temporal_layers: bool = True) -> av.CodecContext:
    """libvpx realtime CBR, one thread, no look-ahead; L1T3 through FFmpeg's `ts-parameters`
    (ts_layering_mode=3). Keyframes only when forced, so the layer pattern's phase is known."""
    ctx = av.CodecContext.create("libvpx", "w")
    ctx.width, ctx.height, ctx.pix_fmt = width, height, "yuv420p"
    ctx.time_base = fractions.Fraction(1, clock_rate)  # pts = the source's RTP timestamp
    ctx.framerate = fractions.Fraction(fps, 1)
    ctx.bit_rate = bitrate
    ctx.gop_size = 1 << 30
    ctx.thread_count = 1
    rate = f"{bitrate // 1000}k"
    options = {"deadline": "realtime", "cpu-used": "8", "lag-in-frames": "0", "error-resilient": "1",
               "minrate": rate, "maxrate": rate, "bufsize": rate, "max-intra-rate": "300"}
    if temporal_layers:
        kbps = ",".join(str(int(bitrate * s) // 1000) for s in TL_SHARE)
        options["ts-parameters"] = (f"ts_number_layers=3:ts_target_bitrate={kbps}:ts_rate_decimator=4,2,1:"
                                    "ts_periodicity=4:ts_layer_id=0,2,1,2:ts_layering_mode=3")
    ctx.options = options
    ctx.open()
    return ctx


class RungEncoder:
    def __init__(self, rung: Rung, clock_rate: int = 90000, rng: Optional[random.Random] = None) -> None:
        r = rng or random.Random()
        self.rung = rung
        self.clock_rate = clock_rate
        self.packetizer = Vp8Packetizer(ssrc=r.getrandbits(32) or 1, rng=r)
        self.gate = FrameRateGate(rung.fps, clock_rate)
        self.keyframes = KeyframeSchedule()
        self.temporal_layers = True
        self.kf_served = 0            # keyframe requests counted up to the last forced keyframe
        self._ctx: Optional[av.CodecContext] = None
        self._size = (0, 0)
        self._last_pts = -1
        self._index = 0               # frames since the last forced keyframe: the L1T3 phase
        self.frames = self.keyframes_sent = 0
        self.encode_seconds = 0.0

    @property
    def ssrc(self) -> int:
        return self.packetizer.ssrc

    def close(self) -> None:
        """Free the encoder (the rung is unused); numbering continues when it is opened again."""
        self._ctx = None

    def encode(self, picture: av.VideoFrame, pts: int, kf_requests: int) -> list[bytes]:
        """RTP packets for one picture already scaled for this rung; `pts` is the unwrapped source RTP
        timestamp, `kf_requests` the count of keyframe requests so far."""
        size = (picture.width, picture.height)
        if self._ctx is None or size != self._size or pts <= self._last_pts:
            self._open(size)
        now = pts / self.clock_rate
        force = self.keyframes.due(now, kf_requests != self.kf_served)
        picture.pict_type = PictureType.I if force else PictureType.NONE  # decoded frames carry the source's
        picture.pts = pts
        if force:
            self._index = 0
            self.kf_served = kf_requests
        started = time.perf_counter()
        packets = self._ctx.encode(picture)  # type: ignore[union-attr]
        self.encode_seconds += time.perf_counter() - started
        self._last_pts = pts
        out: list[bytes] = []
        for pkt in packets:
            tid, sync = l1t3_layer(self._index, pkt.is_keyframe)
            if pkt.is_keyframe:
                self.keyframes.sent(now)
                self.keyframes_sent += 1
            self.frames += 1
            out += self.packetizer.packetize(bytes(pkt), pkt.pts & 0xFFFFFFFF,
                                             tid if self.temporal_layers else None, sync)
        self._index += 1
        return out

    def _open(self, size: tuple[int, int]) -> None:
        w, h = size
        try:
            self._ctx = open_vp8_encoder(w, h, self.rung.bitrate, self.rung.fps, self.clock_rate)
        except av.FFmpegError:  # a libvpx without temporal scalability: plain VP8, no TID
            self._ctx = open_vp8_encoder(w, h, self.rung.bitrate, self.rung.fps, self.clock_rate, False)
            self.temporal_layers = False
        self._size = size
        self._index = 0
        self.keyframes = KeyframeSchedule()

    def stats(self) -> dict:
        p = self.packetizer
        return {"width": self._size[0], "height": self._size[1], "open": self._ctx is not None,
                "frames_encoded": self.frames, "keyframes": self.keyframes_sent, "packets": p.packets,
                "octets": p.octets, "temporal_layers": 3 if self.temporal_layers else 1, "ssrc": self.ssrc,
                "encode_ms": round(self.encode_seconds / self.frames * 1000, 3) if self.frames else None}
