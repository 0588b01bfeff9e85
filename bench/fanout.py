"""Fan-out benchmark: one teacher stream -> N viewers through `liveclass serve`, SFU CPU per viewer-second.

    .venv/bin/python bench/fanout.py                    # N = 50, 100, 200 in sequence, fresh server for each
    .venv/bin/python bench/fanout.py -n 100             # one N (repeatable)
    .venv/bin/python bench/fanout.py --quick            # N = 10, 5 s window: a CI smoke test (~10 s)
    .venv/bin/python bench/fanout.py --wait-quiet 300   # on a shared machine: measure while nothing else runs
    .venv/bin/python bench/fanout.py -n 100 --profile /tmp/sfu   # + py-spy of the SFU -> bench/pyspy_top.py
    .venv/bin/python bench/fanout.py --against janus -n 100 -n 200   # ours and Debian's Janus VideoRoom, ratio

Processes: the SFU (`liveclass serve`, the only process measured), one publisher process (testkit's WHIP
publisher sending a pre-encoded 1280x720 30 fps VP8 ~1.5 Mbit/s + Opus clip, no encoding) and one or more
viewer processes holding non-decoding WHEP viewers (bench/loadpeers.py: sockets drained in batches, RTP
counted from its clear-text header, SRTP not decrypted after the first keyframe). Everything is on 127.0.0.1.

Each run: start the server and the publisher, join the viewers in batches (each batch waits for its first
keyframe), settle, then one measuring window. The publisher pauses just before and just after the window
and the viewers count only once every queue has drained, so "packets sent in the window" and "distinct
sequence numbers received" cover exactly the same packets (loss is exact, not skewed by clocks or queues).
Reported: SFU CPU (/proc/PID/stat, and the scheduler's exact runtime) -> CPU-ms per viewer-second; loss per
viewer (mean, worst) and holes inside each viewer's sequence span; delivered bitrate; join timings (WHEP
answer, ICE+DTLS connected, first packet, first keyframe start); how long queues took to drain after the
window (a backlog means the SFU is at its limit); the load generator's own CPU, the host's busy fraction,
other processes' load (a window disturbed by them is repeated), UDP buffer drops, and a machine-speed
calibration (this VM's speed drifts by +-15% over minutes: compare runs only with similar calibration).
stdout: one JSON object per run, then one summary line per run.

--against janus: at each N, the same run against `liveclass serve` and then against Debian's Janus 1.1
VideoRoom (bench/janus.py: started by the bench with its own configuration, `event_loops = 1`, only the
VideoRoom plugin and the HTTP transport), with the same publisher (same clip and aiortc sender; only the
signalling differs: Janus's HTTP API instead of WHIP) and the same non-decoding viewers (Janus offers, the
viewer answers; the socket draining and counting are the same code). The server is pinned to one CPU (0
unless --pin-sfu) and the load processes to the others, for both. Janus never offers loopback candidates, so
in this mode media runs on one of the host's own addresses (the kernel's loopback path all the same) for
both servers. After each N's pair: a "fanout-vs-janus" JSON object with both CPU figures and the ratio
ours/janus, and a summary line.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import re
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Optional

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench.clips import CLIP, ensure_clip  # noqa: E402
from bench.procs import (Worker, WorkerIO, calibrate, errors_reported, host_cpu_times,  # noqa: E402
                         proc_cpu_seconds, proc_cpu_split, proc_exec_seconds, proc_threads, process_tree,
                         serve_commands, sleep_until, summed, udp_errors)

ROOM = "bench"
WORKER_MAX_SECONDS = 1800       # a worker ends itself after this, whatever happens to the orchestrator
JOIN_START_TIMEOUT = 20.0       # one viewer's offer/answer
KEYFRAME_WAIT = 10.0            # a batch waits this long at most for its viewers' first keyframe
FEEDBACK_INTERVAL = 0.25        # browser-like RR + REMB per viewer
REMB_BPS = 5_000_000


# ------------------------------------------------------------------------------------------------------------
# worker processes
# ------------------------------------------------------------------------------------------------------------

class LagMonitor:
    """How late this process's event loop runs a 50 ms timer: a saturated load generator shows up here."""

    def __init__(self) -> None:
        self.samples: Optional[list[float]] = None

    async def run(self, deadline: float) -> None:
        while time.monotonic() < deadline:
            due = time.monotonic() + 0.05
            await asyncio.sleep(0.05)
            if self.samples is not None:
                self.samples.append(max(0.0, time.monotonic() - due))

    def summary(self) -> dict:
        s = self.samples or [0.0]
        return {"mean_ms": round(statistics.fmean(s) * 1000, 2), "max_ms": round(max(s) * 1000, 1)}


async def drain(viewers, quiet: float = 0.25, limit: float = 15.0) -> float:
    """Wait until no viewer has received RTP for `quiet` seconds (bounded); returns the ms it took."""
    start = time.monotonic()
    last_total, last_change = -1, start
    while time.monotonic() - start < limit:
        total = sum(c.packets for v in viewers for c in v.counters())
        now = time.monotonic()
        if total != last_total:
            last_total, last_change = total, now
        elif now - last_change >= quiet:
            break
        await asyncio.sleep(0.05)
    return round((last_change - start) * 1000, 1)


async def viewers_worker(args: argparse.Namespace) -> None:
    import aiohttp
    from sfu.webrtc import aiortc_adapter as adapter
    from bench.loadpeers import CountingViewer, JanusCountingViewer, SocketPoller

    adapter.configure_host_addresses([args.media_addr])
    io = WorkerIO()
    await io.open()
    deadline = time.monotonic() + args.max_seconds
    http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=JOIN_START_TIMEOUT),
                                 connector=aiohttp.TCPConnector(limit=0))
    viewers: list[CountingViewer] = []
    janus = None
    if args.sfu == "janus":  # one Janus session (one long-poll) for all this process's viewers
        from bench.janus import JanusClient
        janus = JanusClient(args.base_url, http, timeout=JOIN_START_TIMEOUT)
        await janus.open()
    lag = LagMonitor()
    poller = SocketPoller()
    tasks = [asyncio.create_task(lag.run(deadline)), asyncio.create_task(poller.run(deadline))]
    if args.viewer_rtcp == "browser":
        async def feedback() -> None:
            while time.monotonic() < deadline:
                await asyncio.sleep(FEEDBACK_INTERVAL)
                for v in viewers:
                    v.send_feedback(REMB_BPS)
        tasks.append(asyncio.create_task(feedback()))

    async def join(v: CountingViewer) -> None:
        try:
            await asyncio.wait_for(v.start(), JOIN_START_TIMEOUT)
        except Exception as exc:  # recorded per viewer; the benchmark reports failed joins
            v.error = f"{type(exc).__name__}: {exc}"

    def new_viewer(token: str) -> CountingViewer:
        if janus is not None:
            from bench.janus import PUBLISHER_ID
            return JanusCountingViewer(janus, int(args.room), PUBLISHER_ID, args.viewer_mode, poller)
        return CountingViewer(args.base_url, args.room, token, http, args.viewer_mode, poller)

    async def join_batch(cmd: dict) -> None:
        batch = [new_viewer(t) for t in cmd["tokens"]]
        viewers.extend(batch)
        await asyncio.gather(*(join(v) for v in batch))
        until = time.monotonic() + KEYFRAME_WAIT
        while time.monotonic() < until and any(v.error is None and v.first_keyframe_at is None for v in batch):
            await asyncio.sleep(0.05)
        io.send("joined", viewers=[v.join_info() for v in batch])

    async def open_window(cmd: dict) -> None:  # once the publisher is paused: drain, then start counting
        drained = await drain(viewers)
        for v in viewers:
            for c in v.counters():
                c.open_window()
        lag.samples = []
        io.send("opened", drain_ms=drained)

    async def close_window(cmd: dict) -> None:  # publisher paused again: count what was still queued, then report
        drained = await drain(viewers)
        results = [{c.kind: c.close_window() for c in v.counters()} for v in viewers]
        lag_summary = lag.summary()
        lag.samples = None
        io.send("closed", viewers=results, loop_lag=lag_summary, drain_ms=drained,
                other_packets=sum(v.other_packets for v in viewers),
                keyframe_probe_errors=sum(v.keyframe_probe_errors for v in viewers))

    io.send("hello", pid=os.getpid())
    try:
        await serve_commands(io, deadline, {"join": join_batch, "open": open_window, "close": close_window})
    finally:
        for t in tasks:
            t.cancel()
        try:
            await asyncio.wait_for(asyncio.gather(*(v.stop() for v in viewers), return_exceptions=True), 20)
        except asyncio.TimeoutError:
            pass
        if janus is not None:
            await janus.close()
        await http.close()
        poller.close()
    io.send("stopped")


async def publisher_worker(args: argparse.Namespace) -> None:
    from sfu.webrtc import aiortc_adapter as adapter
    from bench.loadpeers import CountingPublisher

    adapter.configure_host_addresses([args.media_addr])
    io = WorkerIO()
    await io.open()
    deadline = time.monotonic() + args.max_seconds
    signalling = None
    if args.sfu == "janus":
        from bench.janus import JanusPublisher
        signalling = JanusPublisher(args.base_url, int(args.room), Path(args.clip))
    pub = CountingPublisher(args.base_url, args.room, args.token, Path(args.clip), publisher=signalling)

    async def pause(cmd: dict) -> None:
        io.send("paused", sent=await pub.pause())

    async def resume(cmd: dict) -> None:
        pub.resume()
        io.send("resumed")

    try:
        with errors_reported(io):
            await pub.start(timeout=20)
            io.send("ready", pid=os.getpid())
        await serve_commands(io, deadline, {"pause": pause, "resume": resume})
    finally:
        try:
            await asyncio.wait_for(pub.stop(), 10)
        except Exception:
            pass
    io.send("stopped")


# ------------------------------------------------------------------------------------------------------------
# orchestrator
# ------------------------------------------------------------------------------------------------------------

def pct(values: list[float], q: float) -> Optional[float]:
    v = sorted(x for x in values if x is not None)
    if not v:
        return None
    k = (len(v) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(v) - 1)
    return round(v[lo] + (v[hi] - v[lo]) * (k - lo), 1)


def dist(values: list) -> dict:
    v = [x for x in values if x is not None]
    return {"p50": pct(v, 0.5), "p95": pct(v, 0.95), "max": max(v) if v else None, "n": len(v)}


async def fetch_stats(server) -> Optional[dict]:
    import aiohttp
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=20)) as http:
            async with http.get(f"{server.base_url}/api/stats",
                                params={"room": ROOM, "token": server.token(ROOM, "admin")}) as r:
                data = await r.json()
        return data["rooms"][0] if data.get("rooms") else None
    except Exception:
        return None


async def held_histogram(urls: list[str]) -> Optional[list[int]]:
    """liveclass_forward_latency_seconds from each server's /metrics, as per-bucket counts summed."""
    import aiohttp
    total: Optional[list[int]] = None
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=20)) as http:
            for url in urls:
                async with http.get(url) as r:
                    text = await r.text()
                cumulative = [int(m.group(1)) for m in
                              re.finditer(r'^liveclass_forward_latency_seconds_bucket\{le="[^"]+"\} (\d+)$', text, re.M)]
                counts = [b - a for a, b in zip([0] + cumulative, cumulative)]
                total = counts if total is None else [x + y for x, y in zip(total, counts)]
    except Exception:
        return None
    return total


def summarize_server_stats(room: Optional[dict]) -> dict:
    if room is None:
        return {}
    consumers = [c for v in room["viewers"] for c in v["consumers"]]
    video = [c for c in consumers if c["kind"] == "video"]
    streams = room["publisher"]["streams"] if room.get("publisher") else []
    return {
        "viewer_sessions": len(room["viewers"]),
        "ingest": [{k: s[k] for k in ("kind", "packets", "lost", "keyframes", "plis_sent")} for s in streams],
        "video_consumers_waiting_keyframe": sum(1 for c in video if c["waiting_keyframe"]),
        "consumer_video_packets_min": min((c["packets"] for c in video), default=0),
        "rtx_packets_total": sum(c["rtx_packets"] for c in consumers),
        "nacks_total": sum(c["nacks"] for c in consumers),
        "plis_from_viewers_total": sum(c["plis"] for c in consumers),
        "estimates_seen": sorted({c["estimate_bps"] for c in video if c["estimate_bps"]})[:3],
    }


class Run:
    """One benchmark run at one N: owns the server and its workers, and always cleans them up."""

    def __init__(self, n: int, args: argparse.Namespace, clip: Path, logdir: Path, sfu: str = "liveclass",
                 media_addr: str = "127.0.0.1") -> None:
        self.n, self.args, self.clip, self.logdir = n, args, clip, logdir
        self.sfu, self.media_addr = sfu, media_addr  # "liveclass" or "janus"; the address ICE runs on
        self.room = ROOM
        self.server = None
        self.workers: list[Worker] = []
        self.calibration: dict = {}

    def _argv(self, role: str, *extra: str) -> list[str]:
        return [sys.executable, str(Path(__file__).resolve()), "--worker", role, "--base-url", self.server.base_url,
                "--room", self.room, "--max-seconds", str(WORKER_MAX_SECONDS), "--sfu", self.sfu,
                "--media-addr", self.media_addr, *extra]

    def _start_server(self) -> None:
        a, n = self.args, self.n
        if self.sfu == "janus":
            from bench.janus import JanusServer
            self.server = JanusServer(self.media_addr, log_path=self.logdir / f"janus-n{n}.log",
                                      cpus={a.pin_sfu} if a.pin_sfu is not None else None)
            self.room = str(self.server.room)
            return
        from testkit.server import ServerProcess
        # --no-ladder unless asked: the forwarding path alone, as with the teacher page's simulcast (no ladder
        # exists then); --ladder measures a one-layer (OBS-like) teacher, whose ladder decodes while watched
        # every viewer comes from this machine's one address: lift the per-address join rate
        workers: tuple[str, ...] = ()
        port = None
        if a.workers:   # a supervisor and its workers: the public port and one of its own each
            from testkit.ports import free_run
            port, workers = free_run(a.workers), ("--workers", str(a.workers))
        self.server = ServerProcess(log_path=self.logdir / f"server-n{n}.log", media_hosts=(self.media_addr,),
                                    port=port,
                                    extra=(*(() if a.ladder else ("--no-ladder",)), "--rate-per-address", "100000",
                                           *workers, *a.sfu_arg))
        if a.workers:
            self._wait_workers(port, a.workers)

    @staticmethod
    def _wait_workers(port: int, count: int, timeout: float = 30) -> None:
        import urllib.request
        deadline = time.monotonic() + timeout
        for p in range(port + 1, port + 1 + count):
            while True:
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{p}/healthz", timeout=1):
                        break
                except OSError:
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"worker on port {p} did not start")
                    time.sleep(0.2)

    def server_pids(self) -> list[int]:
        """The server's processes: one, or a supervisor, its workers and their private Redis."""
        return process_tree(self.server.proc.pid) if self.server is not None else []

    async def execute(self) -> dict:
        a, n = self.args, self.n
        if a.wait_quiet:
            await self._wait_quiet(a.wait_quiet)
        if a.pin_sfu is not None:  # this orchestrating process (and what it starts) stays off the server's CPU
            self._pin(os.getpid(), self._load_cpus())
        self.calibration = calibrate()
        await asyncio.get_running_loop().run_in_executor(None, self._start_server)
        server_pid = self.server.proc.pid
        if a.pin_sfu is not None:
            for pid in self.server_pids():
                self._pin(pid, {a.pin_sfu})
        teacher = self.server.token(self.room, "teacher")
        pub = await Worker.spawn("publisher", self._argv("publisher", "--token", teacher, "--clip", str(self.clip)),
                                 self.logdir / f"publisher-n{n}.log", REPO)
        self.workers.append(pub)
        if a.pin_sfu is not None:
            self._pin(pub.pid, self._load_cpus())
        await pub.expect("ready", 40)
        viewer_workers = []
        for i in range(a.viewer_procs):
            w = await Worker.spawn(f"viewers{i}", self._argv("viewers", "--viewer-mode", a.viewer_mode,
                                                             "--viewer-rtcp", a.viewer_rtcp),
                                   self.logdir / f"viewers{i}-n{n}.log", REPO)
            self.workers.append(w)
            viewer_workers.append(w)
            if a.pin_sfu is not None:
                self._pin(w.pid, self._load_cpus())
        for w in viewer_workers:
            await w.expect("hello", 30)

        # join in batches, spread round-robin over the viewer processes. Each batch waits for its keyframe,
        # so the next would start right after a keyframe and always wait a whole GOP (the pre-encoded
        # publisher cannot answer PLI): a random pause of up to one GOP first puts batches at random phases.
        joins: list[dict] = []
        rng = random.Random(n)
        staggered = 0.0
        t_join = time.monotonic()
        batches = [min(a.batch, n - i) for i in range(0, n, a.batch)]
        for b, size in enumerate(batches):
            if a.stagger:
                pause = rng.uniform(0, CLIP["gop"] / CLIP["fps"])
                staggered += pause
                await asyncio.sleep(pause)
            w = viewer_workers[b % len(viewer_workers)]
            tokens = [self.server.token(self.room, "terminal") for _ in range(size)]
            msg = await w.call({"cmd": "join", "tokens": tokens}, "joined",
                               JOIN_START_TIMEOUT + KEYFRAME_WAIT + 30)
            joins.extend(msg["viewers"])
        join_total = time.monotonic() - t_join - staggered
        await asyncio.sleep(a.settle)

        # the measuring window, repeated (bounded) while other processes on the host disturb it
        attempts = []
        for attempt in range(a.max_windows):
            if a.wait_quiet:
                await self._wait_quiet(a.wait_quiet)
            m = await self._window(viewer_workers, server_pid)
            got = [sum(k["distinct"] for kind, k in v.items() if kind in ("video", "audio"))
                   for c in m["closed"] for v in c["viewers"]]
            attempts.append({"other_processes_cpu_cores": round(m["other_cores"], 3),
                             "sfu_cpu_ms_per_viewer_s": round(m["server_cpu"] * 1000 / (n * m["window"]), 3),
                             "sfu_cpu_ms_per_viewer_s_exact": round(m["server_exact"] * 1000 / (n * m["window"]), 3)
                             if m["server_exact"] is not None else None,
                             "published": m["sent"], "received_min": min(got, default=0),
                             "received_max": max(got, default=0)})
            if m["other_cores"] <= a.noise_limit:
                break
        room_stats = await fetch_stats(self.server) if self.sfu == "liveclass" else None
        result = self._result(joins, join_total, m, viewer_workers, room_stats)
        result["window_attempts"] = attempts
        result["calibration"] = self.calibration
        return result

    def _load_cpus(self) -> set[int]:
        cpus = set(range(os.cpu_count() or 1))
        return (cpus - {self.args.pin_sfu}) or cpus

    @staticmethod
    def _pin(pid: int, cpus: set[int]) -> None:
        """Pin a process and all its threads (threads created later inherit it)."""
        for task in Path(f"/proc/{pid}/task").iterdir():
            try:
                os.sched_setaffinity(int(task.name), cpus)
            except OSError:
                pass

    def _our_pids(self) -> list[int]:
        return (self.server_pids() if self.sfu == "liveclass" else
                [self.server.proc.pid] if self.server else []) + [w.pid for w in self.workers]

    async def _other_cores(self, seconds: float) -> float:
        """CPU cores used by processes other than this benchmark's, over `seconds`."""
        pids = self._our_pids()
        ours0 = sum(proc_cpu_seconds(p) or 0.0 for p in pids)
        h0 = host_cpu_times()
        t0 = time.monotonic()
        await asyncio.sleep(seconds)
        h1 = host_cpu_times()
        ours1 = sum(proc_cpu_seconds(p) or 0.0 for p in pids)
        busy = (h1[0] - h0[0]) / max(1, h1[1] - h0[1]) * (os.cpu_count() or 1)
        return max(0.0, busy - (ours1 - ours0) / (time.monotonic() - t0))

    async def _wait_quiet(self, limit: float) -> None:
        """Wait (at most `limit` seconds) until other processes use at most --noise-limit cores for 2 s."""
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline:
            if await self._other_cores(2.0) <= self.args.noise_limit:
                return

    async def _window(self, viewer_workers: list[Worker], server_pid: int) -> dict:
        """One measurement. The publisher pauses before and after it, and viewers count only once every queue
        has drained: 'sent in the window' and 'received' then cover exactly the same packets."""
        a = self.args
        pub = self.workers[0]
        before = (await pub.call({"cmd": "pause"}, "paused", 20))["sent"]
        opened = await asyncio.gather(*(w.call({"cmd": "open"}, "opened", 60) for w in viewer_workers))
        held0 = await self._held()   # (the publisher is paused: the snapshots bound exactly the window's packets)
        cpu0 = {w.name: proc_cpu_seconds(w.pid) for w in self.workers}
        pids = self.server_pids() if self.sfu == "liveclass" else [server_pid]
        server_cpu0 = summed([proc_cpu_seconds(p) for p in pids])
        split0 = summed([proc_cpu_split(p) for p in pids])
        exact0 = summed([proc_exec_seconds(p) for p in pids])
        each0 = {p: proc_cpu_seconds(p) for p in pids}
        host0, udp0 = host_cpu_times(), udp_errors()
        t0 = time.monotonic()
        await pub.call({"cmd": "resume"}, "resumed", 20)
        profiler = await self._start_profiler(server_pid) if a.profile else None
        await sleep_until(t0 + a.window)
        server_cpu1 = summed([proc_cpu_seconds(p) for p in pids])
        split1 = summed([proc_cpu_split(p) for p in pids])
        exact1 = summed([proc_exec_seconds(p) for p in pids])
        each1 = {p: proc_cpu_seconds(p) for p in pids}
        threads = proc_threads(server_pid)
        host1, udp1 = host_cpu_times(), udp_errors()
        cpu1 = {w.name: proc_cpu_seconds(w.pid) for w in self.workers}
        window = time.monotonic() - t0
        after = (await pub.call({"cmd": "pause"}, "paused", 20))["sent"]
        closed = await asyncio.gather(*(w.call({"cmd": "close"}, "closed", 60 + self.n * 0.05)
                                        for w in viewer_workers))
        held1 = await self._held()
        await pub.call({"cmd": "resume"}, "resumed", 20)
        if profiler is not None:
            await self._finish_profiler(profiler)
        server_cpu = server_cpu1 - server_cpu0  # type: ignore[operator]
        each = {p: round((each1[p] - each0[p]) / window, 3) for p in pids
                if each0.get(p) is not None and each1.get(p) is not None}
        cpu = {k: (cpu1[k] - cpu0[k]) / window if cpu0.get(k) is not None and cpu1.get(k) is not None else None
               for k in cpu0}
        busy = (host1[0] - host0[0]) / max(1, host1[1] - host0[1])
        steal = (host1[2] - host0[2]) / max(1, host1[1] - host0[1])
        other = max(0.0, busy * (os.cpu_count() or 1) - server_cpu / window - sum(x for x in cpu.values() if x))
        return {"window": window, "server_cpu": server_cpu, "server_cpu_each": each, "cpu": cpu, "busy": busy,
                "steal": steal,
                "server_user_sys": (split1[0] - split0[0], split1[1] - split0[1]) if split0 and split1 else None,
                "server_threads": threads,
                "held": [b - a for a, b in zip(held0, held1)] if held0 and held1 else None,
                "server_exact": exact1 - exact0 if exact0 is not None and exact1 is not None else None,
                "other_cores": other,
                "udp": {k: udp1[k] - udp0[k] for k in udp0},
                "sent": {k: n - before.get(k, 0) for k, n in after.items()},
                "opened": opened, "closed": closed}

    async def _held(self) -> Optional[list[int]]:
        """The server's forwarding-latency histogram (per-bucket counts, summed over its workers), or None."""
        if self.sfu != "liveclass":
            return None
        a = self.args
        port = self.server.port
        urls = [f"http://127.0.0.1:{p}/metrics" for p in range(port + 1, port + 1 + a.workers)] if a.workers \
            else [f"{self.server.base_url}/metrics"]
        return await held_histogram(urls)

    async def _start_profiler(self, pid: int):
        spy = shutil.which("py-spy", path=str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", ""))
        if spy is None:
            raise RuntimeError("--profile needs py-spy (pip install py-spy)")
        fmt = self.args.profile_format
        out = Path(f"{self.args.profile}-n{self.n}.{'txt' if fmt == 'raw' else 'json'}")
        argv = [spy, "record", "-p", str(pid), "-d", str(int(self.args.window)), "-r", "200", "--format", fmt,
                "-o", str(out)]
        proc = await asyncio.create_subprocess_exec(*argv, stdout=asyncio.subprocess.DEVNULL,
                                                    stderr=open(self.logdir / f"py-spy-n{self.n}.log", "wb"),
                                                    start_new_session=True)
        return proc, out

    async def _finish_profiler(self, profiler) -> None:
        proc, out = profiler
        try:
            await asyncio.wait_for(proc.wait(), 60)
        except asyncio.TimeoutError:
            proc.kill()
        print(f"fanout: py-spy profile of the SFU at N={self.n}: {out}", file=sys.stderr)

    def _result(self, joins: list[dict], join_total: float, m: dict, viewer_workers: list[Worker],
                room_stats: Optional[dict]) -> dict:
        n, window, server_cpu, sent = self.n, m["window"], m["server_cpu"], m["sent"]
        sent_media = sent.get("video", 0) + sent.get("audio", 0)
        per_viewer = [v for c in m["closed"] for v in c["viewers"]]
        loss, gap_loss, video_loss, mbps = [], [], [], []
        for v in per_viewer:
            got = sum(v.get(k, {}).get("distinct", 0) for k in ("video", "audio"))
            expected = sum(v.get(k, {}).get("expected", 0) for k in ("video", "audio"))
            gaps = sum(v.get(k, {}).get("gaps", 0) for k in ("video", "audio"))
            loss.append(100.0 * (sent_media - got) / sent_media if sent_media else 100.0)
            gap_loss.append(100.0 * gaps / expected if expected else 100.0)
            vs = sent.get("video", 0)
            video_loss.append(100.0 * (vs - v.get("video", {}).get("distinct", 0)) / vs if vs else 100.0)
            mbps.append(sum(k["octets"] for k in v.values()) * 8 / window / 1e6)
        delivered_packets = sum(k["packets"] for v in per_viewer for k in v.values())
        joined_ok = [j for j in joins if j["error"] is None]
        cpu = m["cpu"]
        return {
            "bench": "fanout",
            "sfu": self.sfu,
            "n": n,
            "ladder": bool(self.args.ladder) if self.sfu == "liveclass" else None,
            "media_addr": self.media_addr,
            "window_s": round(window, 2),
            "sfu_cpu_ms_per_viewer_s": round(server_cpu * 1000 / (n * window), 3),
            "sfu_cpu_ms_per_viewer_s_exact": round(m["server_exact"] * 1000 / (n * window), 3)
            if m["server_exact"] is not None else None,
            "sfu_cpu_cores": round(server_cpu / window, 3),
            "held_ms": held_quantiles(m["held"]),
            "sfu_workers": self.args.workers or None,
            "sfu_cpu_cores_per_process": m["server_cpu_each"],   # pid -> cores (supervisor, workers, Redis)
            "sfu_cpu_user_system_cores": [round(x / window, 3) for x in m["server_user_sys"]]
            if m["server_user_sys"] else None,
            "sfu_threads": m["server_threads"],
            "sfu_cpu_us_per_delivered_packet": round(server_cpu * 1e6 / delivered_packets, 2)
            if delivered_packets else None,
            "published_pps": {k: round(c / window, 1) for k, c in sorted(sent.items())},
            "published_packets": sent,
            "viewer_distinct_mean": {k: round(statistics.fmean(v.get(k, {}).get("distinct", 0) for v in per_viewer), 1)
                                     for k in ("video", "audio")} if per_viewer else {},
            "loss_pct": {   # publisher's media packets in the window vs distinct sequence numbers each viewer got
                "mean": round(statistics.fmean(loss), 3) if loss else None,
                "worst": round(max(loss), 3) if loss else None,
                "video_worst": round(max(video_loss), 3) if video_loss else None,
                "viewers_with_loss": sum(1 for x in loss if x > 0),
            },
            "gap_loss_pct": {  # holes inside each viewer's received sequence span
                "mean": round(statistics.fmean(gap_loss), 4) if gap_loss else None,
                "worst": round(max(gap_loss), 4) if gap_loss else None,
                "viewers_with_gaps": sum(1 for x in gap_loss if x > 0),
            },
            "bitrate_mbps": {"mean": round(statistics.fmean(mbps), 3) if mbps else None,
                             "min": round(min(mbps), 3) if mbps else None,
                             "what": "SRTP datagrams (RTP header + payload + auth tag), video + audio"},
            "drain_ms_after_window": [c["drain_ms"] for c in m["closed"]],
            # RTP with a payload type the viewer did not negotiate (not counted above): should be 0
            "viewer_unknown_pt_packets": sum(c.get("other_packets", 0) for c in m["closed"]),
            "join": {
                "batch": self.args.batch, "total_s": round(join_total, 1), "failed": len(joins) - len(joined_ok),
                "errors": sorted({j["error"] for j in joins if j["error"]})[:3],
                "answer_ms": dist([j["post_ms"] for j in joins]),
                "connected_ms": dist([j["connected_ms"] for j in joins]),
                "first_packet_ms": dist([j["first_packet_ms"] for j in joins]),
                "first_keyframe_ms": dist([j["first_keyframe_ms"] for j in joins]),
                "no_keyframe": sum(1 for j in joined_ok if j["first_keyframe_ms"] is None),
                # the SFU finished DTLS and sent the keyframe before this viewer could decrypt it: a real client
                # loses that keyframe and waits for the next one
                "viewers_sent_media_before_their_keys": sum(1 for j in joins if j.get("video_before_keys")),
                "viewers_srtp_probe_failed": sum(1 for j in joins if j.get("keyframe_probe_errors")),
                "viewers_first_packet_not_keyframe": sum(
                    1 for j in joined_ok if j["first_packet_ms"] is not None and j["first_keyframe_ms"] is not None
                    and j["first_keyframe_ms"] - j["first_packet_ms"] > 20),
                "note": f"times from {'WHEP POST' if self.sfu == 'liveclass' else 'the subscriber join request'} "
                        f"(answer_ms: until {'the 201' if self.sfu == 'liveclass' else 'Janus took the answer'}); "
                        f"the pre-encoded publisher cannot answer PLI, so the first keyframe waits for its next "
                        f"keyframe (GOP {CLIP['gop'] / CLIP['fps']:.1f} s; batches start at random GOP phases "
                        f"unless --no-stagger); total_s excludes those pauses",
            },
            "load_generator": {
                "viewer_procs": len(viewer_workers),
                "sfu_pinned_to_cpu": self.args.pin_sfu,
                "viewer_mode": self.args.viewer_mode,
                "viewer_rtcp": self.args.viewer_rtcp,
                "viewer_procs_cpu_cores": [None if cpu.get(w.name) is None else round(cpu[w.name], 3)
                                           for w in viewer_workers],
                "publisher_cpu_cores": None if cpu.get("publisher") is None else round(cpu["publisher"], 3),
                "host_cores": os.cpu_count(),
                "host_busy_frac": round(m["busy"], 3),
                "host_steal_frac": round(m["steal"], 4),
                "other_processes_cpu_cores": round(m["other_cores"], 3),
                "viewer_loop_lag_ms": [c["loop_lag"] for c in m["closed"]],
                "udp_rcvbuf_errors": m["udp"]["RcvbufErrors"],
                "udp_sndbuf_errors": m["udp"]["SndbufErrors"],
                "note": "load generator and SFU share the host's cores; only the SFU process's CPU is the "
                        "result. host_busy_frac near 1.0: everything was CPU-starved (expect loss); "
                        "other_processes_cpu_cores: load on the host that is not this benchmark's.",
            },
            "server": summarize_server_stats(room_stats),
            "profiled": bool(self.args.profile),
        }

    async def cleanup(self) -> None:
        await asyncio.gather(*(w.stop() for w in reversed(self.workers)), return_exceptions=True)
        for w in self.workers:
            w.kill()
        if self.server is not None:
            await asyncio.get_running_loop().run_in_executor(None, self.server.stop)


def held_quantiles(counts: Optional[list[int]]) -> Optional[dict]:
    """p50/p99 of how long the server held a packet (arrival to every viewer's copy sent), in ms."""
    from sfu.webrtc.forward_latency import quantile
    if not counts or not sum(counts):
        return None
    return {"packets": sum(counts), "p50": round(quantile(counts, 0.5) * 1000, 2),
            "p99": round(quantile(counts, 0.99) * 1000, 2)}


def git_state() -> dict:
    """Which code was measured: the commit and the files changed on top of it (sfu/ is being worked on)."""
    import subprocess
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True,
                                timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "sfu", "signaling", "testkit"], cwd=REPO,
                               capture_output=True, text=True, timeout=10).stdout.split("\n")
        return {"commit": commit, "changed": sorted(line[3:] for line in dirty if line.strip())}
    except (OSError, subprocess.SubprocessError):
        return {}


def summary_line(r: dict, label: bool = False) -> str:
    fk = r["join"]["first_keyframe_ms"]["p50"]
    lg = r["load_generator"]
    name = f"fanout [{r['sfu']}]" if label else "fanout"
    return (f"{name}: N={r['n']} cpu={r['sfu_cpu_ms_per_viewer_s']:.2f} ms/viewer-s "
            f"loss={r['loss_pct']['mean']:.2f}% (worst viewer {r['loss_pct']['worst']:.2f}%) "
            f"bitrate={r['bitrate_mbps']['mean']:.2f} Mbit/s "
            f"first-frame p50={fk / 1000 if fk is not None else float('nan'):.2f} s "
            f"join={r['join']['total_s']:.0f} s failed={r['join']['failed']}"
            + (f" held p50/p99={r['held_ms']['p50']:.1f}/{r['held_ms']['p99']:.1f} ms" if r.get("held_ms") else "")
            + (f" workers={r['sfu_workers']}" if r.get("sfu_workers") else "") + " | "
            f"sfu {r['sfu_cpu_cores']:.2f} cores, viewers {sum(x or 0 for x in lg['viewer_procs_cpu_cores']):.2f}, "
            f"host busy {lg['host_busy_frac'] * 100:.0f}% of {lg['host_cores']}, "
            f"other load {lg['other_processes_cpu_cores']:.2f} cores")


def comparison(ours: dict, janus: dict) -> dict:
    """Both servers' figures at one N side by side, and ours/janus for the CPU per viewer-second."""
    def ratio(key: str) -> Optional[float]:
        a, b = ours.get(key), janus.get(key)
        return round(a / b, 3) if a is not None and b else None

    def pick(r: dict) -> dict:
        j = r["join"]
        return {
            "sfu_cpu_ms_per_viewer_s": r["sfu_cpu_ms_per_viewer_s"],
            "sfu_cpu_ms_per_viewer_s_exact": r["sfu_cpu_ms_per_viewer_s_exact"],
            "sfu_cpu_cores": r["sfu_cpu_cores"],
            "sfu_threads": r["sfu_threads"],
            "sfu_cpu_us_per_delivered_packet": r["sfu_cpu_us_per_delivered_packet"],
            "loss_pct": r["loss_pct"], "gap_loss_pct": r["gap_loss_pct"],
            "bitrate_mbps": {k: r["bitrate_mbps"][k] for k in ("mean", "min")},
            "viewer_distinct_mean": r["viewer_distinct_mean"], "published_packets": r["published_packets"],
            "join": {k: j[k] for k in ("total_s", "failed", "errors", "answer_ms", "connected_ms", "first_packet_ms",
                                       "first_keyframe_ms", "no_keyframe")},
            "window_s": r["window_s"], "calibration": r.get("calibration"),
            "other_processes_cpu_cores": r["load_generator"]["other_processes_cpu_cores"],
            "host_busy_frac": r["load_generator"]["host_busy_frac"],
            "udp_rcvbuf_errors": r["load_generator"]["udp_rcvbuf_errors"],
        }

    def problems(r: dict) -> list[str]:
        out = []
        if r["join"]["failed"] or r["join"]["no_keyframe"]:
            out.append(f"{r['sfu']}: {r['join']['failed']} joins failed, {r['join']['no_keyframe']} without keyframe")
        if r["loss_pct"]["worst"] is None or r["loss_pct"]["worst"] > 1.0:
            out.append(f"{r['sfu']}: worst viewer lost {r['loss_pct']['worst']}% "
                       f"(video {r['loss_pct']['video_worst']}%)")
        return out

    issues = problems(ours) + problems(janus)
    # a server using (nearly) all of its one CPU, or whose queues took over a second to drain after the window,
    # was at its limit: it batches more and its CPU per viewer-second stops growing, so the ratio understates
    saturated = [r["sfu"] for r in (ours, janus)
                 if r["sfu_cpu_cores"] >= 0.95 or max(r["drain_ms_after_window"], default=0) > 1000]
    return {"bench": "fanout-vs-janus", "n": ours["n"],
            # a ratio compares two servers doing the same work: every viewer joined and got (nearly) everything
            "valid": not issues, "issues": issues, "saturated": saturated,
            "ratio_cpu_ours_over_janus": ratio("sfu_cpu_ms_per_viewer_s"),
            "ratio_cpu_exact_ours_over_janus": ratio("sfu_cpu_ms_per_viewer_s_exact"),
            "liveclass": pick(ours), "janus": {**pick(janus), "version": janus.get("sfu_version")},
            "sfu_pinned_to_cpu": ours["load_generator"]["sfu_pinned_to_cpu"], "media_addr": ours["media_addr"]}


def comparison_line(c: dict) -> str:
    o, j = c["liveclass"], c["janus"]
    ratio = c["ratio_cpu_ours_over_janus"]
    flag = "" if c["valid"] else f"INVALID ({'; '.join(c['issues'])}) "
    if c["saturated"]:
        flag += f"(at its CPU limit: {', '.join(c['saturated'])}) "
    return (f"fanout vs janus: N={c['n']} {flag}cpu ours {o['sfu_cpu_ms_per_viewer_s']:.2f} / janus "
            f"{j['sfu_cpu_ms_per_viewer_s']:.2f} ms/viewer-s = {ratio if ratio is not None else float('nan'):.2f}x "
            f"(exact {c['ratio_cpu_exact_ours_over_janus'] or float('nan'):.2f}x) | loss mean/worst ours "
            f"{o['loss_pct']['mean']:.2f}/{o['loss_pct']['worst']:.2f}% janus {j['loss_pct']['mean']:.2f}/"
            f"{j['loss_pct']['worst']:.2f}% | bitrate ours {o['bitrate_mbps']['mean']:.2f} janus "
            f"{j['bitrate_mbps']['mean']:.2f} Mbit/s | failed joins ours {o['join']['failed']} janus "
            f"{j['join']['failed']}")


_LIVE_RUNS: list[Run] = []


def _kill_leftovers() -> None:
    """Last resort at interpreter exit: no worker or server outlives the benchmark."""
    for run in _LIVE_RUNS:
        for w in run.workers:
            w.kill()
        if run.server is not None and run.server.proc.poll() is None:
            run.server.proc.kill()


async def orchestrate(args: argparse.Namespace) -> int:
    import atexit
    import signal
    atexit.register(_kill_leftovers)
    me = asyncio.current_task()
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, me.cancel)
    clip, clip_info = await asyncio.get_running_loop().run_in_executor(None, ensure_clip)
    code_state = git_state()
    logdir = Path(args.logs) if args.logs else Path(tempfile.mkdtemp(prefix="liveclass-fanout-"))
    logdir.mkdir(parents=True, exist_ok=True)
    results = []
    comparisons = []
    failed = False
    sfus = ["liveclass"]
    media_addr = "127.0.0.1"
    janus_version = None
    if args.against == "janus":
        from bench.janus import janus_binary, janus_version as version_of, media_address
        if janus_binary() is None:
            print(json.dumps({"bench": "fanout", "error": "--against janus: no janus binary (apt-get install "
                              "janus)"}), flush=True)
            return 1
        janus_version = version_of()
        media_addr = media_address()
        sfus = ["janus", "liveclass"] if args.janus_first else ["liveclass", "janus"]
        if args.janus_only:
            sfus = ["janus"]
    for n in args.n:
        by_sfu: dict[str, dict] = {}
        for sfu in sfus:
            run = Run(n, args, clip, logdir, sfu, media_addr)
            _LIVE_RUNS.append(run)
            try:
                r = await asyncio.wait_for(run.execute(), timeout=args.run_timeout)
                if sfu == "janus":
                    r["sfu_version"] = janus_version
                r["clip"] = clip_info
                r["host"] = {"cpus": os.cpu_count(), "python": platform.python_version(),
                             "machine": platform.machine()}
                r["code"] = code_state
                results.append(r)
                by_sfu[sfu] = r
                print(json.dumps(r), flush=True)
            except (Exception, asyncio.TimeoutError) as exc:
                failed = True
                why = (f"run exceeded --run-timeout {args.run_timeout:g} s" if isinstance(exc, asyncio.TimeoutError)
                       and not str(exc) else f"{type(exc).__name__}: {exc}")
                print(json.dumps({"bench": "fanout", "sfu": sfu, "n": n, "error": why,
                                  "logs": str(logdir)}), flush=True)
            finally:
                await run.cleanup()
                _LIVE_RUNS.remove(run)
        if "liveclass" in by_sfu and "janus" in by_sfu:
            c = comparison(by_sfu["liveclass"], by_sfu["janus"])
            comparisons.append(c)
            print(json.dumps(c), flush=True)
    for r in results:
        print(summary_line(r, label=args.against is not None), flush=True)
    for c in comparisons:
        print(comparison_line(c), flush=True)
    if not args.logs and not failed:
        shutil.rmtree(logdir, ignore_errors=True)
    elif failed:
        print(f"fanout: logs kept in {logdir}", file=sys.stderr)
    return 1 if failed else 0


def parse_args(argv: Optional[list[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("-n", type=int, action="append", help="viewers (repeatable; default 50, 100, 200)")
    p.add_argument("--quick", action="store_true", help="CI smoke test: N=10, 5 s window, short settle")
    p.add_argument("--ladder", action="store_true",
                   help="keep the server-side ladder on (a one-layer publisher's room decodes while watched)")
    p.add_argument("--window", type=float, help="measuring window in seconds (default 12)")
    p.add_argument("--sfu-arg", action="append", default=[], metavar="ARG",
                   help="one more argument for `liveclass serve` (repeatable), e.g. --sfu-arg=--udp-port-per-peer")
    p.add_argument("--settle", type=float, help="seconds to wait after the last join (default 3)")
    p.add_argument("--batch", type=int, default=10, help="viewers joining concurrently (default 10)")
    p.add_argument("--no-stagger", dest="stagger", action="store_false",
                   help="start each join batch at once instead of at a random phase of the GOP")
    p.add_argument("--viewer-procs", type=int, default=1, help="viewer processes (default 1)")
    p.add_argument("--viewer-mode", choices=("poll", "socket", "tap"), default="poll",
                   help="poll: sockets drained in batches, RTP counted without SRTP (default); socket: the same, "
                   "one asyncio callback per datagram; tap: through aiortc's DTLS/SRTP path")
    p.add_argument("--viewer-rtcp", choices=("browser", "none"), default="browser",
                   help="browser: each viewer sends RR+REMB every 250 ms like Chromium (default); none: silent")
    p.add_argument("--workers", type=int, metavar="N",
                   help="serve with `--workers N` (one lesson's viewers spread over the workers): CPU summed over "
                        "the supervisor, its workers and their Redis, all pinned together with --pin-sfu")
    p.add_argument("--pin-sfu", type=int, metavar="CPU",
                   help="pin the SFU to this CPU and the load generator to the others (default: no pinning)")
    p.add_argument("--profile", metavar="PREFIX", help="py-spy the SFU during each window into PREFIX-nN.txt "
                   "(or .json); perturbs the numbers a little")
    p.add_argument("--profile-format", choices=("raw", "speedscope"), default="raw",
                   help="raw: collapsed stacks for bench/pyspy_top.py (default); speedscope: for speedscope.app")
    p.add_argument("--wait-quiet", type=float, default=0, metavar="S",
                   help="before each window wait up to S seconds for other processes to use <= --noise-limit")
    p.add_argument("--noise-limit", type=float, default=0.15, metavar="CORES",
                   help="a window during which other processes used more CPU than this is repeated (default 0.15)")
    p.add_argument("--max-windows", type=int, help="window attempts per run (default 3; 1 with --quick)")
    p.add_argument("--logs", help="keep server/worker logs in this folder")
    p.add_argument("--run-timeout", type=float, default=600, help="give up on one run after this (default 600 s)")
    p.add_argument("--against", choices=("janus",),
                   help="at each N run the same bench against Debian's Janus VideoRoom too (apt-get install janus) "
                   "and print both and the ratio ours/janus; pins the server to CPU 0 unless --pin-sfu")
    p.add_argument("--janus-first", action="store_true", help="with --against janus: Janus's run before ours")
    p.add_argument("--janus-only", action="store_true", help="with --against janus: only Janus's run (debugging)")
    # worker mode (internal)
    p.add_argument("--worker", choices=("viewers", "publisher"), help=argparse.SUPPRESS)
    p.add_argument("--base-url", help=argparse.SUPPRESS)
    p.add_argument("--room", default=ROOM, help=argparse.SUPPRESS)
    p.add_argument("--token", help=argparse.SUPPRESS)
    p.add_argument("--clip", help=argparse.SUPPRESS)
    p.add_argument("--max-seconds", type=float, default=WORKER_MAX_SECONDS, help=argparse.SUPPRESS)
    p.add_argument("--sfu", choices=("liveclass", "janus"), default="liveclass", help=argparse.SUPPRESS)
    p.add_argument("--media-addr", default="127.0.0.1", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if (args.janus_first or args.janus_only) and args.against != "janus":
        p.error("--janus-first and --janus-only go with --against janus")
    if args.against == "janus" and args.pin_sfu is None and not args.worker:
        args.pin_sfu = 0  # server on one core, load on the other(s), for both servers
    if args.quick:
        args.n = args.n or [10]
        args.window = args.window or 5.0
        args.settle = 1.0 if args.settle is None else args.settle
        args.max_windows = args.max_windows or 1
    if args.profile:  # py-spy's own CPU shows up as "other load": do not repeat profiled windows for it
        args.max_windows = args.max_windows or 1
    args.max_windows = args.max_windows or 3
    args.n = args.n or [50, 100, 200]
    args.window = args.window or 12.0
    args.settle = 3.0 if args.settle is None else args.settle
    if any(n < 1 for n in args.n) or min(args.batch, args.viewer_procs, args.max_windows) < 1 or args.window <= 0:
        p.error("N, --batch, --viewer-procs, --max-windows and --window must be positive")
    return args


def main(argv: Optional[list[str]] = None) -> int:
    args = parse_args(argv)
    if args.worker == "viewers":
        asyncio.run(viewers_worker(args))
        return 0
    if args.worker == "publisher":
        asyncio.run(publisher_worker(args))
        return 0
    try:
        return asyncio.run(orchestrate(args))
    except KeyboardInterrupt:
        print("fanout: interrupted; server and workers stopped", file=sys.stderr)
        return 130
    except asyncio.CancelledError:  # SIGTERM/SIGINT cancel the orchestrator, which cleans up on the way out
        print("fanout: stopped by a signal; server and workers stopped", file=sys.stderr)
        return 143


if __name__ == "__main__":
    sys.exit(main())
