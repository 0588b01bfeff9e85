"""Make the test lesson clip: VP8 video with a moving pattern + Opus tone in WebM, encoded once and cached."""
from __future__ import annotations

import fractions
import math
import os
from pathlib import Path
from typing import Any, Callable

import av
import numpy as np


def vp8_stream(out, width: int, height: int, fps: int, bitrate: int, gop: int, error_resilient: bool = False):
    """A realtime libvpx VP8 stream in `out` with a keyframe every `gop` frames (and no lookahead)."""
    v = out.add_stream("libvpx", rate=fps)
    v.width, v.height, v.pix_fmt = width, height, "yuv420p"
    v.bit_rate = bitrate
    v.gop_size = gop
    v.options = {"deadline": "realtime", "cpu-used": "8", "lag-in-frames": "0",
                 **({"error-resilient": "1"} if error_resilient else {}), "keyint_min": str(gop)}
    return v


def opus_stream(out):
    a = out.add_stream("libopus", rate=48000)
    a.layout = "stereo"
    return a


def flush(out, *streams) -> None:
    """Drain the encoders into the file."""
    for s in streams:
        for pkt in s.encode(None):
            out.mux(pkt)


def encode_picture(out, stream, img: np.ndarray, index: int, fps: int) -> None:
    """One RGB picture, the `index`-th frame at `fps`, encoded into the file."""
    vf = av.VideoFrame.from_ndarray(img, format="rgb24")
    vf.pts, vf.time_base = index, fractions.Fraction(1, fps)
    for pkt in stream.encode(vf):
        out.mux(pkt)


def encode_sound(out, stream, samples: np.ndarray, pts: int) -> None:
    """16-bit mono samples at 48 kHz from `pts` on, encoded into the file as stereo (both channels alike)."""
    af = av.AudioFrame.from_ndarray(np.stack([samples, samples]).reshape(1, -1), format="s16", layout="stereo")
    af.sample_rate, af.pts, af.time_base = 48000, pts, fractions.Fraction(1, 48000)
    for pkt in stream.encode(af):
        out.mux(pkt)


PART_SUFFIX = {"webm": ".part.webm", "mpegts": ".part.ts"}


def cached(path: Path, container: str, write: Callable[[Any], None]) -> Path:
    """The clip at `path`: written by `write(out)` into a new `container` file the first time, reused after
    that. It is written under a .part name and renamed, so an interrupted run leaves no half clip behind."""
    path = Path(path)
    if path.exists() and path.stat().st_size > 0:
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(PART_SUFFIX[container])
    with av.open(str(tmp), "w", format=container) as out:
        write(out)
    os.replace(tmp, path)
    return path


def make_clip(path: Path, seconds: float = 12.0, width: int = 640, height: int = 360, fps: int = 30,
              bitrate: int = 800_000, gop: int = 30) -> Path:
    def write(out) -> None:
        v = vp8_stream(out, width, height, fps, bitrate, gop, error_resilient=True)
        a = opus_stream(out)
        frames = int(seconds * fps)
        yy, xx = np.mgrid[0:height, 0:width]
        samples_per_frame = 960
        audio_pts = 0
        for i in range(frames):
            img = np.zeros((height, width, 3), dtype=np.uint8)
            img[..., 0] = (xx + i * 4) % 256
            img[..., 1] = (yy + i * 2) % 256
            img[..., 2] = (i * 3) % 256
            x0 = (i * 7) % max(1, width - 60)
            img[40:100, x0:x0 + 60] = 255
            encode_picture(out, v, img, i, fps)
            # audio: 20 ms frames, 440 Hz tone, until audio time catches up with video time
            while audio_pts < (i + 1) * 48000 / fps:
                t = (np.arange(samples_per_frame) + audio_pts) / 48000
                encode_sound(out, a, (0.2 * np.sin(2 * math.pi * 440 * t) * 32767).astype(np.int16), audio_pts)
                audio_pts += samples_per_frame
        flush(out, v, a)
    return cached(path, "webm", write)


def make_h264_clip(path: Path, seconds: float = 6.0, width: int = 640, height: int = 360, fps: int = 30,
                   gop: int = 30) -> Path:
    """H.264 Constrained Baseline video only, Annex B in MPEG-TS (what aiortc packetizes as it is)."""
    def write(out) -> None:
        v = out.add_stream("libx264", rate=fps)
        v.width, v.height, v.pix_fmt = width, height, "yuv420p"
        v.gop_size = gop
        v.options = {"profile": "baseline", "tune": "zerolatency", "preset": "ultrafast", "bf": "0",
                     "x264-params": f"keyint={gop}:min-keyint={gop}:scenecut=0:repeat-headers=1"}
        yy, xx = np.mgrid[0:height, 0:width]
        for i in range(int(seconds * fps)):
            img = np.zeros((height, width, 3), dtype=np.uint8)
            img[..., 0] = (xx + i * 4) % 256
            img[..., 1] = (yy + i * 2) % 256
            encode_picture(out, v, img, i, fps)
        flush(out, v)
    return cached(path, "mpegts", write)
