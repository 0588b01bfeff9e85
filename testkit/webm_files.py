"""Lesson files written straight from a clip's packets with the recorder's own WebM writer (no server, no
RTP): for the tests and benches of what reads, repairs or finishes recordings."""
from __future__ import annotations

import math
from pathlib import Path

import av

from recorder.webm.webm_writer import AUDIO_TRACK, VIDEO_TRACK, TrackSpec, WebmWriter, opus_head

Packet = tuple[float, str, bytes, bool]   # (seconds, "video" | "audio", data, keyframe)


def clip_packets(clip: Path) -> list[Packet]:
    """Every packet of the clip, in time order."""
    with av.open(str(clip)) as c:
        out = [(float(p.pts * p.time_base), p.stream.type, bytes(p), p.is_keyframe) for p in c.demux() if p.size]
    return sorted(out, key=lambda x: x[0])


def lesson_tracks(width: int = 640, height: int = 360) -> list[TrackSpec]:
    """A lesson's tracks: VP8 video of this size and Opus audio."""
    return [TrackSpec(VIDEO_TRACK, "video", "VP8", width, height),
            TrackSpec(AUDIO_TRACK, "audio", "opus", codec_private=opus_head())]


def track_number(kind: str) -> int:
    return VIDEO_TRACK if kind == "video" else AUDIO_TRACK


def add_packet(w: WebmWriter, t: float, kind: str, data: bytes, key: bool) -> None:
    """One packet `t` seconds into the file (a packet from before the start goes at its start)."""
    w.add(track_number(kind), max(0, round(t * 1000)), data, key)


def write_lesson_file(path: Path, packets: list[Packet], seconds: float = math.inf, finish: bool = True,
                      title: str = "") -> WebmWriter:
    """The packets up to `seconds` in a file at `path`: finished, or (finish=False) flushed and abandoned as
    a recorder that crashed would leave it."""
    w = WebmWriter(path, lesson_tracks(), title=title)
    for t, kind, data, key in packets:
        if t > seconds:
            break
        add_packet(w, t, kind, data, key)
    if finish:
        w.finish()
    else:
        w.flush()
        w.abandon()
    return w
