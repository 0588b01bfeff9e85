"""Coverage-guided fuzzing (atheris) of every parser that reads what a peer sends, at length.

    .venv/bin/python bench/fuzz.py                                    # every target, 1,000,000 inputs each
    .venv/bin/python bench/fuzz.py --target rtcp --runs 100000        # one target, a quick look
    .venv/bin/python bench/fuzz.py --max-seconds 60                   # bounded in time as well

Each target (testkit/fuzz_targets.py) runs in a subprocess of its own (testkit/fuzz_runner.py) from the seed
corpus in tests/fuzz_corpus, for --runs inputs or --max-seconds, whichever ends first, and stops at its first
finding (the reproducer is kept in the work folder, printed with how to replay it).
stdout: one JSON object (per target: executions, exec/s, coverage as libFuzzer's cov/ft, corpus size,
crashes, and whether it reached --runs), then one summary line. Exit status 1 when any target found something.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Optional

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from testkit.fuzz_runner import run  # noqa: E402
from testkit.fuzz_targets import TARGETS  # noqa: E402


def main(argv: Optional[list[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--target", choices=sorted(TARGETS), action="append",
                   help="a target to run (repeatable; default: all)")
    p.add_argument("--runs", type=int, default=1_000_000, help="inputs per target (default 1,000,000)")
    p.add_argument("--max-seconds", type=int, default=600, help="time bound per target (default 600)")
    a = p.parse_args(argv)
    if a.runs < 1 or a.max_seconds < 1:
        p.error("--runs and --max-seconds must be positive")
    work = Path(tempfile.mkdtemp(prefix="liveclass-fuzz-bench-"))
    targets = a.target or list(TARGETS)
    results: dict[str, dict] = {}
    findings: list[str] = []
    t0 = time.monotonic()
    for name in targets:
        r = run(name, a.runs, a.max_seconds, workdir=work / name)
        results[name] = {**r.summary(), "reached_runs": r.executions >= a.runs}
        del results[name]["target"]
        print(f"{name}: {r.executions} inputs in {r.seconds:.0f} s ({r.exec_per_s}/s), cov {r.cov} ft {r.ft}, "
              f"corpus {r.corpus}, crashes {r.crashes}", file=sys.stderr, flush=True)
        if not r.ok:
            findings.append(name)
            print(r.reproducer(), file=sys.stderr)
    total = sum(r["executions"] for r in results.values())
    short = [n for n, r in results.items() if not r["reached_runs"] and n not in findings]
    if not findings:
        shutil.rmtree(work, ignore_errors=True)  # scratch corpora only; a finding's reproducer is kept
    print(json.dumps({"runs": a.runs, "max_seconds": a.max_seconds, "work": str(work) if findings else None,
                      "targets": results, "total_executions": total, "seconds": round(time.monotonic() - t0)},
                     indent=2))
    crashes = sum(r["crashes"] for r in results.values())
    print(f"{len(results)} targets, {total:,} inputs in {time.monotonic() - t0:.0f} s: {crashes} crashes"
          + (f" ({', '.join(findings)})" if findings else "")
          + (f"; under {a.runs:,} inputs (time bound): "
             + ", ".join(f"{n} {results[n]['executions']:,} at {results[n]['exec_per_s']}/s" for n in short)
             if short else f"; every target reached {a.runs:,} inputs"))
    return 1 if findings else 0


if __name__ == "__main__":
    sys.exit(main())
