"""Test media with marks to measure against: a lip-sync clip (a white flash and a beep at the same instants) and a
"slides" clip (pictures that change in big steps at known times), plus the measurements on a recorded file.
Encoded once with PyAV and cached like testkit/media.py's clip."""
from __future__ import annotations

import math
from pathlib import Path
import av
import numpy as np

from testkit.media import cached, encode_picture, encode_sound, flush, opus_stream, vp8_stream

FLASH_AT = 0.5        # seconds into every second: the flash and the beep start here
FLASH_LEN = 0.1


def make_sync_clip(path: Path, seconds: int = 24, width: int = 320, height: int = 180, fps: int = 30,
                   gop: int = 30) -> Path:
    """VP8 + Opus: dark moving texture and silence, except a white picture and a 1 kHz beep for 100 ms from
    k + 0.5 s, every second k."""
    def write(out) -> None:
        v = vp8_stream(out, width, height, fps, 300_000, gop)
        a = opus_stream(out)
        yy, xx = np.mgrid[0:height, 0:width]
        audio_pts = 0
        for i in range(seconds * fps):
            t = i / fps
            if FLASH_AT <= t % 1.0 < FLASH_AT + FLASH_LEN - 1e-9:
                img = np.full((height, width, 3), 235, dtype=np.uint8)
            else:
                img = np.zeros((height, width, 3), dtype=np.uint8)
                img[..., 1] = ((xx + i * 3) % 64).astype(np.uint8)
                img[..., 2] = ((yy + i) % 48).astype(np.uint8)
            encode_picture(out, v, img, i, fps)
            while audio_pts < (i + 1) * 48000 / fps:
                ts = (np.arange(960) + audio_pts) / 48000
                on = (ts % 1.0 >= FLASH_AT) & (ts % 1.0 < FLASH_AT + FLASH_LEN)
                encode_sound(out, a, (on * 0.5 * np.sin(2 * math.pi * 1000 * ts) * 32767).astype(np.int16), audio_pts)
                audio_pts += 960
        flush(out, v, a)
    return cached(path, "webm", write)


def make_slides_clip(path: Path, changes: tuple[float, ...] = (6.0, 12.0, 18.0), seconds: float = 24.0,
                     width: int = 640, height: int = 360, fps: int = 15, gop: int = 15) -> Path:
    """VP8 only: four "slides" (different text-like layouts), changing at `changes`; between changes a small
    pointer moves and the picture noise changes a little, as on a real screen or camera."""
    def write(out) -> None:
        rng = np.random.default_rng(7)
        slides = []
        for k in range(len(changes) + 1):
            img = np.full((height, width, 3), (240, 240, 235) if k % 2 == 0 else (40, 60, 90), dtype=np.uint8)
            for line in range(8):   # "text lines" of a different layout per slide
                y = 30 + line * 40 + k * 7
                x0 = int(rng.integers(20, 120))
                x1 = int(rng.integers(300, width - 20))
                colour = (20, 20, 20) if k % 2 == 0 else (230, 230, 200)
                img[y:y + 14 + (k % 3) * 4, x0:x1] = colour
            slides.append(img)
        v = vp8_stream(out, width, height, fps, 400_000, gop)
        for i in range(int(seconds * fps)):
            t = i / fps
            k = sum(1 for c in changes if t >= c)
            img = slides[k].copy()
            px = int(50 + (i * 9) % (width - 100))
            img[height - 40:height - 30, px:px + 10] = (200, 30, 30)    # a moving pointer
            noise = rng.integers(-6, 7, size=img.shape, dtype=np.int16)
            img = np.clip(img.astype(np.int16) + noise, 0, 255).astype(np.uint8)
            encode_picture(out, v, img, i, fps)
        flush(out, v)
    return cached(path, "webm", write)


def flash_times(path: str, start: float = 0.0) -> list[float]:
    """Times of the first frame of each flash in a file's video."""
    out: list[float] = []
    bright_before = False
    with av.open(path) as c:
        for frame in c.decode(video=0):
            if frame.time is None or frame.time < start:
                continue
            y = frame.to_ndarray(format="gray")
            bright = float(y.mean()) > 128
            if bright and not bright_before:
                out.append(float(frame.time))
            bright_before = bright
    return out


def beep_times(path: str, start: float = 0.0, window: float = 0.0025) -> list[float]:
    """Onsets of each beep in a file's audio (first loud window after a quiet one), by each frame's timestamp."""
    out: list[float] = []
    loud_before = False
    with av.open(path) as c:
        for frame in c.decode(audio=0):
            if frame.time is None:
                continue
            data = frame.to_ndarray().astype(np.float32)
            mono = data.reshape(-1, frame.samples).mean(axis=0) if frame.format.is_planar else \
                data.reshape(-1, len(frame.layout.channels)).mean(axis=1)
            if frame.format.name.startswith("s16"):
                mono = mono / 32768.0
            n = max(1, int(frame.sample_rate * window))
            for i in range(0, len(mono) - n + 1, n):
                loud = float(np.sqrt(np.mean(mono[i:i + n] ** 2))) > 0.05
                t = float(frame.time) + i / frame.sample_rate
                if loud and not loud_before and t >= start and (not out or t - out[-1] > 0.5):
                    out.append(t)
                loud_before = loud
    return out


def av_offsets(path: str) -> list[float]:
    """For each flash, (beep onset − flash onset) in seconds: positive means the sound comes late."""
    flashes = flash_times(path)
    beeps = beep_times(path)
    out = []
    for f in flashes:
        near = [b for b in beeps if abs(b - f) < 0.4]
        if near:
            out.append(min(near, key=lambda b: abs(b - f)) - f)
    return out
