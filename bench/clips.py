"""The clips the benches play, encoded once into the bench cache ($LIVECLASS_BENCH_CACHE, else
~/.cache/liveclass-bench): the fan-out bench's 720p lesson, which the ladder and recorder benches play too,
and smaller ones by name."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

CACHE = Path(os.environ.get("LIVECLASS_BENCH_CACHE", Path.home() / ".cache" / "liveclass-bench"))
CLIP = dict(seconds=20.0, width=1280, height=720, fps=30, bitrate=1_500_000, gop=30)


def bench_clip(name: str, **kw: Any) -> Path:
    """testkit.media.make_clip(**kw), cached under `name`."""
    from testkit.media import make_clip  # PyAV: imported only where a clip is made
    return make_clip(CACHE / name, **kw)


def clip_path() -> Path:
    c = CLIP
    return CACHE / f"clip-{c['width']}x{c['height']}-{c['fps']}fps-{c['bitrate'] // 1000}k-gop{c['gop']}-v1.webm"


def ensure_clip() -> tuple[Path, dict]:
    """The 720p lesson clip and what it carries (size, frame rate, GOP, video and audio bit rates)."""
    import av
    path = bench_clip(clip_path().name, **CLIP)
    info = {"path": str(path), **{k: CLIP[k] for k in ("width", "height", "fps", "gop")}}
    with av.open(str(path)) as c:
        v = c.streams.video[0]
        time_base = v.time_base
        sizes = [(p.pts, p.size) for p in c.demux(v) if p.size]
    with av.open(str(path)) as c:
        audio_bytes = sum(p.size for p in c.demux(c.streams.audio[0]) if p.size)
    duration = float((sizes[-1][0] - sizes[0][0]) * time_base) + 1 / CLIP["fps"]
    info["video_kbps"] = round(sum(s for _, s in sizes) * 8 / duration / 1000)
    info["audio_kbps"] = round(audio_bytes * 8 / duration / 1000)
    return path, info
