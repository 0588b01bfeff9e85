"""Make the test lesson clip: VP8 video with a moving pattern + Opus tone in WebM, encoded once and cached."""
from __future__ import annotations

import fractions
import math
import os
from pathlib import Path

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


def make_clip(path: Path, seconds: float = 12.0, width: int = 640, height: int = 360, fps: int = 30,
              bitrate: int = 800_000, gop: int = 30) -> Path:
    path = Path(path)
    if path.exists() and path.stat().st_size > 0:
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".part.webm")
    with av.open(str(tmp), "w", format="webm") as out:
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
            vf = av.VideoFrame.from_ndarray(img, format="rgb24")
            vf.pts = i
            vf.time_base = fractions.Fraction(1, fps)
            for pkt in v.encode(vf):
                out.mux(pkt)
            # audio: 20 ms frames, 440 Hz tone, until audio time catches up with video time
            while audio_pts < (i + 1) * 48000 / fps:
                t = (np.arange(samples_per_frame) + audio_pts) / 48000
                tone = (0.2 * np.sin(2 * math.pi * 440 * t) * 32767).astype(np.int16)
                af = av.AudioFrame.from_ndarray(np.stack([tone, tone]).reshape(1, -1), format="s16",
                                                layout="stereo")
                af.sample_rate = 48000
                af.pts = audio_pts
                af.time_base = fractions.Fraction(1, 48000)
                for pkt in a.encode(af):
                    out.mux(pkt)
                audio_pts += samples_per_frame
        flush(out, v, a)
    os.replace(tmp, path)
    return path


def make_h264_clip(path: Path, seconds: float = 6.0, width: int = 640, height: int = 360, fps: int = 30,
                   gop: int = 30) -> Path:
    """H.264 Constrained Baseline video only, Annex B in MPEG-TS (what aiortc packetizes as it is)."""
    path = Path(path)
    if path.exists() and path.stat().st_size > 0:
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".part.ts")
    with av.open(str(tmp), "w", format="mpegts") as out:
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
            vf = av.VideoFrame.from_ndarray(img, format="rgb24")
            vf.pts = i
            vf.time_base = fractions.Fraction(1, fps)
            for pkt in v.encode(vf):
                out.mux(pkt)
        for pkt in v.encode(None):
            out.mux(pkt)
    os.replace(tmp, path)
    return path
