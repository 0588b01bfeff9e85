"""FFmpeg's WHIP muxer (a non-browser WHIP client) publishes; an aiortc viewer decodes it, past the 30 s
point where aiortc would drop a client that stops answering ICE consent checks."""
from __future__ import annotations

import asyncio
import subprocess
import sys
import time

import av
import pytest

from testkit.certs import p256_certificate
from testkit.peers import WhepViewer

pytestmark = pytest.mark.skipif("whip" not in av.formats_available, reason="this PyAV build has no WHIP muxer")


async def test_ffmpeg_whip_publisher_stays_connected_and_plays(server, tmp_path):
    cert, key = p256_certificate(tmp_path)
    proc = subprocess.Popen([sys.executable, "-m", "testkit.ffmpeg_whip", f"{server.base_url}/whip/obs",
                             server.token("obs", "teacher"), str(cert), str(key), "42"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    viewer = WhepViewer(server.base_url, "obs", server.token("obs", "terminal"))
    try:
        await asyncio.sleep(3)
        await viewer.start()
        deadline = time.monotonic() + 10
        while viewer.frames < 30 and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        assert viewer.frames >= 30, "no H.264 frames decoded from the FFmpeg publisher"
        assert viewer.frame_sizes[-1] == (640, 360)
        await asyncio.sleep(34)  # past aioice's consent timeout (6 failed checks, 5 s apart)
        late = viewer.frames
        await asyncio.sleep(2)
        assert viewer.frames - late >= 30, "the FFmpeg publisher was dropped after ~30 s"
        out, err = await asyncio.get_running_loop().run_in_executor(None, proc.communicate, None, 30)
        assert proc.returncode == 0, err[-2000:]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        await viewer.stop()
