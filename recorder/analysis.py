"""Poster thumbnail and chapter marks of a finished recording, from its decoded keyframes only.

Slides change in big steps: two consecutive keyframes, shrunk to a small grey picture, differ over a large part
of it. A camera picture of a teacher moving changes a little everywhere, a new slide a lot somewhere. A new
chapter starts at the first keyframe after such a step (keyframes come at least every few seconds: the recorder
asks for them), at least `min_gap` seconds after the previous chapter.

Runs as its own low-priority process (`python -m recorder.analysis MEDIA OUTDIR`, JSON on stdout) so that
decoding never competes with live media for the server's interpreter.
"""
from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator, Optional

import numpy as np

SMALL = (64, 36)            # the picture compared between keyframes
THUMB_WIDTH = 160
POSTER_WIDTH = 320
PIXEL_STEP = 32             # a grey level change this large counts as a changed pixel
CHANGED_FRACTION = 0.25     # ... and a step this large part of the picture is a new slide
MIN_GAP = 5.0               # seconds between chapter marks at least
MAX_KEYFRAMES = 20_000


@dataclass
class Keyframe:
    t: float
    small: np.ndarray        # SMALL grey picture, uint8
    thumb: np.ndarray        # BGR thumbnail
    detail: float            # grey standard deviation: how much there is to see


def scene_changes(frames: Iterable[tuple[float, np.ndarray]], min_gap: float = MIN_GAP,
                  pixel_step: int = PIXEL_STEP, changed_fraction: float = CHANGED_FRACTION) -> list[float]:
    """Times where a chapter starts (the first keyframe always does), from (time, small grey picture) pairs in
    time order."""
    marks: list[float] = []
    prev: Optional[np.ndarray] = None
    for t, small in frames:
        if prev is None:
            marks.append(t)
        else:
            changed = np.count_nonzero(np.abs(small.astype(np.int16) - prev.astype(np.int16)) > pixel_step)
            if changed / small.size >= changed_fraction and t - marks[-1] >= min_gap:
                marks.append(t)
        prev = small
    return marks


def keyframes(path: str, max_frames: int = MAX_KEYFRAMES) -> Iterator[Keyframe]:
    """Decode the video keyframes of a media file (the decoder never sees the frames between them)."""
    import av
    import cv2

    with av.open(path) as container:
        if not container.streams.video:
            return
        stream = container.streams.video[0]
        stream.thread_type = "NONE"
        count = 0
        for packet in container.demux(stream):
            if not packet.is_keyframe or packet.size == 0 or packet.pts is None:
                continue
            try:
                decoded = packet.decode()
            except av.error.FFmpegError:
                continue
            for frame in decoded:
                h = max(2, round(frame.height * POSTER_WIDTH / max(1, frame.width)) // 2 * 2)
                bgr = frame.reformat(width=POSTER_WIDTH, height=h, format="bgr24").to_ndarray()
                grey = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)
                small = cv2.resize(grey, SMALL, interpolation=cv2.INTER_AREA)
                yield Keyframe(float(frame.time if frame.time is not None else packet.pts * packet.time_base),
                               small, bgr, float(grey.std()))
                count += 1
            if count >= max_frames:
                return


def analyze(media: str, out_dir: str, min_gap: float = MIN_GAP, chapters_from: Optional[str] = None,
            offset: float = 0.0) -> dict:
    """Write poster.jpg and chapter-NNN.jpg into out_dir; returns {"poster", "chapters": [{t, thumbnail}]}.
    The poster comes from `media`; the chapters from `chapters_from` (the screen share, whose time 0 is
    `offset` seconds into `media`) when given, else from `media`."""
    import cv2

    out = Path(out_dir)
    frames = list(keyframes(media))
    slides = list(keyframes(chapters_from)) if chapters_from else frames
    if not chapters_from:
        offset = 0.0
    if not slides:
        slides, offset = frames, 0.0
    marks = set(scene_changes(((k.t, k.small) for k in slides), min_gap))
    marked = [(max(0.0, k.t + offset), k) for k in slides if k.t in marks]
    if marked and marked[0][0] < 1.0:
        marked[0] = (0.0, marked[0][1])
    elif marked and frames:   # the screen share began later: the lesson's start is a chapter too
        marked.insert(0, (0.0, frames[0]))
    chapters = []
    for t, k in marked:
        name = f"chapter-{len(chapters):03d}.jpg"
        h = max(2, round(k.thumb.shape[0] * THUMB_WIDTH / k.thumb.shape[1]))
        _write_jpeg(out / name, cv2.resize(k.thumb, (THUMB_WIDTH, h), interpolation=cv2.INTER_AREA))
        chapters.append({"t": round(t, 3), "thumbnail": name})
    poster_from = frames or slides
    if not poster_from:
        return {"poster": None, "chapters": chapters, "keyframes": 0}
    end = poster_from[-1].t
    early = [k for k in poster_from if k.t <= max(1.0, end * 0.3)] or poster_from
    poster = max(early, key=lambda k: k.detail)
    _write_jpeg(out / "poster.jpg", poster.thumb)
    decoded = len(frames) + (len(slides) if chapters_from else 0)
    return {"poster": "poster.jpg", "chapters": chapters, "keyframes": decoded}


def _write_jpeg(path: Path, image: np.ndarray) -> None:
    import cv2

    ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 80])
    if not ok:
        raise ValueError("JPEG encoding failed")
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(data.tobytes())
    tmp.replace(path)


def main(argv: list[str]) -> int:
    import argparse

    p = argparse.ArgumentParser(prog="python -m recorder.analysis",
                                description="poster and chapter thumbnails of a recorded lesson (JSON on stdout)")
    p.add_argument("media")
    p.add_argument("out_dir")
    p.add_argument("--chapters", help="find chapters in this file (the screen share) instead")
    p.add_argument("--offset", type=float, default=0.0, help="where that file's time 0 is in MEDIA (seconds)")
    args = p.parse_args(argv)
    print(json.dumps(analyze(args.media, args.out_dir, chapters_from=args.chapters, offset=args.offset)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
