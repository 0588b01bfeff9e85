"""Soak: one lesson with churn for N minutes against a real server; RSS, fds, tasks and loop lag per minute, flat?

    .venv/bin/python bench/soak.py                        # 10 minutes, 20 classrooms connected
    .venv/bin/python bench/soak.py --minutes 3 --viewers 10

One `liveclass serve` subprocess on loopback (`--record soak`); this process is the teacher (room WebSocket:
lesson_start/lesson_end, which the server records; a WHIP publisher of a pre-encoded 640x360 VP8 + Opus clip
that reconnects every 60-90 s and after each lesson) and the classrooms (room WebSocket + a WHEP viewer counting
RTP, joining and leaving every 10 s, every 4th leaving without a word), plus bursts of viewer sessions opened
and deleted. Under 3 minutes the CI test's faster pace is used (samples every 15 s). Driving logic:
testkit/soak.py. Per sample (stderr): the server's RSS, open fds, asyncio tasks, sessions, peer connections and
the worst event-loop lag. At the end every session is stopped and each recording is looked up in the library
and decoded.
stdout: one JSON object (samples, counts, recordings, verdict), then one summary line. Exit status 1 when not
flat. Bounded: the plan's deadline ends every loop, every wait has a timeout.
"""
from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import sys
import tempfile
from pathlib import Path
from typing import Optional

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench.clips import bench_clip  # noqa: E402
from testkit.soak import Plan, run_soak, summary  # noqa: E402



def parse_args(argv: Optional[list[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--minutes", type=float, default=10.0, help="how long (default 10, 1-120)")
    p.add_argument("--viewers", type=int, default=20, help="classrooms connected at any time (default 20)")
    p.add_argument("--churn", type=int, default=4, help="classrooms leaving and joining every 10 s (default 4)")
    p.add_argument("--burst", type=int, default=30, help="viewer sessions opened and deleted every 30 s (default 30)")
    p.add_argument("--seed", type=int, default=7)
    args = p.parse_args(argv)
    if not 1 <= args.minutes <= 120 or not 1 <= args.viewers <= 100 or not 0 <= args.churn <= args.viewers \
            or not 0 <= args.burst <= 500:
        p.error("--minutes 1-120, --viewers 1-100, --churn 0-viewers, --burst 0-500")
    return args


def main(argv: Optional[list[str]] = None) -> int:
    a = parse_args(argv)
    # under 3 minutes the minute-scale plan leaves no window after its warm-up: the CI plan's pace, scaled
    base = Plan() if a.minutes >= 3 else Plan.quick()
    plan = dataclasses.replace(base, seconds=a.minutes * 60, viewers=a.viewers, churn=a.churn, burst=a.burst,
                               seed=a.seed)
    clip = bench_clip("clip-640x360-v1.webm")
    work = Path(tempfile.mkdtemp(prefix="liveclass-soak-"))
    print(f"soak {a.minutes:g} min, server log {work / 'server.log'}", file=sys.stderr)
    report = asyncio.run(run_soak(clip, plan, work / "server.log",
                                  progress=lambda line: print(line, file=sys.stderr, flush=True)))
    print(json.dumps(report, indent=2))
    print(summary(report))
    return 0 if report["verdict"]["flat"] else 1


if __name__ == "__main__":
    sys.exit(main())
