"""Session churn against a real server, and what it leaves behind: open many WHEP viewer sessions (each its own
classroom identity) from real aiortc offers, delete them, read the server's RSS, fds, tasks and live peer
connections."""
from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Optional

import aiohttp

from testkit.peers import offer, post_offer
from testkit.server import ServerProcess

# what a churn round needs of the server: far more new sessions a second from one address than a school's
EXTRA_ARGS = ("--rate-per-address", "10000")


def rss_mb(pid: int) -> float:
    """VmRSS of a process, in MB."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for {pid}")


def metrics(server: ServerProcess) -> dict[str, float]:
    """GET /metrics as {name (with labels): value}, on a connection of its own (closed: not counted later)."""
    status, body = server.http("/metrics")
    if status != 200:
        raise RuntimeError(f"/metrics: HTTP {status}")
    out: dict[str, float] = {}
    for line in body.decode().splitlines():
        if line.startswith("liveclass_"):
            name, value = line.rsplit(" ", 1)
            out[name] = float(value)
    return out


@dataclass
class Sample:
    rss_mb: float
    fds: int
    tasks: int
    sessions: int
    peer_connections: int
    loop_lag_s: float
    reliefs: int

    @classmethod
    def take(cls, server: ServerProcess) -> "Sample":
        m = metrics(server)
        return cls(round(rss_mb(server.proc.pid), 1), int(m["liveclass_open_fds"]), int(m["liveclass_asyncio_tasks"]),
                   int(m['liveclass_sessions{role="publisher"}'] + m['liveclass_sessions{role="viewer"}']),
                   int(m.get("liveclass_peer_connections", -1)), m.get("liveclass_event_loop_lag_seconds", -1.0),
                   int(m.get("liveclass_heap_reliefs_total", -1)))


async def open_viewer(http: aiohttp.ClientSession, server: ServerProcess, room: str, identity: str) -> tuple[str, str]:
    """One viewer session from a fresh aiortc offer that never connects; (its Location, its token)."""
    token = server.token(room, "terminal", identity=identity)
    _, location, _ = await post_offer(http, f"{server.base_url}/whep/{room}", token, await offer("recvonly"))
    return location, token


async def delete(http: aiohttp.ClientSession, server: ServerProcess, location: str, token: str) -> int:
    async with http.delete(server.base_url + location, headers={"Authorization": f"Bearer {token}"}) as r:
        return r.status


async def churn_round(server: ServerProcess, room: str, n: int, concurrency: int = 10,
                      delete_them: bool = True) -> list[tuple[str, str]]:
    """Open `n` viewer sessions (identities class-0..n-1), all held at once, then delete them (unless told not
    to: they are then abandoned, and the server's connect timeout must end them). The HTTP connections are
    closed at the end (the server's fd count is then its own)."""
    async with aiohttp.ClientSession() as http:
        return await _churn(http, server, room, n, concurrency, delete_them)


async def _churn(http: aiohttp.ClientSession, server: ServerProcess, room: str, n: int, concurrency: int,
                 delete_them: bool) -> list[tuple[str, str]]:
    gate = asyncio.Semaphore(concurrency)

    async def one(i: int) -> tuple[str, str]:
        async with gate:
            return await open_viewer(http, server, room, f"class-{i}")

    made = await asyncio.gather(*(one(i) for i in range(n)))
    if delete_them:
        async def rm(session: tuple[str, str]) -> None:
            async with gate:
                status = await delete(http, server, *session)
                if status != 200:
                    raise RuntimeError(f"DELETE {session[0]}: HTTP {status}")
        await asyncio.gather(*(rm(s) for s in made))
    return list(made)


async def settle(server: ServerProcess, reliefs_before: Optional[int] = None,
                 sessions: int = 0, timeout: float = 30.0, quiet: float = 0.5) -> Sample:
    """Wait until the server holds `sessions` sessions and, given the heap-relief count sampled before the round,
    until a relief ran since (once closes have calmed for a second: bounded by `timeout` too); then `quiet`
    seconds more, and the sample."""
    deadline = time.monotonic() + timeout
    while True:
        now = Sample.take(server)
        relieved = reliefs_before is None or now.reliefs < 0 or now.reliefs > reliefs_before
        if now.sessions == sessions and relieved:
            break
        if time.monotonic() > deadline:
            raise TimeoutError(f"after {timeout:g} s: {now}")
        await asyncio.sleep(0.25)
    await asyncio.sleep(quiet)
    return Sample.take(server)


def new_server(log_path: Optional[str] = None, **kw) -> ServerProcess:
    return ServerProcess(extra=EXTRA_ARGS + tuple(kw.pop("extra", ())), log_path=log_path, **kw)
