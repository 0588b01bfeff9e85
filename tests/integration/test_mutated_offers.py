"""Mutated WHIP/WHEP offers with valid tokens against a real `liveclass serve`: every answer is a 201 or a 4xx
with a reason — never a 5xx, never a hang — the half-built peer connections are closed (the session count and
open file descriptors come back), the server logs no traceback, and it still serves a real viewer afterwards."""
from __future__ import annotations

import collections
import re
from pathlib import Path

import aiohttp

from testkit.offer_mutator import base_offers, mutated_offers
from testkit.lesson_peers import lesson_plays
from testkit.server import ServerProcess
from tests.integration.test_cluster import wait_for

MUTANTS = 300            # per endpoint in CI (bench/offer_fuzz.py runs thousands)
REQUEST_TIMEOUT_S = 10.0


def _session_count(server: ServerProcess) -> dict[str, int]:
    status, body = server.http("/metrics")
    text = body.decode()
    return {role: int(re.search(rf'liveclass_sessions{{role="{role}"}} (\d+)', text).group(1))
            for role in ("publisher", "viewer")} | {"fds": int(re.search(r"liveclass_open_fds (-?\d+)", text).group(1))}


async def test_mutated_offers_get_4xx_with_reasons_and_leave_nothing_behind(tmp_path: Path, clip: Path) -> None:
    # every request comes from this one address: the parsers, not the rate limit (test_request_limits), are tested
    server = ServerProcess(log_path=tmp_path / "server.log", extra=("--rate-per-address", "100000"))
    offers = await base_offers()
    statuses: dict[str, collections.Counter] = {"whip": collections.Counter(), "whep": collections.Counter()}
    bad: list[tuple[str, int, str, int, str]] = []
    try:
        before = _session_count(server)
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S)) as http:
            for kind in ("whep", "whip"):
                for i, sdp, what in mutated_offers(offers[kind], MUTANTS, seed=1 if kind == "whip" else 2):
                    # its own classroom each time: a replaced publisher is not what this test is about
                    token = server.token("fuzz", "terminal" if kind == "whip" else "student", identity=f"c{i}")
                    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/sdp"}
                    async with http.post(f"{server.base_url}/{kind}/fuzz", data=sdp.encode("utf-8", "replace"),
                                         headers=headers) as r:
                        body = await r.text()
                        statuses[kind][r.status] += 1
                        if r.status >= 500 or (r.status >= 400 and not body.strip()):
                            bad.append((kind, i, what, r.status, body[:200]))
                        if r.status == 201:   # end what was made: only the failures are meant to linger nowhere
                            async with http.delete(server.base_url + r.headers["Location"],
                                                   headers={"Authorization": f"Bearer {token}"}) as d:
                                await d.read()
        assert not bad, f"{len(bad)} answers were 5xx or gave no reason: {bad[:10]}"
        assert not any(statuses[kind][429] for kind in statuses), f"rate-limited, not parsed: {statuses}"
        for kind in statuses:   # the mutants are not all refused, nor all accepted: the test exercises both
            assert statuses[kind][201] > 0 and sum(v for k, v in statuses[kind].items() if 400 <= k < 500) > 0, statuses
        wait_for(lambda: (lambda c: c["publisher"] == c["viewer"] == 0 and c["fds"] <= before["fds"] + 5)(
            _session_count(server)), 15, f"sessions and fds released ({before} before)")
        log = server.log_tail(200_000)
        assert "Traceback" not in log, log[log.index("Traceback") - 300:][:3000]

        await lesson_plays(server, "fuzz", clip, role="student")   # and the server still does its job
    finally:
        server.stop()
    print({k: dict(v) for k, v in statuses.items()})
