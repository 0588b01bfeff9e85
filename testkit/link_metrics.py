"""What a terminal on a lossy, rate-capped link saw over a measurement window (pure functions).

Samples are testkit/lossy_link.py's sampler's: testkit/playback.py's video keys (`t`, `session`, `height`,
`frames`, `lost`, `bytes`, ...) plus video `rtx_packets`/`rtx_bytes`/`header_bytes`, audio `a_*` counters
(`a_samples` = totalSamplesReceived, `a_concealed` = concealedSamples, ...) and the ICE transport's `tp_bytes`.
Every counter is cumulative per session (testkit.playback.counter_delta sums sessions).
"""
from __future__ import annotations

from collections import Counter
from statistics import median
from typing import Optional, Sequence

from testkit.playback import Sample, counter_delta, frozen_time, rate


def _ratio(num: float, den: float) -> Optional[float]:
    return None if den <= 0 else num / den


def height_durations(samples: Sequence[Sample], start: float, end: float) -> Counter:
    """Seconds each decoded height (0: nothing decoded yet) was shown within [start, end]: a sample's height
    holds until the next sample, so an irregular sampling pace does not skew the shares."""
    shown: Counter = Counter()
    for a, b in zip(samples, samples[1:]):
        lo, hi = max(a["t"], start), min(b["t"], end)
        if hi > lo:
            shown[a["height"]] += hi - lo
    return shown


def dominant_height(samples: Sequence[Sample], start: float, end: float) -> Optional[int]:
    """The height shown most of the window (None: no samples in it)."""
    shown = height_durations(samples, start, end)
    return max(shown, key=lambda h: (shown[h], h)) if shown else None


def lowest_height(samples: Sequence[Sample], start: float, end: float) -> Optional[int]:
    """The smallest height shown within the window; 0 when part of it showed no picture at all."""
    shown = height_durations(samples, start, end)
    return min(shown) if shown else None


def frozen_share(samples: Sequence[Sample], start: float, end: float) -> Optional[float]:
    """Share of the window spent frozen (testkit.playback.frozen_time's rule)."""
    return _ratio(frozen_time(samples, start, end), end - start)


def concealed_share(samples: Sequence[Sample], start: float, end: float) -> Optional[float]:
    """Audio concealedSamples ÷ totalSamplesReceived, both grown over the window: the share of the sound
    that was made up (a lost packet, or a jitter buffer running dry)."""
    return _ratio(counter_delta(samples, "a_concealed", start, end), counter_delta(samples, "a_samples", start, end))


def utilisation(samples: Sequence[Sample], start: float, end: float, cap_kbit: int,
                key: str = "tp_bytes") -> Optional[float]:
    """What the viewer received (bits/s over the window, by default every byte of the ICE transport: media,
    RTX, RTCP, padding) ÷ the link's cap. None for an uncapped link."""
    if cap_kbit <= 0:
        return None
    received_bps = rate(samples, key, start, end, scale=8.0)
    return None if received_bps is None else received_bps / (cap_kbit * 1000)


def rtx_overhead(samples: Sequence[Sample], start: float, end: float) -> tuple[Optional[float], str]:
    """Retransmitted ÷ received video, in bytes when Chromium reports retransmittedBytesReceived, else in
    packets; returns (share, "bytes" | "packets")."""
    rtx_key, all_key, unit = ("rtx_bytes", "bytes", "bytes") if any(s.get("rtx_bytes") is not None for s in samples) \
        else ("rtx_packets", "received", "packets")
    return _ratio(counter_delta(samples, rtx_key, start, end), counter_delta(samples, all_key, start, end)), unit


def window_figures(samples: Sequence[Sample], start: float, end: float, cap_kbit: int) -> dict:
    """The figures one run is judged by, over [start, end]; None where a figure could not be measured."""
    def r(x: Optional[float], n: int = 4) -> Optional[float]:
        return None if x is None else round(x, n)

    overhead, overhead_unit = rtx_overhead(samples, start, end)
    return {
        "fps": r(rate(samples, "frames", start, end), 2),
        "height": dominant_height(samples, start, end),
        "height_min": lowest_height(samples, start, end),
        "heights_s": {str(h): round(s, 2) for h, s in sorted(height_durations(samples, start, end).items())},
        "frozen": r(frozen_share(samples, start, end)),
        "audio_concealed": r(concealed_share(samples, start, end), 5),
        "audio_silent_concealed": r(_ratio(counter_delta(samples, "a_silent_concealed", start, end),
                                           counter_delta(samples, "a_samples", start, end)), 5),
        "audio_concealment_events": counter_delta(samples, "a_concealment_events", start, end),
        "audio_packets_lost": counter_delta(samples, "a_lost", start, end),
        "utilisation": r(utilisation(samples, start, end, cap_kbit)),
        "received_kbps": r(rate(samples, "tp_bytes", start, end, scale=8e-3), 1),
        "video_kbps": r(rate(samples, "bytes", start, end, scale=8e-3), 1),
        "rtx_overhead": r(overhead),
        "rtx_overhead_unit": overhead_unit,
        "video_rtx_packets": counter_delta(samples, "rtx_packets", start, end),
        "video_packets_lost": counter_delta(samples, "lost", start, end),
        "video_nacks": counter_delta(samples, "nacks", start, end),
        "video_bytes": counter_delta(samples, "bytes", start, end),
        "video_plis": counter_delta(samples, "plis", start, end),
    }


def server_figures(samples: Sequence[dict], start: float, end: float) -> dict:
    """The SFU's view of the viewer's video consumer (testkit.capped_link.ServerStatsPoller's samples) over the
    window: the layer it forwarded most of the time, median REMB and loss it heard, retransmissions and probes
    it sent."""
    inside = [s for s in samples if start <= s["t"] <= end]
    if not inside:
        return {"samples": 0}

    def med(key: str) -> Optional[float]:
        values = [s[key] for s in inside if s.get(key) is not None]
        return median(values) if values else None

    def growth(key: str) -> Optional[float]:
        """A cumulative counter's growth since the last sample before the window."""
        end_value = _last(inside, key)
        if end_value is None:
            return None
        start_value = _last([s for s in samples if s["t"] < start], key)
        return end_value - (start_value or 0)

    layers = Counter(s.get("layer") for s in inside)
    return {
        "samples": len(inside),
        "layer": layers.most_common(1)[0][0],
        "layers": sorted((k for k in layers if k is not None)),
        "remb_bps": med("remb_bps"),
        "estimate_bps": med("estimate_bps"),     # the send-side estimate, where the SFU reports one
        "bitrate_bps": med("bitrate_bps"),
        "fraction_lost": med("fraction_lost"),
        # receiver reports come now and then and mostly say 0 on a lightly lossy link: the mean shows the rest
        "fraction_lost_mean": _mean([s["fraction_lost"] for s in inside if s.get("fraction_lost") is not None]),
        "rtx_packets": growth("rtx_packets"),
        # probes go out as padding on the RTX stream: Chromium counts them as retransmissions
        "probe_packets": growth("probe_packets"),
        "allocator": Counter(s.get("allocator") for s in inside).most_common(1)[0][0],
        "switches_down": _last(inside, "switches_down"),
        "switches_up": _last(inside, "switches_up"),
    }


def _mean(values: Sequence[float]) -> Optional[float]:
    return round(sum(values) / len(values), 4) if values else None


def _last(samples: Sequence[dict], key: str) -> Optional[float]:
    return next((s[key] for s in reversed(samples) if s.get(key) is not None), None)
