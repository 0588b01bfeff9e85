"""What the default cluster forwarding (proxy) costs a client: the same requests answered by the room's node
directly and by another node that proxies them there.

    .venv/bin/python bench/cluster_proxy.py            # 200 pings, 300 session GETs, 20 WHEP POSTs each way, http (~1 min)
    .venv/bin/python bench/cluster_proxy.py --tls      # the nodes serve https (a CA made here) and reach each other over it
    .venv/bin/python bench/cluster_proxy.py --quick

Processes, all on 127.0.0.1: a redis-server and two `liveclass serve --redis` nodes in the default forwarding
mode; this process publishes a pre-encoded clip to node a (so the room is a's) and is the client. Each pair of
measurements alternates direct (to a) and proxied (to b), so machine drift hits both alike:
- room WebSocket: a `ping` → `pong` round trip on a socket opened at a, and on one opened at b (proxied frame by
  frame to a);
- an HTTP request of a session: GET /whep/{room}/{session} (the session's state) at a and at b;
- a WHEP POST: offer → 201 with the answer, at a and at b (the SDP work is a's either way; DELETE after each).
stdout: one JSON object, then one summary line. Bounded: fixed counts, each request with a timeout.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import ssl
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Awaitable, Callable, Optional

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench.clips import bench_clip  # noqa: E402
from testkit.lesson_peers import classroom, teacher  # noqa: E402
from testkit.peers import client_session, offer  # noqa: E402
from testkit.redis_server import RedisServer  # noqa: E402
from testkit.room_client import RoomClient  # noqa: E402
from testkit.server import ServerProcess  # noqa: E402

ROOM = "proxy-bench"
REQUEST_TIMEOUT_S = 10.0


def parse_args(argv: Optional[list[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--pings", type=int, default=200)
    p.add_argument("--gets", type=int, default=300)
    p.add_argument("--posts", type=int, default=20)
    p.add_argument("--tls", action="store_true", help="nodes serve https and proxy to each other over it")
    p.add_argument("--quick", action="store_true", help="50 pings, 50 GETs, 5 POSTs")
    args = p.parse_args(argv)
    if args.quick:
        args.pings, args.gets, args.posts = 50, 50, 5
    if not (1 <= args.pings <= 10_000 and 1 <= args.gets <= 10_000 and 1 <= args.posts <= 500):
        p.error("--pings/--gets 1-10000, --posts 1-500")
    return args


def summary(ms: list[float]) -> dict[str, float]:
    ms = sorted(ms)
    return {"n": len(ms), "median_ms": round(statistics.median(ms), 3),
            "p95_ms": round(ms[min(len(ms) - 1, int(0.95 * len(ms)))], 3)}


async def alternate(n: int, direct: Callable[[], Awaitable[None]], proxied: Callable[[], Awaitable[None]],
                    gap_s: float = 0.0) -> dict:
    times: dict[str, list[float]] = {"direct": [], "proxied": []}
    for _ in range(n):
        for name, call in (("direct", direct), ("proxied", proxied)):
            t = time.perf_counter()
            await asyncio.wait_for(call(), REQUEST_TIMEOUT_S)
            times[name].append((time.perf_counter() - t) * 1000)
            if gap_s:
                await asyncio.sleep(gap_s)
    out = {k: summary(v) for k, v in times.items()}
    out["added_median_ms"] = round(out["proxied"]["median_ms"] - out["direct"]["median_ms"], 3)
    return out


async def measure(args: argparse.Namespace, a: ServerProcess, b: ServerProcess, clip: Path,
                  ctx: Optional[ssl.SSLContext]) -> dict:
    pub = teacher(a, ROOM, clip, ssl_context=ctx)
    viewer = classroom(a, ROOM, count_only=True, ssl_context=ctx)
    http = client_session(ctx)
    rooms: list[RoomClient] = []
    try:
        await pub.start()
        await pub.connected()
        await viewer.start()
        # two identities: a second socket of one identity would take the first one's place
        at_a = await RoomClient(http, a.base_url, ROOM, a.token(ROOM, "observer", identity="bench-a")).connect()
        at_b = await RoomClient(http, b.base_url, ROOM, a.token(ROOM, "observer", identity="bench-b")).connect()
        rooms += [at_a, at_b]

        async def ping(client: RoomClient) -> None:
            reply = await client.request("ping")
            assert reply["type"] == "pong", reply

        auth = {"Authorization": f"Bearer {viewer.token}"}

        async def get(base: str) -> None:
            async with http.get(base + viewer.location, headers=auth) as r:
                await r.read()
                assert r.status == 200, r.status

        sdp = await offer("recvonly")
        post_token = a.token(ROOM, "student")

        async def post(base: str) -> None:
            headers = {"Authorization": f"Bearer {post_token}", "Content-Type": "application/sdp"}
            async with http.post(f"{base}/whep/{ROOM}", data=sdp, headers=headers, allow_redirects=False) as r:
                await r.read()
                assert r.status == 201, r.status
                location = r.headers["Location"]
            async with http.delete(base + location, headers={"Authorization": f"Bearer {post_token}"}) as r:
                await r.read()

        for _ in range(10):  # warm both paths (connection pools, the proxy's upstream connection)
            await get(a.base_url)
            await get(b.base_url)
        return {
            # the room socket allows 20 messages/s per connection: one ping per socket every 0.1 s
            "ws_ping": await alternate(args.pings, lambda: ping(at_a), lambda: ping(at_b), gap_s=0.05),
            "session_get": await alternate(args.gets, lambda: get(a.base_url), lambda: get(b.base_url)),
            "whep_post": await alternate(args.posts, lambda: post(a.base_url), lambda: post(b.base_url)),
        }
    finally:
        for c in rooms:
            await c.close()
        await http.close()
        await viewer.stop()
        await pub.stop()


def main(argv: Optional[list[str]] = None) -> int:
    args = parse_args(argv)
    clip = bench_clip("clip-640x360-4s-v1.webm", seconds=4.0)
    work = Path(tempfile.mkdtemp(prefix="liveclass-proxy-bench-"))
    redis = RedisServer(log_dir=work)
    nodes: list[ServerProcess] = []
    ctx = None
    try:
        tls: tuple[str, ...] = ()
        ca = None
        if args.tls:
            from testkit.certs import LocalCA
            ca = LocalCA(work / "ca")
            ctx = ssl.create_default_context(cafile=str(ca.cert_path))
        for name in ("a", "b"):
            if ca is not None:
                cert, key = ca.issue(["127.0.0.1"], name)
                tls = ("--tls-cert", str(cert), "--tls-key", str(key), "--tls-ca", str(ca.cert_path))
            nodes.append(ServerProcess(extra=("--redis", redis.url, "--node-id", name, "--no-ladder", *tls),
                                       log_path=work / f"{name}.log", tls_ca=ca.cert_path if ca else None))
        result = asyncio.run(measure(args, nodes[0], nodes[1], clip, ctx))
    finally:
        for n in nodes:
            n.stop()
        redis.stop()
    result["scheme"] = "https" if args.tls else "http"
    print(json.dumps(result, indent=2))
    print(f"proxy path ({result['scheme']}) adds at the median: room WebSocket ping "
          f"+{result['ws_ping']['added_median_ms']:.2f} ms ({result['ws_ping']['direct']['median_ms']:.2f} → "
          f"{result['ws_ping']['proxied']['median_ms']:.2f}), session GET +{result['session_get']['added_median_ms']:.2f} ms, "
          f"WHEP POST +{result['whep_post']['added_median_ms']:.2f} ms "
          f"({result['whep_post']['direct']['median_ms']:.1f} → {result['whep_post']['proxied']['median_ms']:.1f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
