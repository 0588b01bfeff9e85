"""Server-side ladder benchmark: what one room's ladder costs, in process, no network.

    .venv/bin/python bench/ladder.py                  # 20 s of 1280x720 30 fps ~1.5 Mbit/s VP8, real time
    .venv/bin/python bench/ladder.py --seconds 5      # a quick look

A RoomLadder (rungs 640x360 30 fps 500 kbit/s + 320x180 30 fps 150 kbit/s) is fed the bench's
pre-encoded clip as RTP in real time, each frame's packets in one burst as a pacer-less publisher sends them,
on the event loop, as the SFU would: first with no rung active (the baseline: depacketizing only), then
with both active. Measured: the worker thread's CPU (its own clock) and the process's,
as cores; decode / scale / encode ms per frame; how long on_packet takes on the loop; the event loop's lag
(a 10 ms ticker's overshoot) while the ladder runs; frames dropped; emitted bitrate per rung.
stdout: one JSON object, then a one-line summary.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench.clips import CLIP, clip_path  # noqa: E402
from bench.procs import calibrate, host_cpu_times  # noqa: E402
from sfu.ladder.room_ladder import RoomLadder  # noqa: E402
from sfu.ladder.track_ladder import DEFAULT_RUNGS  # noqa: E402
from testkit.media import make_clip  # noqa: E402
from testkit.rtp_clip import relabel, vp8_clip_rtp  # noqa: E402

RUNGS = list(DEFAULT_RUNGS)
TICK = 0.01


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))] if values else 0.0


class Feeder:
    """Plays the clip into the ladder in real time and measures the loop: on_packet time and a ticker's lag."""

    def __init__(self, ladder: RoomLadder, frames: list[list[bytes]], fps: int) -> None:
        self.ladder, self.frames, self.fps = ladder, frames, fps
        self.clip_ticks = len(frames) * 90000 // fps
        self.clip_packets = sum(len(f) for f in frames)
        self.n = 0
        self.lags: list[float] = []
        self.on_packet_us: list[float] = []

    async def _ticker(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            t = time.perf_counter()
            await asyncio.sleep(TICK)
            self.lags.append((time.perf_counter() - t - TICK) * 1000)

    async def play(self, seconds: float) -> dict:
        self.lags, self.on_packet_us = [], []
        stop = asyncio.Event()
        tick_task = asyncio.create_task(self._ticker(stop))
        cpu0, wall0, worker0 = time.process_time(), time.monotonic(), self.ladder.worker_cpu
        first = self.n
        while self.n < first + int(seconds * self.fps):
            delay = wall0 + (self.n - first) / self.fps - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            lap, i = divmod(self.n, len(self.frames))
            for packet in self.frames[i]:
                packet = relabel(packet, lap, self.clip_ticks, self.clip_packets)
                t = time.perf_counter()
                self.ladder.on_packet(packet, "VP8", 90000, time.monotonic())
                self.on_packet_us.append((time.perf_counter() - t) * 1e6)
            self.n += 1
        await asyncio.sleep(0.2)  # the last frames' encodes and deliveries
        wall = time.monotonic() - wall0
        cpu = time.process_time() - cpu0
        stop.set()
        await tick_task
        return {
            "seconds": round(wall, 2),
            "worker_cpu_cores": round((self.ladder.worker_cpu - worker0) / wall, 3),
            "process_cpu_cores": round(cpu / wall, 3),
            "on_packet_us": {"p50": round(pct(self.on_packet_us, 0.5), 1),
                             "p99": round(pct(self.on_packet_us, 0.99), 1),
                             "max": round(max(self.on_packet_us), 1),
                             "mean": round(statistics.fmean(self.on_packet_us), 1)},
            "loop_lag_ms": {"p50": round(pct(self.lags, 0.5), 2), "p99": round(pct(self.lags, 0.99), 2),
                            "max": round(max(self.lags), 2)},
        }


async def run(seconds: float, idle_seconds: float) -> dict:
    frames = vp8_clip_rtp(make_clip(clip_path(), **CLIP), ts0=123456)
    octets = [0] * len(RUNGS)

    def emit(i: int, packet: bytes) -> None:
        octets[i] += len(packet)

    ladder = RoomLadder(RUNGS, emit, lambda: None, asyncio.get_running_loop())
    feeder = Feeder(ladder, frames, CLIP["fps"])
    idle = await feeder.play(idle_seconds)  # baseline: no viewer needs a rung, only depacketizing
    ladder.set_active(set(range(len(RUNGS))))
    host0 = host_cpu_times()
    active = await feeder.play(seconds)
    host1 = host_cpu_times()
    s = ladder.stats()
    await ladder.close()
    decoded = s["frames_decoded"] or 1
    return {
        "source": {k: CLIP[k] for k in ("width", "height", "fps", "bitrate")},
        "rungs": [r.__dict__ for r in RUNGS],
        **active,
        "ms_per_frame": {"decode": s["decode_ms"], "scale": s["scale_ms"],
                         "encode": [r["encode_ms"] for r in s["rungs"]],
                         "worker_cpu": round(s["worker_cpu_seconds"] / decoded * 1000, 2)},
        "frames": {"in": s["frames_in"], "decoded": s["frames_decoded"],
                   "encoded": [r["frames_encoded"] for r in s["rungs"]], "dropped": s["dropped"]},
        "rung_kbps": [round(o * 8 / active["seconds"] / 1000) for o in octets],
        "keyframes": [r["keyframes"] for r in s["rungs"]],
        "idle_baseline": idle,
        "host_busy": round((host1[0] - host0[0]) / max(1, host1[1] - host0[1]), 3),
        "calibration": calibrate(),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=20.0, help="measured with both rungs active")
    ap.add_argument("--idle-seconds", type=float, default=5.0, help="baseline first: rungs inactive")
    args = ap.parse_args()
    r = asyncio.run(run(args.seconds, args.idle_seconds))
    print(json.dumps(r))
    d = r["frames"]["dropped"]
    lag, idle_lag = r["loop_lag_ms"], r["idle_baseline"]["loop_lag_ms"]
    encode = "/".join(str(e) for e in r["ms_per_frame"]["encode"])
    rungs = "+".join(f"{x.height}p{x.fps}" for x in RUNGS)
    print(f"ladder 720p30 -> {rungs}: worker {r['worker_cpu_cores']:.2f} cores, process "
          f"{r['process_cpu_cores']:.2f} cores; decode {r['ms_per_frame']['decode']} ms, encode {encode} ms "
          f"per frame; loop lag p50 {lag['p50']} p99 {lag['p99']} ms (idle p99 {idle_lag['p99']}); on_packet p99 "
          f"{r['on_packet_us']['p99']} us; dropped {sum(v for k, v in d.items() if k != 'idle')}; "
          f"{r['rung_kbps'][0]}/{r['rung_kbps'][1]} kbit/s (host busy {r['host_busy']:.0%})")

if __name__ == "__main__":
    main()
