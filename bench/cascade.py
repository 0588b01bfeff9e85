"""Cascade benchmark: what an added edge process brings, and what a hop costs in latency.

    .venv/bin/python bench/cascade.py                 # 2 edges, 12 viewers per edge, 6 s windows (~1 min)
    .venv/bin/python bench/cascade.py --quick         # 1 edge, 4 viewers, 3 s windows: a smoke test (~25 s)
    .venv/bin/python bench/cascade.py --edges 3 -n 20

Processes, all on 127.0.0.1: a redis-server, the origin node and E edge nodes (`liveclass serve --redis`, each
edge in its own region, so a viewer reaching it is served there from the origin's link), plus this process,
which publishes a pre-encoded 640x360 VP8 + Opus clip (no encoding) to the origin and holds non-decoding WHEP
viewers (aiortc peers counting RTP).

Measured:
- latency per hop: one viewer on the origin and one on each edge; each packet's arrival minus its capture time
  (from the sender reports, which the origin relays mapped onto the publisher's clock: same machine, same
  wall clock) → median per viewer; an edge viewer's median minus the origin viewer's is what the hop adds.
- viewers per added edge process: each edge's CPU over a window with 1 viewer and with N viewers → the
  marginal CPU-ms per viewer-second and the link's fixed cost; 1000 / marginal = viewers one edge core
  forwards to (an extrapolation: it ignores the load generator sharing this machine's cores).
- the origin's CPU per link: its CPU with no edge and with E edges relaying (one viewer on it throughout).
stdout: one JSON object, then one summary line. Everything is bounded: windows, joins, the whole run.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Optional

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench.clips import bench_clip  # noqa: E402
from testkit.lesson_peers import classroom, teacher  # noqa: E402
from testkit.peers import WhepViewer  # noqa: E402
from testkit.redis_server import RedisServer  # noqa: E402
from testkit.server import ServerProcess  # noqa: E402

ROOM = "cascade-bench"
JOIN_TIMEOUT = 20.0
RUN_LIMIT_S = 600.0


def parse_args(argv: Optional[list[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--edges", type=int, default=2, help="edge processes (default 2)")
    p.add_argument("-n", "--viewers", type=int, default=12, help="viewers per edge in the CPU window (default 12)")
    p.add_argument("--window", type=float, default=6.0, help="seconds per measuring window (default 6)")
    p.add_argument("--quick", action="store_true", help="1 edge, 4 viewers, 3 s windows")
    args = p.parse_args(argv)
    if args.quick:
        args.edges, args.viewers, args.window = 1, 4, 3.0
    if not 1 <= args.edges <= 8 or not 2 <= args.viewers <= 200 or not 1 <= args.window <= 60:
        p.error("--edges 1-8, --viewers 2-200, --window 1-60")
    return args


def median_ms(values: list[float]) -> Optional[float]:
    return round(statistics.median(values) * 1000, 2) if values else None


async def wait_packets(viewers: list[WhepViewer], timeout: float = JOIN_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while not all(v.first_packet_at for v in viewers):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{sum(not v.first_packet_at for v in viewers)} viewers got no packet")
        await asyncio.sleep(0.1)


def offsets(viewer: WhepViewer, kind: str) -> list[float]:
    return [x for pt, xs in viewer.sync_offsets.items() if viewer.kinds.get(pt) == kind for x in xs]


async def cpu_window(procs: dict[str, ServerProcess], seconds: float) -> dict[str, float]:
    """CPU-ms per second of each process over a window."""
    before = {k: p.cpu_seconds() for k, p in procs.items()}
    t0 = time.monotonic()
    await asyncio.sleep(seconds)
    elapsed = time.monotonic() - t0
    return {k: round((p.cpu_seconds() - before[k]) * 1000 / elapsed, 1) for k, p in procs.items()}


async def start_viewers(viewers: list[WhepViewer]) -> None:
    for v in viewers:  # one at a time: joins stay out of the windows anyway, and 2 cores are shared
        await asyncio.wait_for(v.start(), JOIN_TIMEOUT)
    await wait_packets(viewers)


async def run(args: argparse.Namespace, logdir: Path) -> dict:
    clip = bench_clip("clip-640x360-v1.webm")
    redis = RedisServer(log_dir=logdir)
    nodes: dict[str, ServerProcess] = {}
    peers: list = []
    try:
        one_address = ("--rate-per-address", "100000")   # every viewer comes from this machine
        nodes["origin"] = ServerProcess(extra=("--redis", redis.url, "--node-id", "a-origin", "--region", "central",
                                               "--no-ladder", *one_address), log_path=logdir / "origin.log")
        for i in range(args.edges):
            nodes[f"edge{i + 1}"] = ServerProcess(
                extra=("--redis", redis.url, "--node-id", f"e{i + 1}", "--region", f"region{i + 1}", "--no-ladder",
                       *one_address), log_path=logdir / f"edge{i + 1}.log")
        origin = nodes["origin"]
        edges = {k: n for k, n in nodes.items() if k != "origin"}
        await asyncio.sleep(1.5)  # every node's first heartbeat
        pub = teacher(origin, ROOM, clip)
        peers.append(pub)
        await pub.start()
        await pub.connected()
        local = classroom(origin, ROOM, count_only=True)
        peers.append(local)
        await start_viewers([local])
        await asyncio.sleep(1.0)
        origin_alone = (await cpu_window({"origin": origin}, args.window))["origin"]

        # one viewer per edge: the links open; latency and the link's fixed cost
        firsts = {k: classroom(n, ROOM, count_only=True) for k, n in edges.items()}
        peers += firsts.values()
        t0 = time.monotonic()
        await start_viewers(list(firsts.values()))
        first_packet_ms = {k: round((v.first_packet_at - t0) * 1000) for k, v in firsts.items()}
        await asyncio.sleep(1.0)
        for v in [local, *firsts.values()]:
            for xs in v.sync_offsets.values():
                xs.clear()
        one = await cpu_window(nodes, args.window)
        lat = {"origin_viewer_ms": {k: median_ms(offsets(local, k)) for k in ("video", "audio")}}
        hops = {}
        for k, v in firsts.items():
            hop = {}
            for kind in ("video", "audio"):
                e, o = median_ms(offsets(v, kind)), lat["origin_viewer_ms"][kind]
                hop[kind] = None if e is None or o is None else round(e - o, 2)
            hops[k] = {"edge_viewer_ms": {kind: median_ms(offsets(v, kind)) for kind in ("video", "audio")},
                       "added_ms": hop}
        lat["per_edge"] = hops

        # N viewers per edge: the marginal cost of a viewer on an edge
        more = {k: [classroom(n, ROOM, count_only=True) for _ in range(args.viewers - 1)] for k, n in edges.items()}
        for vs in more.values():
            peers += vs
            await start_viewers(vs)
        await asyncio.sleep(1.0)
        full = await cpu_window(nodes, args.window)
        stats = await fetch_stats(origin)
        per_edge = {}
        for k in edges:
            marginal = (full[k] - one[k]) / (args.viewers - 1)  # CPU-ms per second per added viewer
            per_edge[k] = {"cpu_ms_per_s_1_viewer": one[k], f"cpu_ms_per_s_{args.viewers}_viewers": full[k],
                           "marginal_cpu_ms_per_viewer_s": round(marginal, 2),
                           "link_fixed_cpu_ms_per_s": round(one[k] - marginal, 1),
                           "viewers_per_core": int(1000 / marginal) if marginal > 0 else None,
                           "first_packet_ms": first_packet_ms[k],
                           "viewer_packets": [sum(v.packets.values()) for v in [firsts[k], *more[k]]]}
        links = [link for r in stats.get("rooms", []) for link in r.get("relays", [])]
        origin_cost = {"cpu_ms_per_s_no_edge": origin_alone, "cpu_ms_per_s_with_edges": full["origin"],
                       "cpu_ms_per_s_per_link": round((full["origin"] - origin_alone) / args.edges, 1),
                       "links": len(links), "viewers_on_origin": stats.get("viewers"),
                       "streams_per_link": [len(link["streams"]) for link in links]}
        vpc = [e["viewers_per_core"] for e in per_edge.values() if e["viewers_per_core"]]
        return {"bench": "cascade", "edges": args.edges, "viewers_per_edge": args.viewers, "window_s": args.window,
                "clip": "640x360 VP8 + Opus, pre-encoded", "latency": lat, "edges_cpu": per_edge,
                "origin": origin_cost,
                "summary": {"viewers_per_added_edge_core": int(statistics.median(vpc)) if vpc else None,
                            "added_latency_per_hop_ms": _median([h["added_ms"]["video"] for h in hops.values()]),
                            "origin_cpu_ms_per_s_per_link": origin_cost["cpu_ms_per_s_per_link"]},
                "cpus": os.cpu_count()}
    finally:
        for p in reversed(peers):
            try:
                await asyncio.wait_for(p.stop(), 10)
            except Exception:
                pass
        for n in nodes.values():
            n.stop()
        redis.stop()


def _median(values: list) -> Optional[float]:
    values = [v for v in values if v is not None]
    return round(statistics.median(values), 2) if values else None


async def fetch_stats(node: ServerProcess) -> dict:
    import aiohttp
    async with aiohttp.ClientSession() as s:
        async with s.get(f"{node.base_url}/api/stats", params={"room": ROOM, "token": node.token(ROOM, "admin")}) as r:
            return await r.json()


def summary_line(r: dict) -> str:
    s = r["summary"]
    return (f"cascade: {r['edges']} edge(s) x {r['viewers_per_edge']} viewers: ~{s['viewers_per_added_edge_core']} "
            f"viewers per added edge core, +{s['added_latency_per_hop_ms']} ms per hop (video, median), "
            f"origin {s['origin_cpu_ms_per_s_per_link']} CPU-ms/s per link")


def main(argv: Optional[list[str]] = None) -> int:
    args = parse_args(argv)
    logdir = Path(tempfile.mkdtemp(prefix="liveclass-cascade-bench-"))
    try:
        result = asyncio.run(asyncio.wait_for(run(args, logdir), RUN_LIMIT_S))
    except (TimeoutError, asyncio.TimeoutError, RuntimeError) as exc:
        print(f"bench/cascade.py: {exc} (logs in {logdir})", file=sys.stderr)
        return 1
    print(json.dumps(result, indent=1))
    print(summary_line(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
