"""Bounded resources per classroom and per node: the rate rules and caps with the time passed in, then a real
`liveclass serve` with small limits and real aiortc offers — a token that opens session after session gets 429
with Retry-After and never holds more than its cap, a full room and a full node answer 503 with the reason, a
client claiming to be a cluster node is limited like any other, and the room socket is rate-limited too."""
from __future__ import annotations

import asyncio
import re
import time
from pathlib import Path

import aiohttp
import pytest

from signaling.cluster import peer_requests
from signaling.http.request_limits import KeyedBuckets, Limits, LimitsError, RequestLimiter, capacity_refusal, retry_after
from testkit.peers import offer
from testkit.server import ServerProcess


# --- pure rules ----------------------------------------------------------------------------------------------

def test_buckets_refill_and_say_how_long_to_wait() -> None:
    b = KeyedBuckets(rate=2.0, burst=3.0)
    assert [b.take("a", 0.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert b.take("a", 0.0) == pytest.approx(0.5)
    assert b.take("b", 0.0) == 0.0            # another key has its own bucket
    assert b.take("a", 0.5) == 0.0            # refilled one token in 0.5 s
    assert retry_after(0.2) == "1" and retry_after(2.1) == "3"


def test_buckets_are_bounded_in_number() -> None:
    b = KeyedBuckets(rate=1.0, burst=1.0, max_keys=100)
    for i in range(10_000):
        b.take(f"10.0.{i // 256}.{i % 256}", 0.0)
    assert len(b) == 100


def test_limiter_checks_the_address_then_the_identity() -> None:
    lim = RequestLimiter(Limits(address_rate=1.0, address_burst=4.0, identity_rate=1.0, identity_burst=2.0))
    now = 100.0
    assert lim.check("10.0.0.1", "school-1", now) is None
    assert lim.check("10.0.0.1", "school-1", now) is None
    refusal = lim.check("10.0.0.1", "school-1", now)
    assert refusal.status == 429 and "school-1" in refusal.reason and refusal.retry_after_s > 0
    assert lim.check("10.0.0.1", "school-2", now) is None      # the school's other classroom is not held back
    assert lim.check("10.0.0.1", "school-3", now).reason.startswith("too many requests from 10.0.0.1")


def test_capacity_and_options() -> None:
    limits = Limits(room_sessions=3)
    assert capacity_refusal(2, 2, limits, 10) is None
    assert "lesson is full" in capacity_refusal(3, 3, limits, 10).reason
    assert "server is full" in capacity_refusal(10, 0, limits, 10).reason
    assert Limits().node_capacity(open_files=1024) == (1024 - 128) // 2
    assert Limits(node_sessions=7).node_capacity(open_files=1024) == 7
    with pytest.raises(LimitsError, match="--max-sessions-per-source"):
        Limits.build(sessions_per_source=0)
    with pytest.raises(LimitsError, match="positive"):
        Limits.build(address_rate=-1)


def test_peer_request_headers_are_signed_for_one_request_and_expire() -> None:
    value = peer_requests.mark("s" * 32, "node-a", "POST", "/whep/r?x=1", now=1000.0)
    assert peer_requests.sender("s" * 32, value, "POST", "/whep/r?x=1", 1010.0) == "node-a"
    assert peer_requests.sender("s" * 32, value, "POST", "/whep/other", 1010.0) is None   # another request
    assert peer_requests.sender("t" * 32, value, "POST", "/whep/r?x=1", 1010.0) is None   # another cluster
    assert peer_requests.sender("s" * 32, value, "POST", "/whep/r?x=1", 1100.0) is None   # expired
    for forged in ("node-a", "node-a;9999999999;00", "", "a;b;c", "x" * 1000):
        assert peer_requests.sender("s" * 32, forged, "POST", "/whep/r?x=1", 1010.0) is None


# --- a real server ---------------------------------------------------------------------------------------------

async def _post(http: aiohttp.ClientSession, server: ServerProcess, token: str, sdp: str, kind: str = "whep",
                room: str = "limits", headers: dict | None = None) -> tuple[int, str, dict]:
    h = {"Authorization": f"Bearer {token}", "Content-Type": "application/sdp", **(headers or {})}
    async with http.post(f"{server.base_url}/{kind}/{room}", data=sdp, headers=h) as r:
        return r.status, await r.text(), dict(r.headers)


def _sessions(server: ServerProcess) -> int:
    text = server.http("/metrics")[1].decode()
    return sum(int(x) for x in re.findall(r'liveclass_sessions\{role="\w+"\} (\d+)', text))


async def test_one_token_opening_sessions_in_a_loop_is_held_to_its_cap(tmp_path: Path) -> None:
    server = ServerProcess(log_path=tmp_path / "server.log", extra=("--rate-per-identity", "2"))
    try:
        sdp = await offer("recvonly")
        token = server.token("limits", "terminal", identity="school-7")
        statuses: list[int] = []
        retry = None
        async with aiohttp.ClientSession() as http:
            started = time.monotonic()
            for _ in range(200):   # what one careless page (or one stolen token) might do
                status, body, headers = await _post(http, server, token, sdp)
                statuses.append(status)
                if status == 429:
                    assert "school-7" in body and int(headers["Retry-After"]) >= 1, (body, headers)
                    retry = int(headers["Retry-After"])
            refill = int(2 * (time.monotonic() - started)) + 1    # 2 a second came back meanwhile
            assert 12 <= statuses.count(201) <= 12 + refill, statuses   # the burst of 12, then refused
            assert statuses.count(201) + statuses.count(429) == 200, statuses
            assert _sessions(server) == 2          # and of those, only its newest two are left
            await asyncio.sleep(retry)
            status, _, _ = await _post(http, server, token, sdp)
            assert status == 201                   # it may go on once it waited as told
            other = server.token("limits", "terminal", identity="school-8")
            assert (await _post(http, server, other, sdp))[0] == 201   # other classrooms were never held back
    finally:
        server.stop()


async def test_full_room_and_full_node_answer_503_with_the_reason(tmp_path: Path) -> None:
    server = ServerProcess(log_path=tmp_path / "server.log",
                           extra=("--max-room-sessions", "3", "--max-node-sessions", "4"))
    try:
        sdp = await offer("recvonly")
        async with aiohttp.ClientSession() as http:
            for i in range(3):
                assert (await _post(http, server, server.token("a", "student", identity=f"s{i}"), sdp, room="a"))[0] == 201
            status, body, headers = await _post(http, server, server.token("a", "student", identity="s9"), sdp, room="a")
            assert status == 503 and "lesson is full" in body and headers["Retry-After"], (status, body)
            assert (await _post(http, server, server.token("b", "student", identity="t0"), sdp, room="b"))[0] == 201
            status, body, _ = await _post(http, server, server.token("c", "student", identity="u0"), sdp, room="c")
            assert status == 503 and "server is full" in body, (status, body)
    finally:
        server.stop()


async def test_a_client_posing_as_a_cluster_node_is_limited_like_any_other(tmp_path: Path) -> None:
    server = ServerProcess(log_path=tmp_path / "server.log", extra=("--rate-per-identity", "1"))
    try:
        sdp = await offer("recvonly")
        token = server.token("limits", "student", identity="mallory")
        forged = {peer_requests.HEADER: "node-a;9999999999;" + "0" * 64}
        async with aiohttp.ClientSession() as http:
            statuses = [(await _post(http, server, token, sdp, headers=forged))[0] for _ in range(20)]
        assert 429 in statuses, statuses
    finally:
        server.stop()


async def test_room_socket_connections_are_rate_limited(tmp_path: Path) -> None:
    server = ServerProcess(log_path=tmp_path / "server.log", extra=("--rate-per-identity", "1"))
    try:
        token = server.token("limits", "terminal", identity="school-ws")
        refused = None
        async with aiohttp.ClientSession() as http:
            for _ in range(30):
                try:
                    ws = await http.ws_connect(f"{server.base_url.replace('http', 'ws')}/ws/limits?token={token}")
                    await ws.close()
                except aiohttp.WSServerHandshakeError as exc:
                    refused = exc
                    break
        assert refused is not None and refused.status == 429, refused
        assert int(refused.headers["Retry-After"]) >= 1
    finally:
        server.stop()
