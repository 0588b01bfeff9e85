"""Mutated WHIP/WHEP offers against a live server, in bulk: how they are answered and what they leave behind.

    .venv/bin/python bench/offer_fuzz.py               # 2,000 mutants per endpoint (~1-2 min)
    .venv/bin/python bench/offer_fuzz.py -n 200        # a quick look

One `liveclass serve` subprocess on loopback; this process POSTs testkit/offer_mutator.py's mutants of real
aiortc offers (a viewer's, a publisher's, a Chromium-like simulcast one), each with a valid token of its own
classroom, DELETEs what was created, and reads the server's RSS, open files and sessions before and after.
stdout: one JSON object (statuses per endpoint, 5xx with their mutation, answer times, what was left), then one
summary line. Bounded: a fixed count, a timeout per request.
"""
from __future__ import annotations

import argparse
import asyncio
import collections
import json
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Optional

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import aiohttp  # noqa: E402

from testkit.churn import rss_mb  # noqa: E402
from testkit.offer_mutator import base_offers, mutated_offers  # noqa: E402
from testkit.server import ServerProcess  # noqa: E402

REQUEST_TIMEOUT_S = 10.0


def server_state(server: ServerProcess) -> dict:
    text = server.http("/metrics")[1].decode()
    sessions = sum(int(x) for x in re.findall(r'liveclass_sessions\{role="\w+"\} (\d+)', text))
    fds = int(re.search(r"liveclass_open_fds (-?\d+)", text).group(1))
    return {"rss_mb": round(rss_mb(server.proc.pid), 1), "fds": fds, "sessions": sessions}


async def run(server: ServerProcess, n: int, seed: int) -> dict:
    offers = await base_offers()
    out: dict = {}
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S)) as http:
        for kind in ("whep", "whip"):
            statuses: collections.Counter = collections.Counter()
            errors, times = [], []
            for i, sdp, what in mutated_offers(offers[kind], n, seed=seed + (1 if kind == "whip" else 2)):
                token = server.token("fuzz", "terminal" if kind == "whip" else "student", identity=f"c{i}")
                headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/sdp"}
                t = time.perf_counter()
                try:
                    async with http.post(f"{server.base_url}/{kind}/fuzz", data=sdp.encode("utf-8", "replace"),
                                         headers=headers) as r:
                        body = await r.text()
                        status = r.status
                        location = r.headers.get("Location")
                except asyncio.TimeoutError:
                    status, body, location = "timeout", "", None
                times.append((time.perf_counter() - t) * 1000)
                statuses[status] += 1
                if status == "timeout" or status >= 500:
                    errors.append({"index": i, "mutation": what, "status": status, "body": body[:200]})
                if location:
                    async with http.delete(server.base_url + location, headers={"Authorization": f"Bearer {token}"}):
                        pass
            times.sort()
            out[kind] = {"statuses": {str(k): v for k, v in sorted(statuses.items(), key=str)}, "errors": errors[:20],
                         "errors_total": len(errors), "median_ms": round(statistics.median(times), 2),
                         "p99_ms": round(times[int(0.99 * (len(times) - 1))], 2), "max_ms": round(times[-1], 2)}
    return out


def main(argv: Optional[list[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("-n", type=int, default=2000, help="mutants per endpoint (default 2000)")
    p.add_argument("--seed", type=int, default=11)
    a = p.parse_args(argv)
    if not 1 <= a.n <= 100_000:
        p.error("-n 1-100000")
    work = Path(tempfile.mkdtemp(prefix="liveclass-offer-fuzz-"))
    # every mutant comes from this machine: lift the per-address join rate
    server = ServerProcess(log_path=work / "server.log", extra=("--rate-per-address", "100000"))
    try:
        before = server_state(server)
        result = asyncio.run(run(server, a.n, a.seed))
        deadline = time.monotonic() + 30
        while server_state(server)["sessions"] and time.monotonic() < deadline:
            time.sleep(0.5)   # abandoned sessions end by themselves (never connected)
        after = server_state(server)
        tracebacks = server.log_tail(10_000_000).count("Traceback")
    finally:
        server.stop()
    result.update({"mutants_per_endpoint": a.n, "before": before, "after": after, "tracebacks_in_log": tracebacks})
    print(json.dumps(result, indent=2))
    five = sum(result[k]["errors_total"] for k in ("whep", "whip"))
    print(f"{2 * a.n} mutated offers: {five} 5xx/timeouts, {tracebacks} tracebacks logged; answered in "
          f"{result['whep']['median_ms']:.1f}/{result['whip']['median_ms']:.1f} ms median (WHEP/WHIP), "
          f"max {max(result['whep']['max_ms'], result['whip']['max_ms']):.0f} ms; server RSS {before['rss_mb']} → "
          f"{after['rss_mb']} MB, fds {before['fds']} → {after['fds']}, sessions left {after['sessions']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
