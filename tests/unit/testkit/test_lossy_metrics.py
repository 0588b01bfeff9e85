"""The lossy-link figures (testkit/link_metrics.py), the link profiles and the loss rule, on made-up samples."""
from __future__ import annotations

import pytest

from bench.links import spread
from testkit.link_metrics import (
    concealed_share, dominant_height, frozen_share, lowest_height, rtx_overhead, server_figures, utilisation,
    window_figures,
)
from testkit.lossy_link import LinkProfile
from testkit.netns import random_loss_script


def _samples(spec: list[tuple[float, float, int, float, float]], start: float = 100.0, session: int = 1,
             rtx_bytes: bool = True) -> list[dict]:
    """(duration s, fps, height, audio concealed share, link kbit/s) segments → 100 ms samples with cumulative
    counters; a tenth of the video bytes and packets are retransmissions."""
    out, t = [], start
    frames = a_samples = a_concealed = tp_bytes = video_bytes = packets = 0.0
    for duration, fps, height, concealed, kbps in spec:
        for _ in range(round(duration * 10)):
            t += 0.1
            frames += fps * 0.1
            a_samples += 4800
            a_concealed += 4800 * concealed
            tp_bytes += kbps * 1000 / 8 * 0.1
            video_bytes += 0.8 * kbps * 1000 / 8 * 0.1
            packets += 10
            out.append({"t": round(t, 3), "session": session, "width": height * 16 // 9, "height": height,
                        "frames": int(frames), "lost": 0, "received": int(packets), "bytes": int(video_bytes),
                        "rtx_bytes": int(video_bytes / 10) if rtx_bytes else None,
                        "rtx_packets": int(packets / 10), "a_samples": int(a_samples),
                        "a_concealed": int(a_concealed), "tp_bytes": int(tp_bytes)})
    return out


def test_height_most_of_the_time_and_the_lowest():
    s = _samples([(2, 20, 720, 0, 900), (3, 20, 360, 0, 900), (10, 20, 180, 0, 900)])
    assert dominant_height(s, 100, 115) == 180
    assert dominant_height(s, 100, 105) == 360   # 2 s at 720, then 3 s at 360
    assert lowest_height(s, 101, 104) == 360
    assert lowest_height(s, 101, 115) == 180
    assert dominant_height(s, 200, 210) is None and lowest_height(s, 200, 210) is None


def test_frozen_share_and_frame_rate():
    s = _samples([(5, 20, 360, 0, 900), (2, 0, 360, 0, 900), (8, 20, 360, 0, 900)])
    assert frozen_share(s, 100, 115) == pytest.approx(2 / 15, abs=0.01)
    assert frozen_share(s, 108, 115) == 0
    figures = window_figures(s, 108, 115, 1000)
    assert figures["fps"] == pytest.approx(20, abs=0.5) and figures["height"] == 360 and figures["frozen"] == 0


def test_audio_concealed_share_over_the_window():
    s = _samples([(5, 20, 360, 0.10, 900), (10, 20, 360, 0.005, 900)])
    assert concealed_share(s, 105, 115) == pytest.approx(0.005, abs=0.0005)  # the noisy start is outside
    assert concealed_share(s, 100, 105) == pytest.approx(0.10, abs=0.005)
    # a reconnection inside the window: the new session's counters start from zero and still add up
    two = _samples([(5, 20, 360, 0.01, 900)]) + _samples([(5, 20, 360, 0.01, 900)], start=105.0, session=2)
    assert concealed_share(two, 102, 110) == pytest.approx(0.01, abs=0.001)
    assert concealed_share([], 100, 110) is None


def test_link_utilisation_is_what_arrived_over_the_cap():
    s = _samples([(15, 20, 180, 0, 250)])
    assert utilisation(s, 101, 115, 1000) == pytest.approx(0.25, abs=0.01)
    assert utilisation(s, 101, 115, 250) == pytest.approx(1.0, abs=0.02)
    assert utilisation(s, 101, 115, 0) is None  # uncapped: nothing to divide by
    assert window_figures(s, 101, 115, 1000)["received_kbps"] == pytest.approx(250, abs=3)


def test_rtx_overhead_in_bytes_or_else_packets():
    assert rtx_overhead(_samples([(10, 20, 180, 0, 500)]), 101, 110) == (pytest.approx(0.1, abs=0.01), "bytes")
    share, unit = rtx_overhead(_samples([(10, 20, 180, 0, 500)], rtx_bytes=False), 101, 110)
    assert unit == "packets" and share == pytest.approx(0.1, abs=0.01)


def test_server_view_of_the_viewer():
    t = [100 + 0.5 * i for i in range(30)]
    samples = [{"t": x, "layer": 2 if x < 105 else 0, "remb_bps": 300_000, "bitrate_bps": 100_000,
                "fraction_lost": 0.03, "rtx_packets": int(2 * (x - 100)), "probe_packets": 5,
                "allocator": "hold"} for x in t]
    v = server_figures(samples, 105, 114.5)
    assert v["layer"] == 0 and v["layers"] == [0] and v["remb_bps"] == 300_000
    assert v["rtx_packets"] == 29 - 9  # grown since the last sample before the window
    assert v["probe_packets"] == 0 and v["estimate_bps"] is None
    assert v["fraction_lost"] == pytest.approx(0.03) and v["fraction_lost_mean"] == pytest.approx(0.03)
    assert server_figures(samples, 200, 210) == {"samples": 0}


def test_link_profiles():
    p = LinkProfile.parse("1000:30")
    assert (p.rate_kbit, p.loss_permille, p.label) == (1000, 30, "1000:30")
    assert p.describe() == "1000 kbit/s + 3 % loss"
    assert LinkProfile.parse("4000") == LinkProfile(4000, 0)
    assert LinkProfile(0, 5).describe() == "uncapped + 0.5 % loss"


def test_random_loss_rule():
    script = random_loss_script(30)
    assert "hook input" in script and "meta l4proto udp numgen random mod 1000 < 30" in script
    assert script.index('counter name "udp_in"') < script.index(" drop\n")  # every arrival counted, then the loss
    with pytest.raises(ValueError):
        random_loss_script(1001)


def test_spread_over_runs():
    assert spread([3.0, None, 1.0, 2.0]) == {"median": 2.0, "min": 1.0, "max": 3.0, "n": 3, "missing": 1}
    assert spread([None])["median"] is None
    assert spread([720, 180])["median"] == 180  # a height that was seen, not their mean
