"""Coverage-guided fuzzing of one testkit/fuzz_targets.py target with atheris (libFuzzer), in a subprocess.

    python -m testkit.fuzz_runner TARGET [libFuzzer args...]    # the fuzzing process itself
    run(TARGET, runs=..., max_seconds=...)                       # from a test or a bench: spawns the above

The process instruments only the target's modules (MODULES: coverage comes from the parser, not from the
harness or the standard library), then hands the target to libFuzzer. `run` starts from the seed corpus in
tests/fuzz_corpus/TARGET (read-only: new inputs go to a scratch corpus), and reads libFuzzer's output:
executions, coverage (`cov:` edges, `ft:` features), corpus size and any crash, timeout or out-of-memory
input it wrote (stopping at the first one, with the reproducer kept).
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import FunctionType, ModuleType
from typing import Optional

REPO = Path(__file__).resolve().parent.parent
CORPUS = REPO / "tests" / "fuzz_corpus"
ARTIFACT_PREFIXES = ("crash-", "timeout-", "oom-", "leak-")
HANG_S = 10         # one input running longer than this is a finding (libFuzzer -timeout)
RSS_LIMIT_MB = 2048


@dataclass
class FuzzResult:
    target: str
    returncode: int
    executions: int
    seconds: float
    exec_per_s: int
    cov: int
    ft: int
    corpus: int
    crashes: int
    artifacts: list[str] = field(default_factory=list)
    log_tail: str = ""

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and self.crashes == 0

    def summary(self) -> dict:
        d = asdict(self)
        del d["log_tail"]
        return d

    def reproducer(self) -> str:
        """What to show for a finding: the inputs, how to replay them, and the end of libFuzzer's output."""
        lines = []
        for a in self.artifacts:
            data = Path(a).read_bytes()
            lines.append(f"{a} ({len(data)} bytes): {data[:256].hex()}{'...' if len(data) > 256 else ''}")
            lines.append(f"  replay: .venv/bin/python -m testkit.fuzz_targets replay {self.target} {a}")
        at = self.log_tail.find("=== Uncaught Python exception")  # the traceback, else the last lines
        tail = self.log_tail[at:] if at >= 0 else self.log_tail[-3000:]
        return "\n".join(lines + ["--- libFuzzer output ---", tail])


_STATUS = re.compile(r"^#(\d+)\s+\w+\s+cov: (\d+) ft: (\d+) corp: (\d+)/", re.M)
_STAT = re.compile(r"^stat::(\w+):\s+(\d+)", re.M)


def parse_output(text: str) -> dict[str, int]:
    """Executions, cov, ft and corpus size from libFuzzer's status lines and final stats."""
    out = {"executions": 0, "cov": 0, "ft": 0, "corpus": 0}
    status = _STATUS.findall(text)
    if status:
        n, cov, ft, corp = (int(x) for x in status[-1])
        out.update(executions=n, cov=cov, ft=ft, corpus=corp)
    stats = dict((k, int(v)) for k, v in _STAT.findall(text))
    if "number_of_executed_units" in stats:
        out["executions"] = stats["number_of_executed_units"]
    return out


def run(target: str, runs: int, max_seconds: int, workdir: Optional[Path] = None,
        extra: tuple[str, ...] = ()) -> FuzzResult:
    """Fuzz `target` for `runs` inputs or `max_seconds`, whichever ends first, in a subprocess (inheriting
    this process's niceness). Scratch corpus and artifacts go to `workdir` (if None, a fresh temp dir, removed
    unless a finding is in it)."""
    from testkit.fuzz_targets import MAX_LEN, SCRATCH_ENV

    work = Path(workdir) if workdir is not None else Path(tempfile.mkdtemp(prefix=f"liveclass-fuzz-{target}-"))
    (work / "corpus").mkdir(parents=True, exist_ok=True)
    # webm_repair writes (and fsyncs) a file per input: on tmpfs when there is one
    scratch = tempfile.mkdtemp(prefix="liveclass-fuzz-", dir="/dev/shm" if os.access("/dev/shm", os.W_OK) else None)
    cmd = [sys.executable, "-m", "testkit.fuzz_runner", target, f"-runs={runs}", f"-max_total_time={max_seconds}",
           f"-max_len={MAX_LEN[target]}", f"-timeout={HANG_S}", f"-rss_limit_mb={RSS_LIMIT_MB}",
           f"-artifact_prefix={work}/", "-print_final_stats=1", *extra, str(work / "corpus"), str(CORPUS / target)]
    env = dict(os.environ, PYTHONPATH=str(REPO), PYTHONHASHSEED="0", **{SCRATCH_ENV: scratch})
    t0 = time.monotonic()
    try:
        # the run's own bound plus start-up; a hang inside one input is libFuzzer's -timeout
        proc = subprocess.run(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              timeout=max_seconds + 3 * HANG_S + 120)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    seconds = time.monotonic() - t0
    text = proc.stdout.decode("utf-8", "replace")
    artifacts = sorted(str(p) for p in work.iterdir() if p.name.startswith(ARTIFACT_PREFIXES))
    stats = parse_output(text)
    if workdir is None and not artifacts:
        shutil.rmtree(work, ignore_errors=True)  # only a scratch corpus: nothing to keep
    return FuzzResult(target, proc.returncode, stats["executions"], round(seconds, 1),
                      int(stats["executions"] / max(seconds, 1e-3)), stats["cov"], stats["ft"], stats["corpus"],
                      len(artifacts), artifacts, text[-6000:])


# ---- the fuzzing process -------------------------------------------------------------------------------------

def _functions(module: ModuleType) -> list[FunctionType]:
    """The Python functions a module defines, with its classes' methods and properties."""
    out: list[FunctionType] = []

    def add(obj: object) -> None:
        for f in (obj, getattr(obj, "__func__", None), getattr(obj, "fget", None), getattr(obj, "fset", None)):
            if isinstance(f, FunctionType) and f.__module__ == module.__name__:
                out.append(f)

    for obj in vars(module).values():
        if isinstance(obj, type) and obj.__module__ == module.__name__:
            for member in vars(obj).values():
                add(member)
        else:
            add(obj)
    return out


def instrument(module_names: tuple[str, ...]) -> int:
    """Add atheris's coverage and comparison tracing to these modules' functions (in place: every reference
    to them sees it). Returns how many were instrumented."""
    import importlib

    import atheris

    n = 0
    for name in module_names:
        for f in _functions(importlib.import_module(name)):
            atheris.instrument_func(f)
            n += 1
    return n


def main(argv: list[str]) -> None:
    import atheris

    from testkit.fuzz_targets import MODULES, TARGETS

    if not argv or argv[0] not in TARGETS:
        sys.exit(f"usage: python -m testkit.fuzz_runner TARGET [libFuzzer args]; targets: {', '.join(TARGETS)}")
    target = argv[0]
    n = instrument(MODULES[target])
    print(f"INFO: {target}: instrumented {n} functions in {', '.join(MODULES[target])}", file=sys.stderr)
    atheris.Setup([sys.argv[0], *argv[1:]], TARGETS[target])
    atheris.Fuzz()


if __name__ == "__main__":
    main(sys.argv[1:])
