"""Summarize a py-spy profile recorded with `--format raw` (collapsed stacks): top functions and lines.

    py-spy record -p PID -d 15 -r 200 --format raw -o /tmp/sfu.txt
    .venv/bin/python bench/pyspy_top.py /tmp/sfu.txt [--top 25] [--idle]

"self" is the share of samples whose innermost frame is that function (or line); "total" counts a sample once
for every function on its stack. Samples idle in the event loop's epoll wait or in a thread blocked on a
lock (aiortc's idle decoder threads) are dropped unless --idle.
"""
from __future__ import annotations

import argparse
import re
from collections import Counter
from pathlib import Path

_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^()]*?)(?::(?P<line>\d+))?\)$")
IDLE = ("EpollSelector.select (selectors.py", "select (selectors.py", "Condition.wait (threading.py",
        "Event.wait (threading.py", "Thread._wait_for_tstate_lock (threading.py")


def parse(path: Path) -> list[tuple[list[str], int]]:
    stacks = []
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if stack and count.isdigit():
            stacks.append((stack.split(";"), int(count)))
    return stacks


def func_of(frame: str) -> str:
    m = _FRAME.match(frame)
    return f"{m['func']} ({m['file']})" if m else frame


def summarize(stacks: list[tuple[list[str], int]], top: int, idle: bool) -> str:
    if not idle:
        stacks = [(s, n) for s, n in stacks if not any(s[-1].startswith(p) for p in IDLE)]
    total = sum(n for _, n in stacks) or 1
    self_fn: Counter = Counter()
    self_line: Counter = Counter()
    incl: Counter = Counter()
    for frames, n in stacks:
        self_line[frames[-1]] += n
        self_fn[func_of(frames[-1])] += n
        for f in {func_of(f) for f in frames}:
            incl[f] += n
    out = [f"{total} busy samples" + (" (idle included)" if idle else " (epoll wait excluded)"), "",
           "self % by function:"]
    out += [f"  {100 * n / total:5.1f}  {f}" for f, n in self_fn.most_common(top)]
    out += ["", "self % by line:"]
    out += [f"  {100 * n / total:5.1f}  {f}" for f, n in self_line.most_common(top)]
    out += ["", "total % by function (inclusive):"]
    out += [f"  {100 * n / total:5.1f}  {f}" for f, n in incl.most_common(top)]
    return "\n".join(out)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("profile", type=Path)
    p.add_argument("--top", type=int, default=25)
    p.add_argument("--idle", action="store_true", help="keep samples waiting in epoll")
    a = p.parse_args()
    print(summarize(parse(a.profile), a.top, a.idle))


if __name__ == "__main__":
    main()
