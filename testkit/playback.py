"""What a classroom saw, computed from a terminal's inbound-video getStats samples (pure functions).

A sample is a dict with at least `t` (seconds, wall clock), `session` (the page's WHEP session number:
counters restart with each session), `width`, `height`, `frames` (framesDecoded), `lost`, `received`,
`bytes`; optionally `freeze_total` (Chromium's totalFreezesDuration). testkit/chromium.py's sampler makes them.
"""
from __future__ import annotations

from collections import deque
from statistics import median
from typing import Iterable, Optional, Sequence

Sample = dict


def freeze_limit(typical_gap: float) -> float:
    """A gap between decoded frames that counts as a freeze, given the typical gap: Chromium's own rule
    (longer than three typical gaps and than one gap + 150 ms), so 5 fps after a temporal-layer drop is
    slow but not frozen."""
    return max(3 * typical_gap, typical_gap + 0.150)


def counter_delta(samples: Sequence[Sample], key: str, start: float, end: float) -> float:
    """How much a per-session cumulative counter grew in [start, end], summed over sessions (a session first
    seen inside the window counts from zero)."""
    base: dict[int, float] = {}
    last: dict[int, float] = {}
    for s in samples:
        v = s.get(key)
        if v is None:
            continue
        sid = s["session"]
        if s["t"] <= start:
            base[sid] = last[sid] = v
        elif s["t"] <= end:
            base.setdefault(sid, 0.0)
            last[sid] = v
    return sum(last[sid] - base[sid] for sid in last)


def progress_times(samples: Sequence[Sample]) -> list[float]:
    """Times of the samples at which more frames had been decoded than at the previous sample."""
    out = []
    prev: dict[int, float] = {}
    for s in samples:
        sid, frames = s["session"], s["frames"]
        if frames > prev.get(sid, 0):
            out.append(s["t"])
        prev[sid] = frames
    return out


def frozen_time(samples: Sequence[Sample], start: float, end: float, threshold: Optional[float] = None,
                sample_interval: float = 0.1) -> float:
    """Seconds within [start, end] spent in gaps between decoded frames longer than `threshold` (default:
    freeze_limit of the median of the last ten normal gaps, at least one sampling interval); the picture
    standing still at the end of the window counts too."""
    times = progress_times(samples)
    if not any(t <= start for t in times):
        times = [start, *times]  # nothing decoded before the window: it starts frozen
    times = [t for t in times if t <= end]
    if times and times[-1] < end:
        times.append(end)
    recent: deque[float] = deque(maxlen=10)
    frozen = 0.0
    for a, b in zip(times, times[1:]):
        gap = b - a
        typical = median(recent) if recent else sample_interval
        if gap > (threshold if threshold is not None else freeze_limit(max(typical, sample_interval))):
            frozen += max(0.0, min(b, end) - max(a, start))
        else:
            recent.append(gap)  # only normal gaps set the pace
    return frozen


def first_time(samples: Iterable[Sample], after: float, cond) -> Optional[float]:
    """Seconds from `after` to the first sample after it that satisfies cond (None: never)."""
    for s in samples:
        if s["t"] >= after and cond(s):
            return s["t"] - after
    return None


def time_to_lower(samples: Sequence[Sample], t_cap: float, full_height: int = 720) -> Optional[float]:
    """Cap → the first sample showing a decoded frame smaller than full_height."""
    return first_time(samples, t_cap, lambda s: 0 < s["height"] < full_height)


def time_to_lower_rate(samples: Sequence[Sample], t_cap: float, fps_before: Optional[float],
                       window: float = 1.0) -> Optional[float]:
    """Cap → the first sample after which a whole `window` played at a lower frame rate than before: between
    SLOW_MIN and SLOW_MAX of it, without a freeze (a halved or quartered frame rate; a freeze is not an
    adaptation)."""
    if not fps_before:
        return None
    for s in samples:
        t = s["t"]
        if t < t_cap:
            continue
        fps = rate(samples, "frames", t, t + window)
        if fps is None or samples[-1]["t"] < t + window:
            return None
        if SLOW_MIN * fps_before <= fps <= SLOW_MAX * fps_before and frozen_time(samples, t, t + window) == 0:
            return t - t_cap
    return None


SLOW_MIN, SLOW_MAX = 0.15, 0.6


def time_to_full(samples: Sequence[Sample], t_lift: float, full_height: int = 720) -> Optional[float]:
    """Lift → the first sample at which a new frame at full_height had been decoded (a picture frozen at
    full height does not count)."""
    prev: dict[int, float] = {}
    for s in samples:
        progressed = s["frames"] > prev.get(s["session"], 0)
        prev[s["session"]] = s["frames"]
        if s["t"] >= t_lift and progressed and s["height"] >= full_height:
            return s["t"] - t_lift
    return None


def loss_fraction(samples: Sequence[Sample], start: float, end: float) -> Optional[float]:
    lost = counter_delta(samples, "lost", start, end)
    received = counter_delta(samples, "received", start, end)
    return None if lost + received <= 0 else max(0.0, lost) / (lost + received)


def rate(samples: Sequence[Sample], key: str, start: float, end: float, scale: float = 1.0) -> Optional[float]:
    """Growth per second of a counter over [start, end] (frames/s; bytes with scale=8e-3 → kbit/s)."""
    span = min(end, samples[-1]["t"] if samples else start) - start
    return None if span <= 0 else counter_delta(samples, key, start, end) * scale / span


def min_rate(samples: Sequence[Sample], key: str, start: float, end: float, window: float = 1.0) -> Optional[float]:
    """The lowest growth per second of a counter over consecutive `window`-second slices of [start, end]."""
    return min(rates_per_slice(samples, key, start, end, window), default=None)


def rates_per_slice(samples: Sequence[Sample], key: str, start: float, end: float, window: float = 1.0) -> list[float]:
    rates = [rate(samples, key, a, a + window) for a in _slices(start, end, window)]
    return [r for r in rates if r is not None]


def _slices(start: float, end: float, window: float) -> list[float]:
    n = int((end - start) // window) if end > start else 0
    return [start + i * window for i in range(n)]


def heights(samples: Sequence[Sample], start: float, end: float) -> list[int]:
    return sorted({s["height"] for s in samples if start <= s["t"] <= end and s["height"]})


def summarize(samples: Sequence[Sample], t_cap: float, t_lift: float, t_start: Optional[float] = None,
              full_height: int = 720, settle_s: float = 5.0) -> dict:
    """The numbers one capped (or uncapped) terminal is judged by; None where something never happened."""
    t_start = samples[0]["t"] if t_start is None and samples else (t_start or t_cap)
    t_end = samples[-1]["t"] if samples else t_lift
    settled = t_cap + settle_s

    def r3(x: Optional[float]) -> Optional[float]:
        return None if x is None else round(x, 3)

    fps_before = rate(samples, "frames", t_start, t_cap)
    lower = [x for x in (time_to_lower(samples, t_cap, full_height), time_to_lower_rate(samples, t_cap, fps_before))
             if x is not None]
    return {
        # on a lower layer: a smaller picture or a lower frame rate, whichever the viewer saw first
        "switch_down_s": r3(min(lower)) if lower else None,
        "resolution_down_s": r3(time_to_lower(samples, t_cap, full_height)),
        "frozen_capped_s": r3(frozen_time(samples, t_cap, t_lift)),
        "chromium_freeze_capped_s": r3(counter_delta(samples, "freeze_total", t_cap, t_lift)),
        "loss_settled": r3(loss_fraction(samples, settled, t_lift)),
        "loss_capped": r3(loss_fraction(samples, t_cap, t_lift)),
        "fps_before": r3(rate(samples, "frames", t_start, t_cap)),
        "fps_capped": r3(rate(samples, "frames", t_cap, t_lift)),
        "fps_settled": r3(rate(samples, "frames", settled, t_lift)),
        "fps_min_1s": r3(min_rate(samples, "frames", t_start, t_end)),
        "kbps_before": r3(rate(samples, "bytes", t_start, t_cap, 8e-3)),
        "kbps_settled": r3(rate(samples, "bytes", settled, t_lift, 8e-3)),
        "heights_before": heights(samples, t_start, t_cap),
        "heights_capped": heights(samples, t_cap, t_lift),
        "switch_up_s": r3(time_to_full(samples, t_lift, full_height)),
        "frozen_total_s": r3(frozen_time(samples, t_start, t_end)),
        "sessions": sorted({s["session"] for s in samples}),
    }
