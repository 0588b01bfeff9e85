"""Publish to a WHIP endpoint with FFmpeg's own WHIP muxer (the one bundled in PyAV's wheels), as OBS-style
clients do: H.264 Baseline + Opus, no RTP header extensions, no PLI support, DTLS client role.

Run as a program: python -m testkit.ffmpeg_whip URL TOKEN CERT KEY SECONDS
"""
from __future__ import annotations

import fractions
import sys
import time

import av
import numpy as np


def publish(url: str, token: str, cert: str, key: str, seconds: float, fps: int = 30) -> int:
    out = av.open(url, "w", format="whip", options={"authorization": token, "cert_file": cert, "key_file": key})
    v = out.add_stream("libx264", rate=fps)
    v.width, v.height, v.pix_fmt = 640, 360, "yuv420p"
    v.options = {"profile": "baseline", "tune": "zerolatency", "preset": "ultrafast", "bf": "0",
                 "x264-params": f"keyint={fps}:min-keyint={fps}:scenecut=0:repeat-headers=1"}
    a = out.add_stream("libopus", rate=48000)
    a.layout = "stereo"
    samples = 48000 // fps
    start = time.monotonic()
    frames = int(seconds * fps)
    for i in range(frames):
        img = np.zeros((360, 640, 3), dtype=np.uint8)
        img[:, :, 0] = (np.arange(640) + i * 4) % 256
        vf = av.VideoFrame.from_ndarray(img, format="rgb24")
        vf.pts, vf.time_base = i, fractions.Fraction(1, fps)
        for p in v.encode(vf):
            out.mux(p)
        af = av.AudioFrame.from_ndarray(np.zeros((1, 2 * samples), dtype=np.int16), format="s16", layout="stereo")
        af.sample_rate, af.pts, af.time_base = 48000, i * samples, fractions.Fraction(1, 48000)
        for p in a.encode(af):
            out.mux(p)
        delay = start + (i + 1) / fps - time.monotonic()
        if delay > 0:
            time.sleep(delay)
    out.close()
    return frames


if __name__ == "__main__":
    url, token, cert, key, seconds = sys.argv[1:6]
    print("frames", publish(url, token, cert, key, float(seconds)), flush=True)
