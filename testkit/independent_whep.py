"""A WHEP client written as anyone would with aiortc and aiohttp, run as its own process so nothing of ours
(the SFU's aiortc adapter, its patched ICE address gathering) is in it:

    python -m testkit.independent_whep URL TOKEN [--cafile CA] [--seconds 5]

POSTs an offer (aiohttp follows redirects its own way: without `Authorization` to another origin), applies the
answer, counts the video frames decoded for `seconds` once connected, and prints one JSON line:
{"status", "history" (redirect statuses), "frames", "sizes", "state", "connected_s"[, "reason"]}.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import ssl
import sys
import time
from typing import Optional


async def play(url: str, token: str, cafile: Optional[str], seconds: float, connect_timeout: float) -> dict:
    import aiohttp
    from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))   # no STUN: nothing may leave the machine
    pc.addTransceiver("video", direction="recvonly")
    pc.addTransceiver("audio", direction="recvonly")
    frames, sizes, readers = 0, set(), []

    @pc.on("track")
    def on_track(track) -> None:
        async def read() -> None:
            nonlocal frames
            while True:
                frame = await track.recv()
                frames += 1
                sizes.add((frame.width, frame.height))
        if track.kind == "video":
            readers.append(asyncio.ensure_future(read()))

    await pc.setLocalDescription(await pc.createOffer())
    ctx = ssl.create_default_context(cafile=cafile) if cafile else None
    try:
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=ctx if ctx else True)) as http:
            async with http.post(url, data=pc.localDescription.sdp,
                                 headers={"Authorization": f"Bearer {token}", "Content-Type": "application/sdp"}) as r:
                status, answer, history = r.status, await r.text(), [h.status for h in r.history]
        if status != 201:
            return {"status": status, "reason": answer.strip(), "history": history, "frames": 0}
        await pc.setRemoteDescription(RTCSessionDescription(answer, "answer"))
        t0 = time.monotonic()
        while pc.connectionState != "connected" and time.monotonic() - t0 < connect_timeout:
            await asyncio.sleep(0.05)
        connected_s = time.monotonic() - t0
        start = frames
        await asyncio.sleep(seconds)
        return {"status": status, "history": history, "frames": frames - start, "sizes": sorted(sizes),
                "state": pc.connectionState, "connected_s": round(connected_s, 2)}
    finally:
        for t in readers:
            t.cancel()
        await pc.close()


def main(argv: Optional[list[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("url")
    p.add_argument("token")
    p.add_argument("--cafile")
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--connect-timeout", type=float, default=20.0)
    a = p.parse_args(argv)
    print(json.dumps(asyncio.run(play(a.url, a.token, a.cafile, a.seconds, a.connect_timeout))), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
