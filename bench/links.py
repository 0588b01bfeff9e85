"""Link-profile benchmark: what a classroom terminal (headless Chromium) sees behind a downlink with a rate cap
and random UDP loss (testkit/lossy_link.py), per profile: decoded frame rate and height, frozen share, audio
concealed share, link utilisation (received ÷ cap), RTX overhead, and the SFU's view of the viewer. Each
profile runs --runs times (interleaved, so drifting machine load spreads over all profiles); prints one JSON
object (per source and profile: median/min/max of each figure and the per-run figures), then a summary table.

    nice .venv/bin/python -m bench.links --runs 5 --source both     # as root
    .venv/bin/python -m bench.links --profiles 1000:30,300:10 --save bench/results --tag baseline

A profile is RATE_KBIT:LOSS_PERMILLE (0 kbit/s: uncapped). Needs root, nft and /usr/bin/chromium. A run takes
about --window + 15 s; no new run starts after --budget seconds. A broken run reports its error, not a crash;
Ctrl-C or SIGTERM stops at once, still removing namespaces (and their nft rules), browsers and servers.

The server runs from this checkout's working tree. To measure a commit instead (a baseline while the tree is
being edited): `git archive REV | tar -x -C DIR`, copy bench/links.py and testkit's link_*/lossy_link/clip_audio/
netns modules into DIR, and run from DIR with this venv's python (`--note` says what was measured).
"""
from __future__ import annotations

import argparse
import json
import signal
import sys
import tempfile
import time
import traceback
from pathlib import Path
from statistics import median, median_low
from typing import Any, Optional, Sequence

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # run as `python bench/links.py` as well as `-m bench.links`
    sys.path.insert(0, str(REPO))

from testkit.lossy_link import SOURCES, LinkProfile, LossyResult, LossyScenario, run_lossy  # noqa: E402
from testkit.netns import unavailable_reason  # noqa: E402

DEFAULT_PROFILES = "4000:0,2000:50,1000:30,500:20,300:10"
# the figures aggregated over runs (browser's, then the SFU's view of the viewer)
FIGURES = ("fps", "height", "height_min", "frozen", "audio_concealed", "audio_silent_concealed", "utilisation",
           "received_kbps", "video_kbps", "rtx_overhead", "video_rtx_packets", "video_packets_lost", "video_nacks",
           "audio_packets_lost", "first_frame_s", "nft_loss")
SERVER_FIGURES = ("layer", "remb_bps", "estimate_bps", "bitrate_bps", "fraction_lost", "fraction_lost_mean",
                  "rtx_packets", "probe_packets")
SETUP_S = 15.0  # a run's setup and teardown around its window
CLIP = dict(seconds=4.0, width=1280, height=720, bitrate=1_500_000, gop=30)  # the ladder's 720p source


def spread(values: Sequence[Optional[float]]) -> dict:
    """Median, min and max of the values that were measured, and how many were not. Whole numbers (heights,
    layers) take the lower middle value, so that the median is one that was seen, never 450 lines."""
    got = [v for v in values if v is not None]
    if not got:
        return {"median": None, "min": None, "max": None, "n": 0, "missing": len(values)}
    middle = median_low(got) if all(isinstance(v, int) for v in got) else round(median(got), 4)
    return {"median": middle, "min": min(got), "max": max(got), "n": len(got), "missing": len(values) - len(got)}


def aggregate(runs: list[dict]) -> dict:
    ok = [r for r in runs if "error" not in r]
    out = {k: spread([r["figures"].get(k) for r in ok]) for k in FIGURES}
    out["server"] = {k: spread([r["server"].get(k) for r in ok]) for k in SERVER_FIGURES}
    out["runs_ok"] = len(ok)
    return out


def run_record(r: LossyResult) -> dict:
    """What one run reports: the browser's figures, the SFU's, and what the link itself did."""
    nft = r.nft
    figures = dict(r.figures)
    figures["nft_loss"] = round(nft["udp_dropped"] / nft["udp_in"], 4) if nft.get("udp_in") else None
    return {"figures": figures, "server": r.server, "source_fps": r.source_fps, "nft": nft,
            "ice_local": (r.ice or {}).get("local"), "page_errors": r.errors[:5]}


def _pct(a: dict, key: str) -> str:
    m = a[key]["median"]
    return "-" if m is None else f"{100 * m:.1f}%"


def _or_dash(x: Any) -> str:
    return "-" if x is None else f"{x:g}"


def summary_table(results: dict) -> str:
    """One line per source and profile: medians over the runs (min–max for the frame rate)."""
    rows = [("source", "profile", "runs", "fps (min-max)", "height", "min", "frozen", "audio", "util", "rtx",
             "server layer")]
    for source, profiles in results.items():
        for p in profiles.values():
            a = p["aggregate"]
            fps = a["fps"]
            rows.append((source, p["profile"], f"{a['runs_ok']}/{len(p['runs'])}",
                         "-" if fps["median"] is None else f"{fps['median']:.1f} ({fps['min']:.1f}-{fps['max']:.1f})",
                         _or_dash(a["height"]["median"]), _or_dash(a["height_min"]["min"]), _pct(a, "frozen"),
                         _pct(a, "audio_concealed"), _pct(a, "utilisation"), _pct(a, "rtx_overhead"),
                         _or_dash(a["server"]["layer"]["median"])))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))
                     for r in rows)


class BudgetSpent(Exception):
    pass


def _raise_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def _clip(source: str, audio_kbps: int) -> Optional[Path]:
    """The ladder's 720p source; its sound re-encoded at `audio_kbps` (0: as made, ~180 kbit/s of Opus)."""
    if source != "whip-clip":
        return None
    from bench.clips import CACHE, bench_clip  # PyAV: only where needed
    clip = bench_clip("clip-1280x720-4s-gop30-v1.webm", **CLIP)
    if not audio_kbps:
        return clip
    from testkit.clip_audio import with_audio_bitrate
    return with_audio_bitrate(clip, CACHE / f"clip-1280x720-4s-gop30-opus{audio_kbps}k-v2.webm", audio_kbps * 1000)


def _one_run(playwright: Any, workdir: Path, sc: LossyScenario) -> dict:
    started = time.monotonic()
    try:
        r = run_lossy(playwright, workdir, sc)
        (workdir / "result.json").write_text(json.dumps({  # for looking into a bad run
            "figures": r.figures, "server": r.server, "t_open": r.t_open, "t_measure": r.t_measure, "t_end": r.t_end,
            "samples": r.samples, "server_samples": r.server_samples, "qdisc": r.qdisc, "nft": r.nft}))
        run = run_record(r)
    except Exception as e:  # one broken run must not lose the others' numbers
        traceback.print_exc(file=sys.stderr)
        run = {"error": f"{type(e).__name__}: {e}"[:500]}
    run["wall_s"] = round(time.monotonic() - started, 1)
    return run


def report(results: dict, args: argparse.Namespace, workdir: Path, interrupted: bool) -> dict:
    for profiles in results.values():
        for p in profiles.values():
            p["aggregate"] = aggregate(p["runs"])
    return {"bench": "links", "window_s": args.window, "measure_s": args.measure, "runs_per_profile": args.runs,
            "clip_audio_kbps": args.clip_audio_kbps, "note": args.note, "code_dir": str(REPO),
            "interrupted": interrupted, "sources": results, "workdir": str(workdir)}


def save(out: dict, directory: Path, tag: str) -> None:
    """One file per source: links-<tag>-<source>.json."""
    directory.mkdir(parents=True, exist_ok=True)
    for source, profiles in out["sources"].items():
        (directory / f"links-{tag}-{source}.json").write_text(json.dumps({**out, "sources": {source: profiles}},
                                                                          indent=1) + "\n")


def main(argv: Optional[Sequence[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--profiles", default=DEFAULT_PROFILES, help="RATE_KBIT:LOSS_PERMILLE,... (0 kbit/s: uncapped)")
    ap.add_argument("--source", choices=(*SOURCES, "both"), default="both",
                    help="browser simulcast, a single-layer aiortc WHIP publisher (the server-side ladder), or both")
    ap.add_argument("--window", type=float, default=25.0, help="seconds from the terminal page opening")
    ap.add_argument("--measure", type=float, default=15.0, help="the figures cover the window's last seconds")
    ap.add_argument("--clip-audio-kbps", type=int, default=24,
                    help="whip-clip: re-encode the clip's Opus at this rate, near a browser's voice (0: as made)")
    ap.add_argument("--budget", type=float, default=7200.0, help="no new run starts after this many seconds")
    ap.add_argument("--workdir", type=Path, default=None, help="keep logs and samples here")
    ap.add_argument("--save", type=Path, default=None, help="also write links-<tag>-<source>.json here")
    ap.add_argument("--tag", default="run", help="the saved files' tag (e.g. baseline)")
    ap.add_argument("--note", default="", help="what code was measured (kept in the JSON)")
    args = ap.parse_args(argv)
    profiles = [LinkProfile.parse(p) for p in args.profiles.split(",") if p.strip()]
    sources = list(SOURCES) if args.source == "both" else [args.source]
    reason = unavailable_reason()
    if reason:
        print(json.dumps({"error": reason}))
        return 2
    signal.signal(signal.SIGTERM, _raise_interrupt)  # unwind (and clean up) as on Ctrl-C
    from playwright.sync_api import sync_playwright

    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="bench-links-"))
    clips = {s: _clip(s, args.clip_audio_kbps) for s in sources}
    results: dict[str, dict[str, dict]] = {s: {p.label: {"profile": p.describe(), "runs": []} for p in profiles}
                                           for s in sources}
    t0 = time.monotonic()
    interrupted = False
    try:
        with sync_playwright() as pw:
            for i in range(max(1, args.runs)):
                for source in sources:
                    for p in profiles:
                        if time.monotonic() - t0 + args.window + SETUP_S > args.budget:
                            raise BudgetSpent(f"budget of {args.budget:.0f} s spent")
                        sc = LossyScenario(p, source, clips[source], window_s=args.window, measure_s=args.measure)
                        run = _one_run(pw, workdir / f"{source}-{p.rate_kbit}-{p.loss_permille}-run{i}", sc)
                        results[source][p.label]["runs"].append(run)
                        print(f"{source} {p.label} run {i}: {json.dumps(run)}", file=sys.stderr)
    except BudgetSpent as e:
        print(f"stopping early: {e}", file=sys.stderr)
    except KeyboardInterrupt:
        interrupted = True
        print("interrupted: reporting the runs done so far", file=sys.stderr)
    out = report(results, args, workdir, interrupted)
    if args.save:
        save(out, args.save, args.tag)
    print(json.dumps(out, indent=1))
    print(summary_table(out["sources"]))
    return 130 if interrupted else 0


if __name__ == "__main__":
    sys.exit(main())
