"""Recorder benchmark: what recording one lesson costs, and how long finalizing takes for long lessons.

    .venv/bin/python bench/recorder.py                    # 20 s of 720p 1.5 Mbit/s VP8 + Opus; 5/30/60 min files
    .venv/bin/python bench/recorder.py --seconds 5 --minutes 5   # a quick look

1. CPU per recorded lesson, in process, no network: the bench clip (1280x720 30 fps VP8 ~1.5 Mbit/s + Opus) is
   played as RTP in real time into the recorder's packet sinks on the event loop, exactly as the SFU calls them
   (with sender reports once a second). Measured: the writer thread's CPU (/proc/self/task/TID/stat), the time
   the sinks take on the event loop, both as a share of one core; then the background analysis (poster and
   chapters, a separate niced process) of the file it wrote.
2. Finalize time for 5, 30 and 60 minutes of media: the clip's frames written through the same WebM writer as
   in a lesson (a Cluster per keyframe, fdatasync every 10 s), then `finish()` (seek index + header patches,
   fsync) timed; and `repair()` of the same file, what recovery after a crash costs.
stdout: one JSON object, then a one-line summary.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import av  # noqa: E402

from bench.clips import ensure_clip  # noqa: E402
from recorder.session import KindSink, RecordingSession, SessionConfig  # noqa: E402
from recorder.webm.webm_writer import WebmWriter, repair  # noqa: E402
from sfu.ingest.inbound import InboundStream  # noqa: E402
from sfu.rtp.rtp_header import RtpView, build_header  # noqa: E402
from testkit.rtp_clip import relabel, vp8_clip_rtp  # noqa: E402
from testkit.webm_files import add_packet, clip_packets, lesson_tracks  # noqa: E402

TICK = 0.005
NTP_EPOCH = 2208988800


def thread_cpu(native_id: int) -> float:
    fields = Path(f"/proc/self/task/{native_id}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def process_cpu() -> float:
    t = os.times()
    return t.user + t.system


def opus_rtp(clip: Path, ssrc: int = 777, pt: int = 111) -> list[tuple[float, bytes]]:
    """(seconds, RTP packet) of the clip's Opus packets."""
    out = []
    with av.open(str(clip)) as c:
        s = c.streams.audio[0]
        for i, p in enumerate(p for p in c.demux(s) if p.size):
            t = float(p.pts * s.time_base)
            out.append((t, bytes(build_header(1, pt, i & 0xFFFF, int(t * 48000) & 0xFFFFFFFF, ssrc)) + bytes(p)))
    return out


async def record_live(clip: Path, info: dict, seconds: float, out: Path) -> dict:
    """Play the clip into a recording session's sinks in real time for `seconds`; measure."""
    fps = info["fps"]
    frames = vp8_clip_rtp(clip, ts0=10_000)
    clip_len = len(frames) / fps
    video_events = [(i / fps, p) for i, f in enumerate(frames) for p in f]
    audio_events = [(t, p) for t, p in opus_rtp(clip) if t < clip_len]
    video = InboundStream("video", "VP8", 90000, 4321, 96)
    audio = InboundStream("audio", "opus", 48000, 777, 111)
    session = RecordingSession(out, "bench", SessionConfig())
    session.start()
    sinks = {"video": KindSink(session, "video", lambda now, s: None),
             "audio": KindSink(session, "audio", lambda now, s: None)}
    streams = {"video": (video, video_events, 90000, sum(len(f) for f in frames)),
               "audio": (audio, audio_events, 48000, len(audio_events))}
    sink_time = 0.0
    packets = 0
    start = time.monotonic()
    wall0 = time.time()
    cpu0 = process_cpu()
    thread0 = thread_cpu(session._thread.native_id)
    idx = {"video": 0, "audio": 0}
    next_sr = 0.0
    while True:
        now = time.monotonic()
        elapsed = now - start
        if elapsed >= seconds:
            break
        if elapsed >= next_sr:   # sender reports: the publisher's wall clock for its RTP clocks
            for kind, (stream, events, rate, _) in streams.items():
                ntp = int((wall0 + elapsed + NTP_EPOCH) * (1 << 32))
                stream.on_sender_report(ntp, (int(elapsed * rate) + (10_000 if kind == "video" else 0)) & 0xFFFFFFFF,
                                        now)
            next_sr += 1.0
        for kind, (stream, events, rate, per_lap) in streams.items():
            while True:
                i = idx[kind]
                lap, j = divmod(i, len(events))
                t = events[j][0] + lap * clip_len
                if t > elapsed:
                    break
                data = relabel(events[j][1], lap, int(clip_len * rate), per_lap)
                pkt = stream.classify(RtpView(data), now)
                t0 = time.perf_counter()
                sinks[kind].on_rtp(pkt, stream, now)
                sink_time += time.perf_counter() - t0
                packets += 1
                idx[kind] = i + 1
        await asyncio.sleep(TICK)
    wall = time.monotonic() - start
    thread = thread_cpu(session._thread.native_id) - thread0
    proc = process_cpu() - cpu0
    t0 = time.perf_counter()
    outcome = await asyncio.to_thread(session.stop)
    stop_s = time.perf_counter() - t0
    assert outcome.finished is not None, outcome.error
    return {"seconds": round(wall, 2), "packets": packets, "packets_per_s": round(packets / wall),
            "writer_thread_cores": round(thread / wall, 5), "sinks_on_loop_cores": round(sink_time / wall, 5),
            "recorder_cores": round((thread + sink_time) / wall, 5),
            "sink_us_per_packet": round(sink_time / max(1, packets) * 1e6, 2),
            "process_cores_incl_feeder": round(proc / wall, 4),
            "stop_to_finished_s": round(stop_s, 4), "file_bytes": outcome.finished.size,
            "file_duration_s": outcome.finished.duration_ms / 1000, "stats": outcome.stats}


def analysis_cost(media: Path) -> dict:
    with tempfile.TemporaryDirectory() as d:
        t = time.perf_counter()
        before = os.times()
        r = subprocess.run([sys.executable, "-m", "recorder.analysis", str(media), d], cwd=REPO,
                           capture_output=True, text=True, timeout=300)
        after = os.times()
        took = time.perf_counter() - t
        result = json.loads(r.stdout) if r.returncode == 0 else {"error": r.stderr[-300:]}
    cpu = (after.children_user - before.children_user) + (after.children_system - before.children_system)
    return {"wall_s": round(took, 3), "cpu_s": round(cpu, 3), "keyframes": result.get("keyframes"),
            "chapters": len(result.get("chapters", []))}


def finalize_cost(clip: Path, minutes: int, workdir: Path) -> dict:
    pkts = clip_packets(clip)
    with av.open(str(clip)) as c:
        clip_len = float(c.duration / 1e6)
    v = av.open(str(clip))
    width, height = v.streams.video[0].codec_context.width, v.streams.video[0].codec_context.height
    v.close()
    path = workdir / f"lesson-{minutes}min.webm"
    w = WebmWriter(path, lesson_tracks(width, height), "bench")
    total = minutes * 60.0
    t_write = time.perf_counter()
    next_sync = 10.0
    lap = 0
    while lap * clip_len < total:
        base = lap * clip_len
        for t, kind, data, key in pkts:
            ts = base + t
            if ts >= total:
                break
            add_packet(w, ts, kind, data, key)
            if ts >= next_sync:   # as the session does every 10 s
                w.flush()
                os.fdatasync(w._fd)
                next_sync += 10.0
        lap += 1
    write_s = time.perf_counter() - t_write
    t = time.perf_counter()
    done = w.finish()
    finish_s = time.perf_counter() - t
    t = time.perf_counter()
    rep = repair(path)
    repair_s = time.perf_counter() - t
    with av.open(str(path)) as c:
        duration = c.duration / 1e6
    size = path.stat().st_size
    path.unlink()
    return {"minutes": minutes, "finish_s": round(finish_s, 4), "repair_s": round(repair_s, 4),
            "write_s": round(write_s, 2), "bytes": size, "cues": done.cues, "clusters": done.clusters,
            "duration_s": round(duration, 3), "repair_same": rep.duration_ms == done.duration_ms}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=20.0, help="real-time recording to measure CPU (default 20)")
    ap.add_argument("--minutes", type=int, nargs="*", default=[5, 30, 60], help="lesson lengths to finalize")
    ap.add_argument("--workdir", type=Path, default=None, help="where the big files go (default: a temp dir)")
    args = ap.parse_args()
    if not 1 <= args.seconds <= 600 or any(not 1 <= m <= 240 for m in args.minutes):
        print("--seconds must be 1..600 and --minutes 1..240", file=sys.stderr)
        return 2
    clip, info = ensure_clip()
    work = Path(tempfile.mkdtemp(prefix="bench-recorder-", dir=args.workdir))
    try:
        live = asyncio.run(record_live(clip, info, args.seconds, work / "live.webm"))
        analysis = analysis_cost(work / "live.webm")
        finals = [finalize_cost(clip, m, work) for m in args.minutes]
    finally:
        shutil.rmtree(work, ignore_errors=True)
    result = {"clip": {k: info[k] for k in ("width", "height", "fps") if k in info} | {"path": str(clip)},
              "recording": live, "analysis": analysis, "finalize": finals}
    print(json.dumps(result, indent=1))
    fin = ", ".join(f"{f['minutes']} min {f['finish_s'] * 1000:.1f} ms (repair {f['repair_s'] * 1000:.0f} ms)"
                    for f in finals)
    print(f"recorder: {live['recorder_cores'] * 100:.2f}% of a core per lesson "
          f"(writer thread {live['writer_thread_cores'] * 100:.2f}%, "
          f"sinks on the loop {live['sinks_on_loop_cores'] * 100:.2f}%"
          f", {live['packets_per_s']} packets/s); analysis {analysis['cpu_s']:.1f} CPU-s for {live['seconds']:.0f} s; "
          f"finalize {fin}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
