"""One UDP port per node: `liveclass serve --udp-port N` carries every peer connection (publisher and viewers)
on one socket, with real aiortc peers in this process and the server in its own."""
from __future__ import annotations

import asyncio
import json
import re
import socket
import subprocess
import sys
import time

import pytest

from testkit.peers import WhepViewer, WhipPublisher
from testkit.server import REPO, ServerProcess
from testkit.udp_sockets import free_udp_port, udp_sockets_of


def metric(server: ServerProcess, name: str) -> float:
    status, body = server.http("/metrics")
    assert status == 200
    m = re.search(rf"^{name} (\S+)$", body.decode(), re.M)
    assert m, f"{name} not in /metrics"
    return float(m.group(1))


def candidate_ports(sdp: str) -> set[int]:
    return {int(m.group(1)) for m in re.finditer(r"^a=candidate:\S+ \d+ udp \d+ \S+ (\d+) typ host", sdp, re.M)}


async def wait_for(cond, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


@pytest.mark.parametrize("native", ["1", "0"], ids=["native-kernel", "python-fallback"])
async def test_a_publisher_and_viewers_share_one_port_and_a_viewer_comes_back(tmp_path, clip, native):
    port = free_udp_port()
    server = ServerProcess(log_path=tmp_path / "server.log", extra=("--udp-port", str(port)),
                           env={"LIVECLASS_NATIVE": native})
    pub = WhipPublisher(server.base_url, "one", server.token("one", "teacher"), clip)
    viewers = [WhepViewer(server.base_url, "one", server.token("one", "student"), count_only=True)
               for _ in range(5)]
    try:
        assert f"Media on UDP 127.0.0.1:{port}" in server.log_tail()   # bound at start, said where
        await pub.start()
        await pub.connected()
        await asyncio.gather(*(v.start() for v in viewers))
        await wait_for(lambda: all(v.first_packet_at for v in viewers), 15, "every viewer to receive media")
        # every answer named the one port; the server holds one UDP socket, on it
        answers = [pub.pc.remoteDescription.sdp] + [v.pc.remoteDescription.sdp for v in viewers]
        assert all(candidate_ports(a) == {port} for a in answers), [candidate_ports(a) for a in answers]
        assert udp_sockets_of(server.proc.pid) == [port]
        assert metric(server, "liveclass_udp_port_connections") == 6
        # the viewers (all from 127.0.0.1, each from its own port) each get the whole stream
        snap = [v.distinct_packets() for v in viewers]
        await asyncio.sleep(3)
        got = [v.distinct_packets() - s for v, s in zip(viewers, snap)]
        assert min(got) > 0.95 * max(got) > 0, got
        # ... sent by the path asked for: the native kernel (built at install) or Python's
        kernel = "native" if native == "1" else "Python"
        assert f"Forwarding kernel: {kernel}" in server.log_tail()
        batched = metric(server, "liveclass_native_sent_packets_total")
        assert batched > sum(got) if native == "1" else batched == 0, (batched, got)
        # how long the node held each of the publisher's packets until its 5 copies were out, on loopback
        held = metric(server, "liveclass_forward_latency_seconds_count")
        held_s = metric(server, "liveclass_forward_latency_seconds_sum")
        assert held > 0.9 * max(got) and 0 < held_s / held < 0.02, (held, held_s)
        # the SRTP profile each session's DTLS chose is reported (aiortc peers offer AES-GCM first)
        status, body = server.http(f"/api/stats?room=one&token={server.token('one', 'admin')}")
        room = json.loads(body)["rooms"][0]
        profiles = {s["srtp_profile"] for s in [room["publisher"], *room["viewers"]]}
        assert status == 200 and profiles == {"SRTP_AEAD_AES_256_GCM"}, profiles
        # one viewer leaves and comes back with a new connection: it plays, and the one it left is gone
        await viewers[0].stop()
        await wait_for(lambda: metric(server, "liveclass_udp_port_connections") == 5, 10, "the old connection to end")
        viewers[0] = WhepViewer(server.base_url, "one", server.token("one", "student"), count_only=True)
        await viewers[0].start()
        await wait_for(lambda: viewers[0].first_packet_at is not None, 10, "the returning viewer's media")
        assert metric(server, "liveclass_udp_port_connections") == 6
        assert udp_sockets_of(server.proc.pid) == [port]
    finally:
        await asyncio.gather(*(v.stop() for v in viewers), return_exceptions=True)
        await pub.stop()
        code = server.stop()
    assert code in (0, -2, 130), server.log_tail()


def test_a_port_in_use_stops_the_start_with_a_reason(tmp_path):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind(("127.0.0.1", 0))
        port = taken.getsockname()[1]
        out = subprocess.run([sys.executable, "-m", "signaling.cli", "serve", "--secret", "s" * 32, "--port", "0",
                              "--media-host", "127.0.0.1", "--udp-port", str(port), "--library", str(tmp_path)],
                             cwd=REPO, capture_output=True, text=True, timeout=60)
    assert out.returncode != 0
    assert f"UDP port {port}" in out.stderr and "in use" in out.stderr, out.stderr[-2000:]
    assert "Traceback" not in out.stderr, out.stderr[-2000:]


def test_a_port_per_peer_stays_an_option(tmp_path, clip):
    server = ServerProcess(log_path=tmp_path / "server.log", extra=("--udp-port-per-peer",))

    async def run() -> list[str]:
        pub = WhipPublisher(server.base_url, "many", server.token("many", "teacher"), clip)
        viewer = WhepViewer(server.base_url, "many", server.token("many", "student"), count_only=True)
        try:
            await pub.start()
            await pub.connected()
            await viewer.start()
            await wait_for(lambda: viewer.first_packet_at is not None, 10, "media")
            return [pub.pc.remoteDescription.sdp, viewer.pc.remoteDescription.sdp]
        finally:
            await viewer.stop()
            await pub.stop()

    try:
        answers = asyncio.run(run())
        ports = [candidate_ports(a) for a in answers]
        assert len(ports[0] | ports[1]) == 2, ports       # a socket each
        assert "Media on UDP" not in server.log_tail()
    finally:
        server.stop()
