"""Layer-switch benchmark on a real capped link: runs the capped-terminal scenario (teacher page →
SFU → terminal A behind a namespace link capped to --cap kbit/s after steady 720p, then lifted; terminal B on
loopback) N times and prints JSON: per run, cap → first lower-resolution frame, frozen time while capped, loss
once settled, lift → first 720p frame again; p50/p95 of each; then a one-line summary.

    .venv/bin/python bench/switch.py --runs 5          # as root

Needs root and /usr/bin/chromium. Each run is bounded (~60 s); the whole bench stops starting runs after
--budget seconds. A run where something never happened reports null, not a crash.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Optional, Sequence

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # run as `python bench/switch.py` as well as `-m bench.switch`
    sys.path.insert(0, str(REPO))

from testkit.capped_link import Scenario, run_scenario  # noqa: E402
from testkit.netns import unavailable_reason  # noqa: E402

KEYS = ("switch_down_s", "frozen_capped_s", "loss_settled", "switch_up_s")
RUN_S = 60.0  # a run's worst case: start ≤ 30 s is rare; steady 6 + capped 10 + up 15 + setup


def percentile(values: Sequence[float], p: float) -> Optional[float]:
    """Nearest-rank percentile (None for no values)."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


def aggregate(runs: list[dict]) -> dict:
    out = {}
    for k in KEYS:
        values = [r[k] for r in runs if r.get(k) is not None]
        out[k] = {"p50": percentile(values, 50), "p95": percentile(values, 95), "n": len(values),
                  "missing": len(runs) - len(values)}
    return out


def summary_line(runs: list[dict], agg: dict, cap: int) -> str:
    def fmt(k: str, unit: str, scale: float = 1.0) -> str:
        a = agg[k]
        if a["p50"] is None:
            return f"{k}: never ({a['missing']} runs)"
        return f"{k} p50 {a['p50'] * scale:.2f}{unit} p95 {a['p95'] * scale:.2f}{unit}" + \
            (f" ({a['missing']} never)" if a["missing"] else "")
    ok = [r for r in runs if "error" not in r]
    switched = sum(1 for r in ok if r.get("switch_down_s") is not None)
    head = f"{len(ok)}/{len(runs)} runs at {cap} kbit/s, {switched} switched down" + ("" if switched else " (no switch)")
    return "; ".join([head, fmt("switch_down_s", " s"), fmt("frozen_capped_s", " s"),
                      fmt("loss_settled", " %", 100), fmt("switch_up_s", " s")])


def main(argv: Optional[Sequence[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--cap", type=int, default=500, help="downlink cap in kbit/s")
    ap.add_argument("--steady", type=float, default=6.0, help="seconds of 720p before the cap")
    ap.add_argument("--capped", type=float, default=10.0, help="seconds capped")
    ap.add_argument("--up-timeout", type=float, default=15.0, help="seconds allowed back to 720p after the lift")
    ap.add_argument("--budget", type=float, default=600.0, help="no new run starts after this many seconds")
    ap.add_argument("--workdir", type=Path, default=None, help="keep logs and samples here")
    ap.add_argument("--source", choices=("teacher-page", "whip-clip"), default="teacher-page",
                    help="browser simulcast, or a single-layer aiortc WHIP publisher (the server-side ladder)")
    args = ap.parse_args(argv)
    reason = unavailable_reason()
    if reason:
        print(json.dumps({"error": reason}))
        return 2
    from playwright.sync_api import sync_playwright

    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="bench-switch-"))
    clip = None
    if args.source == "whip-clip":
        from testkit.media import make_clip  # noqa: E402  (PyAV: only where needed)
        cache = Path(tempfile.gettempdir()) / "liveclass-bench-media"
        cache.mkdir(exist_ok=True)
        clip = make_clip(cache / "clip-1280x720-4s-gop30-v1.webm", seconds=4.0, width=1280, height=720,
                         bitrate=1_500_000, gop=30)
    sc = Scenario(source=args.source, clip=clip, cap_kbit=args.cap, steady_s=args.steady, capped_s=args.capped,
                  up_timeout_s=args.up_timeout, settle_s=min(5.0, args.capped / 2))
    t0 = time.monotonic()
    runs: list[dict] = []
    with sync_playwright() as p:
        for i in range(max(1, args.runs)):
            if i and time.monotonic() - t0 + RUN_S > args.budget:
                print(f"budget: stopping after {i} runs", file=sys.stderr)
                break
            started = time.monotonic()
            try:
                r = run_scenario(p, workdir / f"run{i}", sc)
                (workdir / f"run{i}" / "result.json").write_text(json.dumps({  # for looking into a bad run
                    "metrics": r.metrics, "t_cap": r.t_cap, "t_lift": r.t_lift, "samples": r.samples,
                    "server": r.server_samples}))
                a, b = r.metrics["A"], r.metrics["B"]
                run = {k: a[k] for k in KEYS}
                run.update(resolution_down_s=a["resolution_down_s"],
                           chromium_freeze_capped_s=a["chromium_freeze_capped_s"], fps_capped=a["fps_capped"],
                           fps_settled=a["fps_settled"], kbps_settled=a["kbps_settled"],
                           heights_capped=a["heights_capped"], sessions=len(a["sessions"]),
                           b_heights=sorted(set(b["heights_before"]) | set(b["heights_capped"])),
                           b_fps_min_1s=b["fps_min_1s"], a_path=r.ice["A"])
            except Exception as e:  # one broken run must not lose the others' numbers
                traceback.print_exc(file=sys.stderr)
                run = {k: None for k in KEYS}
                run["error"] = f"{type(e).__name__}: {e}"[:500]
            run["wall_s"] = round(time.monotonic() - started, 1)
            runs.append(run)
            print(f"run {i}: {json.dumps(run)}", file=sys.stderr)
    agg = aggregate(runs)
    print(json.dumps({"bench": "switch", "source": args.source, "cap_kbit": args.cap, "runs": runs,
                      "aggregate": agg,
                      "workdir": str(workdir)}, indent=1))
    print(summary_line(runs, agg, args.cap))
    return 0


if __name__ == "__main__":
    sys.exit(main())
