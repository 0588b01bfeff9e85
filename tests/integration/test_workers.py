"""`liveclass serve --workers N`: a supervisor and N worker processes sharing the public port, each a
cluster node with its own port; real redis-server, real aiortc WHIP/WHEP peers."""
from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import pytest
import redis

from signaling.cascade.cascade_policy import SPREAD_SLACK, other_work
from testkit.lesson_peers import frames_grow
from testkit.peers import WhepViewer, WhipPublisher
from testkit.redis_server import RedisServer
from testkit.ports import free_run, free_udp_run
from testkit.server import REPO, ServerProcess
from testkit.udp_sockets import udp_sockets_of
from tests.integration.test_cluster import wait_for

ROOM_KEY = "liveclass:room:{}"


def children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(x) for x in path.read_text().split()] if path.exists() else []


def healthy(port: int) -> bool:
    import urllib.request
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1) as r:
            return r.status == 200
    except OSError:
        return False


async def test_two_workers_share_the_port_and_spread_the_rooms(redis_server, tmp_path, clip) -> None:
    port, udp = free_run(2), free_udp_run(2)
    sup = ServerProcess(port=port, extra=("--workers", "2", "--redis", redis_url(redis_server), "--node-id", "m",
                                          "--udp-port", str(udp)),
                        log_path=tmp_path / "supervisor.log")
    db = redis.Redis.from_url(redis_server.url, decode_responses=True)
    pubs = [WhipPublisher(sup.base_url, room, sup.token(room, "teacher"), clip) for room in ("r1", "r2")]
    viewers = [WhepViewer(sup.base_url, room, sup.token(room, "terminal")) for room in ("r1", "r2")]
    try:
        wait_for(lambda: all(db.exists(f"liveclass:alive:m-w{i}") for i in (0, 1)), 15, "both workers registered")
        assert healthy(port + 1) and healthy(port + 2)
        for p in pubs:
            await p.start()
        placed = {db.get(ROOM_KEY.format(r)) for r in ("r1", "r2")}
        assert placed == {"m-w0", "m-w1"}, f"rooms should spread over the workers: {placed}"
        for v in viewers:   # whichever worker the kernel hands each request to, they play
            await v.start()
            assert v.resource_base == sup.base_url   # proxied: one origin for the pages
            await frames_grow(v)

        # a worker killed is started again by the supervisor and registers again
        workers = children(sup.proc.pid)
        assert len(workers) == 2, workers
        # each worker carries its media on one UDP port of its own: --udp-port, --udp-port + 1
        assert sorted(p for w in workers for p in udp_sockets_of(w)) == [udp, udp + 1]
        os.kill(workers[1], signal.SIGKILL)
        killed = time.monotonic()
        wait_for(lambda: len(set(children(sup.proc.pid)) - set(workers)) == 1 and healthy(port + 1)
                 and healthy(port + 2), 15, "the killed worker replaced")
        print(f"\nworker replaced {time.monotonic() - killed:.2f} s after kill -9")
        wait_for(lambda: all(db.exists(f"liveclass:alive:m-w{i}") for i in (0, 1)), 10, "workers registered")
        assert "exited with -9" in sup.log_tail(20000)

        for p in (*viewers, *pubs):  # the lessons end
            await p.stop()
        sup.proc.send_signal(signal.SIGTERM)   # the supervisor drains every worker and exits
        term = time.monotonic()
        sup.proc.wait(40)
        print(f"supervisor and workers gone {time.monotonic() - term:.2f} s after SIGTERM")
        assert sup.proc.returncode == 0, sup.log_tail()
        assert not any(healthy(p) for p in (port, port + 1, port + 2))
    finally:
        for p in (*viewers, *pubs):
            try:
                await p.stop()
            except (aiohttp.ClientError, OSError):
                pass
        sup.stop()


async def test_one_lesson_spreads_its_viewers_over_both_workers(redis_server, tmp_path, clip) -> None:
    """One room, many viewers: past what a new link costs, viewers go to the other worker (an edge relaying the
    room from the origin worker), whichever worker the kernel hands each request to; every one of them plays."""
    port, udp = free_run(2), free_udp_run(2)
    sup = ServerProcess(port=port, extra=("--workers", "2", "--redis", redis_url(redis_server), "--node-id", "s",
                                          "--udp-port", str(udp), "--no-ladder", "--rate-per-address", "1000"),
                        log_path=tmp_path / "supervisor.log")
    db = redis.Redis.from_url(redis_server.url, decode_responses=True)
    pub = WhipPublisher(sup.base_url, "big", sup.token("big", "teacher"), clip)
    viewers = [WhepViewer(sup.base_url, "big", sup.token("big", "terminal"), count_only=True) for _ in range(12)]
    try:
        wait_for(lambda: all(db.exists(f"liveclass:alive:s-w{i}") for i in (0, 1)), 15, "both workers registered")
        await pub.start()
        origin = db.get(ROOM_KEY.format("big"))
        edge = "s-w1" if origin == "s-w0" else "s-w0"
        wait_for(lambda: float(db.hget(f"liveclass:cascade:{origin}", "other_work") or 0) > 0, 5,
                 "the origin's teacher counted in its published load")
        for v in viewers:   # a class joining: each viewer placed with fresh counts
            await v.start()
            await asyncio.sleep(0.45)
        started = time.monotonic()
        while time.monotonic() - started < 15 and not all(v.packets for v in viewers):
            await asyncio.sleep(0.2)
        assert all(v.packets for v in viewers), [sum(v.packets.values()) for v in viewers]

        def served() -> dict[str, int]:
            return {w: int(db.hget(f"liveclass:cascade:{w}", "viewers") or 0) for w in (origin, edge)}
        wait_for(lambda: sum(served().values()) == len(viewers), 10, "every viewer counted on a worker")
        counts = served()
        print(f"\nviewers per worker: {counts} (origin {origin})")
        # the origin carries the teacher and the link out, the edge the link in: even loads, within the slack
        loads = (counts[origin] + other_work(1, 0, 1, 0), counts[edge] + other_work(0, 0, 0, 1))
        assert counts[origin] > 0 and abs(loads[0] - loads[1]) <= SPREAD_SLACK + 1, (counts, loads)
        before = [len(s) for v in viewers for s in v.seqs.values()]
        await asyncio.sleep(1.5)
        after = [len(s) for v in viewers for s in v.seqs.values()]
        assert all(b > a for a, b in zip(before, after)), "every viewer keeps receiving, on either worker"
    finally:
        for p in (*viewers, pub):
            try:
                await p.stop()
            except (aiohttp.ClientError, OSError):
                pass
        sup.stop()


def redis_url(r: RedisServer) -> str:
    return r.url


def test_workers_without_redis_start_a_private_one(tmp_path) -> None:
    port = free_run(2)
    sup = ServerProcess(port=port, extra=("--workers", "2"), log_path=tmp_path / "supervisor.log")
    try:
        wait_for(lambda: healthy(port + 1) and healthy(port + 2), 15, "both workers up")
        log = sup.log_tail(20000)
        assert "(private)" in log and "unix://" in log
        socket_dir = log.split("unix://", 1)[1].split("/redis.sock", 1)[0]
        assert Path(socket_dir).exists()
        sup.proc.send_signal(signal.SIGINT)
        sup.proc.wait(30)
        assert sup.proc.returncode == 0
        assert not Path(socket_dir).exists(), "the private Redis should be stopped and its directory removed"
    finally:
        sup.stop()


def serve(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "signaling.cli", "serve", "--secret", "s" * 32, *args],
                          cwd=REPO, capture_output=True, text=True, timeout=60, env=env)


def test_workers_without_redis_or_redis_server_say_what_to_do(tmp_path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "LIVECLASS_REDIS_URL"}
    env["PATH"] = str(tmp_path)   # no redis-server to be found
    out = serve("--port", str(free_run(2)), "--workers", "2", env=env)
    assert out.returncode == 2
    assert "--redis" in out.stderr and "redis-server" in out.stderr, out.stderr


def test_workers_refuse_a_taken_worker_port(redis_server) -> None:
    port = free_run(2)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", port + 2))
        taken.listen()
        out = serve("--port", str(port), "--workers", "2", "--redis", redis_server.url)
    assert out.returncode == 2 and f"port {port + 2}" in out.stderr, out.stderr


@pytest.mark.parametrize("value", ["many", "-1", "1000"])
def test_bad_worker_counts_are_refused(value: str) -> None:
    out = serve("--workers", value)
    assert out.returncode == 2 and "--workers" in out.stderr, out.stderr


def test_tls_workers_share_the_self_signed_certificate_and_reload_it_on_sighup(tmp_path, clip) -> None:
    """`--workers 2 --tls-self-signed`: the supervisor makes the certificate once, every worker serves it on the
    public and its own port, workers proxy to each other over https; SIGHUP to the supervisor reaches the workers,
    which serve a renewed certificate and trust it between them."""
    import asyncio
    import datetime
    import ssl

    from signaling.http import self_signed
    from signaling.http.tls import certificate_info
    from testkit.certs import leaf_der

    port = free_run(2)
    library = tmp_path / "library"
    cert = library / "tls" / "self-signed-cert.pem"
    sup = ServerProcess(port=port, library=library, tls_ca=cert, log_path=tmp_path / "supervisor.log",
                        extra=("--workers", "2", "--tls-self-signed", "--no-ladder"))

    def presented(p: int) -> bytes:
        ctx = ssl.create_default_context(cafile=str(cert))
        with socket.create_connection(("127.0.0.1", p), timeout=3) as raw:
            with ctx.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
                return tls.getpeercert(binary_form=True)

    async def plays_through(p: int, room: str) -> None:
        ctx = ssl.create_default_context(cafile=str(cert))
        viewer = WhepViewer(f"https://127.0.0.1:{p}", room, sup.token(room, "terminal"), ssl_context=ctx)
        try:
            await viewer.start()
            await frames_grow(viewer)
        finally:
            await viewer.stop()

    async def lesson() -> None:
        ctx = ssl.create_default_context(cafile=str(cert))
        pub = WhipPublisher(sup.base_url, "tls-room", sup.token("tls-room", "teacher"), clip, ssl_context=ctx)
        try:
            await pub.start()
            private = "unix://" + sup.log_tail(20000).split("unix://", 1)[1].split(" ", 1)[0]
            owner = redis.Redis.from_url(private, decode_responses=True).get(ROOM_KEY.format("tls-room"))
            other = port + 1 + (1 if owner.endswith("-w0") else 0)   # the worker the room is not on
            await plays_through(other, "tls-room")          # proxied worker to worker, over https
            first = leaf_der(cert)
            key = self_signed.load_key(cert.with_name(self_signed.KEY_FILE))
            names = list(certificate_info(cert.read_bytes()).names)
            renewed, _ = self_signed.make(names, datetime.datetime.now(datetime.timezone.utc), key)
            cert.write_bytes(renewed)
            sup.proc.send_signal(signal.SIGHUP)
            def renewed_everywhere() -> bool:
                try:   # a port still on the old certificate fails verification against the renewed one
                    return all(presented(p) == leaf_der(cert) for p in (port, port + 1, port + 2))
                except ssl.SSLError:
                    return False
            wait_for(renewed_everywhere, 10, "the renewed certificate on every port")
            assert leaf_der(cert) != first
            await plays_through(other, "tls-room")          # the workers trust the renewed one between them
        finally:
            await pub.stop()

    try:
        wait_for(lambda: cert.exists() and _https_healthy(port + 1, cert) and _https_healthy(port + 2, cert), 20,
                 "both workers serving https")
        assert presented(port) == presented(port + 1) == presented(port + 2) == leaf_der(cert)
        log = sup.log_tail(20000)
        assert log.count("TLS: self-signed certificate") == 1 and "made now" in log   # made once, by the supervisor
        assert f"Teacher page:  https://127.0.0.1:{port}/teacher.html" in log
        asyncio.run(lesson())
    finally:
        sup.stop()


def _https_healthy(port: int, cafile: Path) -> bool:
    import ssl
    import urllib.request
    try:
        with urllib.request.urlopen(f"https://127.0.0.1:{port}/healthz", timeout=1,
                                    context=ssl.create_default_context(cafile=str(cafile))) as r:
            return r.status == 200
    except OSError:
        return False
