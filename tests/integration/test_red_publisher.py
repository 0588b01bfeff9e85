"""A publisher that sends redundant audio (RFC 2198), as Chromium does once the answer prefers it, through
`liveclass serve`: the answer lists RED first, the ingest unwraps it and rebuilds the packets its uplink lost, and
a viewer that did not offer RED gets every Opus frame, in order, as plain Opus.

aiortc cannot send RED itself: the publisher is a real aiortc peer whose offer adds `red/48000/2` as Chromium's
does, and whose RTP goes out through its transport's tap, built with `sfu/rtp/red.py`."""
from __future__ import annotations

import asyncio
import re
import time

import aiohttp
from aiortc import RTCSessionDescription

from sfu.rtp.red import RedBlock, build_red
from sfu.rtp.rtp_header import RtpView, build_header
from sfu.webrtc import aiortc_adapter as adapter
from testkit.peers import WhepViewer, client_session, post_offer

RED = 63
PACKETS = 120
LOST = {40, 80, 81}    # never sent: the first from one copy of redundancy, the pair from two


def with_red(offer: str, opus_pt: int) -> str:
    """The offer's audio section with Chromium's `red/48000/2` after Opus."""
    head, audio = offer.split("m=audio", 1)
    first, rest = audio.split("\r\n", 1)
    rest = rest.replace(f"a=rtpmap:{opus_pt} opus/48000/2\r\n",
                        f"a=rtpmap:{opus_pt} opus/48000/2\r\na=rtpmap:{RED} red/48000/2\r\n"
                        f"a=fmtp:{RED} {opus_pt}/{opus_pt}\r\n", 1)
    return f"{head}m=audio{first} {RED}\r\n{rest}"


def audio_payload_types(sdp: str) -> list[int]:
    return [int(pt) for pt in re.search(r"^m=audio \S+ \S+ ([\d ]+)\r?$", sdp, re.M).group(1).split()]


async def room_stats(http: aiohttp.ClientSession, server, room: str) -> dict:
    async with http.get(f"{server.base_url}/api/stats", params={"room": room,
                                                               "token": server.token(room, "admin")}) as r:
        return (await r.json())["rooms"][0]


async def until(cond, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


async def test_red_from_a_publisher_is_unwrapped_and_its_losses_recovered(server):
    # frames of a speaking voice's size (the SFU neither decodes nor checks them), each its own
    frames = [i.to_bytes(2, "big") + bytes([i % 251]) * (60 + 7 * i % 50) for i in range(PACKETS)]
    pc = adapter.new_peer_connection()
    transceiver = pc.addTransceiver(adapter.SilentTrack("audio"), direction="sendonly")   # we send, not aiortc
    viewer = WhepViewer(server.base_url, "red", server.token("red", "terminal"), count_only=True)
    heard: list[RtpView] = []
    viewer.rtp_listeners.append(lambda v: heard.append(v) if viewer.kinds.get(v.payload_type) == "audio" else None)
    http = client_session()
    try:
        await viewer.start()
        await until(lambda: viewer.tap is not None and viewer.tap.ready, 10, "the viewer connected")
        await pc.setLocalDescription(await pc.createOffer())
        opus_pt = next(c.payloadType for c in adapter.negotiated_codecs(transceiver) if c.mimeType == "audio/opus")
        answer, location, _ = await post_offer(http, f"{server.base_url}/whip/red", server.token("red", "teacher"),
                                               with_red(pc.localDescription.sdp, opus_pt))
        pts = audio_payload_types(answer)
        assert RED in pts and pts.index(RED) < pts.index(opus_pt), answer   # preferred: Chromium sends RED then
        assert f"a=fmtp:{RED} {opus_pt}/{opus_pt}" in answer
        await pc.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))
        tap = adapter.PacketTap(pc, lambda data, arrival: None, lambda data: None)
        await until(lambda: tap.ready, 10, "the publisher connected")

        ssrc = adapter.sender_ssrcs(transceiver.sender)[0]
        for i, frame in enumerate(frames):
            ts = 960 * i
            blocks = [RedBlock(opus_pt, 960 * k, frames[i - k]) for k in (2, 1) if i >= k]
            if i not in LOST:
                assert tap.send_rtp(bytes(build_header(int(i == 0), RED, 7000 + i, ts, ssrc))
                                    + build_red(opus_pt, frame, blocks))
            await asyncio.sleep(0.01)
        await until(lambda: len(heard) >= PACKETS, 5, f"{PACKETS} audio packets at the viewer")

        # every frame, in order, as plain Opus (the viewer did not offer RED), on the viewer's own numbering
        assert [v.payload for v in heard] == frames
        assert {v.payload_type for v in heard} == {opus_pt}
        assert all((b.seq - a.seq) & 0xFFFF == 1 for a, b in zip(heard, heard[1:]))
        publisher = (await room_stats(http, server, "red"))["publisher"]
        assert publisher["red"] == [{"red_pt": RED, "opus_pt": opus_pt, "unwrapped": PACKETS - len(LOST),
                                     "recovered": len(LOST), "dropped": {}}]
        audio = next(s for s in publisher["streams"] if s["kind"] == "audio")
        assert (audio["codec"], audio["lost"]) == ("opus", len(LOST))   # the publisher hears of its real loss
        assert publisher["unknown"] == 0 and publisher["malformed"] == 0
        async with http.delete(server.base_url + location,
                               headers={"Authorization": f"Bearer {server.token('red', 'teacher')}"}):
            pass
    finally:
        await viewer.stop()
        await pc.close()
        await http.close()
