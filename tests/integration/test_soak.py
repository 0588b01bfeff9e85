"""A short soak of one lesson with churn against a real `liveclass serve` (bench/soak.py runs it for 10 minutes):
classrooms join and leave (some vanish), the teacher's publisher reconnects, lessons are recorded from start to
end; afterwards the server holds no session and no peer connection, its fds and tasks are where they started,
every lesson is in the library and decodes, RSS after the warm-up stayed flat and the classrooms got media."""
from __future__ import annotations

import time

import pytest

from testkit.churn import Sample
from testkit.soak import HELD_SLACK, LOOP_LAG_MAX_S, RSS_SLACK_MB, Plan, run_soak, summary, verdict

CLIP_FPS = 30


def _row(t: float, rss: float, fds: int = 40, tasks: int = 45, sessions: int = 5, pcs: int = 5,
         lag: float = 0.02) -> dict:
    return {"t_s": t, "rss_mb": rss, "fds": fds, "tasks": tasks, "sessions": sessions, "peer_connections": pcs,
            "loop_lag_s": lag}


START = Sample(85.0, 13, 3, 0, 0, 0.0, 0)
END = Sample(100.0, 13, 3, 0, 0, 0.0, 9)


def test_verdict_flat_and_not() -> None:
    flat = [_row(15, 120.0), _row(30, 101.0), _row(45, 102.5), _row(60, 101.5)]   # the warm-up sample is left out
    v = verdict(flat, 30, START, END)
    assert v["flat"], v["why"]
    assert v["rss_mb"]["first"] == 101.0 and v["rss_mb"]["change"] == 0.5

    growing = [_row(30, 101.0, fds=40, tasks=45), _row(45, 101.0 + RSS_SLACK_MB, fds=43),
               _row(60, 102.0 + RSS_SLACK_MB, fds=50, tasks=60)]
    why = " ".join(verdict(growing, 30, START, END)["why"])
    assert "rss_mb" in why and "fds" in why and "tasks" in why

    held = [_row(30, 101.0), _row(60, 101.0, pcs=5 + HELD_SLACK + 1)]
    assert "closed peer connections" in " ".join(verdict(held, 30, START, END)["why"])
    laggy = [_row(30, 101.0), _row(60, 101.0, lag=LOOP_LAG_MAX_S + 0.1)]
    assert "loop lag" in " ".join(verdict(laggy, 30, START, END)["why"])

    assert not verdict(flat[:2], 30, START, END)["flat"]   # one sample after the warm-up: nothing compared

    left = Sample(100.0, 15, 5, 1, 1, 0.0, 9)
    why = " ".join(verdict(flat, 30, START, left)["why"])
    assert "sessions" in why and "fds 13" in why and "tasks 3" in why


@pytest.mark.timeout(180)
async def test_short_soak_leaves_nothing_behind(tmp_path, clip) -> None:
    plan = Plan.quick(60.0)
    t = time.monotonic()
    report = await run_soak(clip, plan, tmp_path / "server.log", progress=print)
    took = time.monotonic() - t
    print(summary(report))
    print(f"soak test: {took:.0f} s in all, {report['driven_s']} s driven")
    v, c = report["verdict"], report["counts"]

    assert not c["errors"], c["errors"]
    assert len(report["samples"]) >= 4 and all(s["steady"] and s["relieved"] for s in report["samples"]), \
        report["samples"]
    # after everything stopped: nothing of the lesson is kept
    assert v["end"]["sessions"] == 0 and v["end"]["peer_connections"] == 0, v["end"]
    assert v["end"]["fds"] <= v["start"]["fds"] and v["end"]["tasks"] <= v["start"]["tasks"], \
        (v["start"], v["end"], report["tasks_left"])
    # every lesson recorded, listed and playable end to end
    recordings = report["recordings"]
    assert c["recordings_started"] == c["lessons"] >= 3 and len(recordings) == c["recordings_started"], recordings
    for r in recordings:
        assert r["playable"] and r["duration_s"] >= 5, r
        assert r["video_frames"] >= CLIP_FPS / 2 * r["duration_s"], r   # video throughout, not a few frames
    # the classrooms saw the lesson; the teacher's page reconnected
    assert c["viewers_starved"] == 0 and c["viewers_with_media"] == c["viewer_joins"] >= plan.viewers + 8, c
    assert report["publisher_reconnects"] >= 3 and c["viewer_drops"] >= 2, report
    # flat after the warm-up, and responsive
    assert v["rss_mb"]["change"] <= RSS_SLACK_MB, v["rss_mb"]
    assert v["held_peer_connections_max"] <= HELD_SLACK, report["samples"]
    assert v["loop_lag_max_s"] < LOOP_LAG_MAX_S, report["samples"]
    assert v["flat"], v["why"]
    assert report["tracebacks_in_log"] == 0
