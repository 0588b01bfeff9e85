"""Garbage on the media ports: random datagrams, malformed STUN and bogus DTLS records and unprotected RTP/RTCP,
sent by another process at the node's one media port (its publisher's and viewers') for 30 s. The viewers keep
decoding without losing a packet, a new viewer joins and plays meanwhile, the server answers HTTP at once the
whole time, and it logs no traceback."""
from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from testkit.lesson_peers import frames_grow
from testkit.peers import WhepViewer, WhipPublisher
from testkit.server import REPO, ServerProcess

pytestmark = pytest.mark.timeout(120)

FLOOD_S = 30.0
FLOOD_RATE = 2000          # datagrams a second, all kinds together


def server_ports(sdp: str) -> set[int]:
    """The server's host candidate ports in an answer it gave."""
    return {int(m.group(1)) for m in re.finditer(r"^a=candidate:\S+ \d+ udp \d+ \S+ (\d+) typ host", sdp, re.M)}


def video_loss(viewer: WhepViewer) -> tuple[int, int]:
    """(packets missing, packets expected) on the video SSRC, from the sequence numbers that arrived."""
    video_pts = {pt for pt, kind in viewer.kinds.items() if kind == "video"}
    missing = expected = 0
    for ssrc, seqs in viewer.seqs.items():
        if len(seqs) < 100:
            continue   # the audio (few packets between checks) or an RTX stream
        unwrapped = sorted(seqs)
        span = unwrapped[-1] - unwrapped[0] + 1
        if span > 60000:   # wrapped around during the test: count by gaps instead
            continue
        expected += span
        missing += span - len(seqs)
    assert video_pts, viewer.kinds
    return missing, expected


async def test_garbage_at_the_media_ports_disturbs_no_one(tmp_path: Path, clip: Path) -> None:
    server = ServerProcess(log_path=tmp_path / "server.log")
    pub = WhipPublisher(server.base_url, "garbage", server.token("garbage", "teacher"), clip)
    watcher = WhepViewer(server.base_url, "garbage", server.token("garbage", "terminal", identity="w"))
    counter = WhepViewer(server.base_url, "garbage", server.token("garbage", "terminal", identity="c"),
                         count_only=True)
    late = WhepViewer(server.base_url, "garbage", server.token("garbage", "terminal", identity="late"))
    flood = None
    try:
        await pub.start()
        await pub.connected()
        for v in (watcher, counter):
            await v.start()
        await frames_grow(watcher)
        ports = set()
        for peer in (pub, watcher, counter):
            ports |= server_ports(peer.pc.remoteDescription.sdp)
        assert len(ports) == 1, ports   # the node's one UDP port carries all three: the garbage hits them all
        counter.seqs.clear()   # count from here
        flood = subprocess.Popen([sys.executable, "-m", "testkit.garbage_flood", "127.0.0.1", *map(str, sorted(ports)),
                                  "--seconds", str(FLOOD_S), "--rate", str(FLOOD_RATE)],
                                 cwd=REPO, stdout=subprocess.PIPE, text=True)
        start = time.monotonic()
        slowest_http = 0.0
        frames_before = watcher.frames
        windows = []
        joined = False
        while time.monotonic() - start < FLOOD_S:
            t = time.monotonic()
            status, _ = await asyncio.to_thread(server.http, "/healthz", 5)
            assert status == 200
            slowest_http = max(slowest_http, time.monotonic() - t)
            if not joined and time.monotonic() - start > FLOOD_S / 2:
                await late.start()
                await frames_grow(late)    # a newcomer plays in the middle of the flood
                joined = True
            await asyncio.sleep(1.0)
            windows.append(watcher.frames - frames_before)
            frames_before = watcher.frames
        sent = json.loads(flood.communicate(timeout=15)[0])
        assert sum(v for k, v in sent.items() if k != "dropped_locally") >= FLOOD_S * FLOOD_RATE * 0.8, sent
        assert joined
        assert slowest_http < 1.0, f"the server took {slowest_http:.2f} s to answer /healthz during the flood"
        assert min(windows[1:]) >= 20, f"decoded frames per second during the flood: {windows}"   # a 30 fps clip
        missing, expected = video_loss(counter)
        assert expected > FLOOD_S * 50 and missing == 0, (missing, expected)
        log = server.log_tail(400_000)
        assert "Traceback" not in log, log[log.index("Traceback") - 300:][:3000]
        print(f"\nflood {sent}; /healthz at most {slowest_http * 1000:.0f} ms; frames/s {windows}; "
              f"video packets {expected - missing}/{expected}")
    finally:
        if flood is not None and flood.poll() is None:
            flood.kill()
        for p in (late, counter, watcher, pub):
            await p.stop()
        server.stop()
