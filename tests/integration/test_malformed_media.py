"""Garbage inside a valid SRTP session (malformed RTP and RTCP) is dropped and counted; media keeps flowing."""
from __future__ import annotations

import asyncio
import collections
import struct

import aiohttp

from sfu.webrtc import aiortc_adapter as adapter
from sfu.rtp.rtp_header import build_header
from testkit.peers import WhepViewer, WhipPublisher


def garbage_packets(video_pt: int, rtx_pt: int, seq: int) -> list[bytes]:
    """One of each kind of broken packet. Each has its own sequence number (SRTP drops replays) and a stray
    SSRC: sending through the teacher's own SRTP context with foreign sequence numbers would desynchronise its
    rollover counter, which no real peer does."""
    def hdr(k: int, pt: int = video_pt, ssrc: int = 0xBAD0) -> bytes:
        return bytes(build_header(0, pt, seq + k, 1, ssrc))
    return [
        b"\x80",                                                # 1 byte
        b"\x80" * 11,                                           # shorter than the fixed header
        b"\x40" + hdr(0)[1:] + b"x",                            # RTP version 1
        b"\x8f" + hdr(1)[1:] + b"\x00" * 8,                     # 15 CSRCs announced, 2 present
        b"\x90" + hdr(2)[1:] + struct.pack("!HH", 0xBEDE, 200),  # extension longer than the packet
        b"\xa0" + hdr(3)[1:] + b"\x10\x00\xff",                 # padding count past the payload
        hdr(4, pt=77, ssrc=0xDEAD) + b"zz",                     # unknown payload type
        hdr(5, pt=rtx_pt, ssrc=0xBEEF) + b"\x01",               # RTX shorter than its OSN
        hdr(6) + b"\x90",                                       # VP8 descriptor truncated
        hdr(7),                                                 # empty payload
    ]


async def test_malformed_rtp_and_rtcp_are_dropped_cleanly(server, clip):
    pub = WhipPublisher(server.base_url, "junk", server.token("junk", "teacher"), clip)
    await pub.start()
    await pub.connected()
    viewer = WhepViewer(server.base_url, "junk", server.token("junk", "terminal"))
    noisy_viewer = WhepViewer(server.base_url, "junk", server.token("junk", "student"), count_only=True)
    try:
        await viewer.start()
        await noisy_viewer.start()
        deadline = asyncio.get_running_loop().time() + 10
        while viewer.frames < 10 and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.1)
        video = next(t for t in pub.pc.getTransceivers() if t.kind == "video")
        codecs = adapter.negotiated_codecs(video)
        vp8_pt = next(c.payloadType for c in codecs if c.mimeType == "video/VP8")
        rtx_pt = next(c.payloadType for c in codecs if c.mimeType == "video/rtx")
        pub_tap = adapter.PacketTap(pub.pc, lambda d, a: None, lambda d: None)
        # the tap replaced the publisher's own RTCP handling; media sending is untouched
        view_tap = adapter.PacketTap(noisy_viewer.pc, lambda d, a: None, lambda d: None)
        bad_rtcp = [b"\x81\xc9\x00\x07" + b"\x00" * 4,                 # RR claiming more blocks than present
                    b"\x8f\xcd\x00\x02" + b"\x00" * 8,                 # NACK with no FCI
                    b"\x81\xce\x00\x02" + b"\x00" * 8,                 # PLI for an unknown SSRC
                    b"\x8f\xce\x00\x04" + b"\x00" * 8 + b"REMB",       # REMB with a truncated FCI
                    b"\x80\xc8\x00\x01" + b"\x00" * 4]                 # SR too short
        for i in range(20):
            for p in garbage_packets(vp8_pt, rtx_pt, 100 * i):
                pub_tap.send_rtp(p)
            for p in bad_rtcp:
                pub_tap.send_rtcp(p)
                view_tap.send_rtcp(p)
            await asyncio.sleep(0.05)
        frames = viewer.frames
        await asyncio.sleep(2)
        assert viewer.frames - frames >= 40, "video stopped after malformed packets"
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{server.base_url}/api/stats",
                                params={"room": "junk", "token": server.token("junk", "admin")}) as r:
                stats = (await r.json())["rooms"][0]
        # CSRC overrun, extension overrun and bad padding reach the SFU and are counted; the shortest packets
        # and the version-1 one are already refused by SRTP or by the transport demux
        assert stats["publisher"]["malformed"] >= 20 * 3
        assert stats["publisher"]["unknown"] >= 20 * 3   # unknown PT, and stray SSRCs never hijack the stream
        assert server.proc.poll() is None
    finally:
        await viewer.stop()
        await noisy_viewer.stop()
        await pub.stop()


async def test_burst_of_bad_offers_is_refused_and_server_stays_healthy(server):
    async with aiohttp.ClientSession() as http:
        async def one(i: int) -> int:
            # a school's classrooms at once (one address, within its burst): each its own identity, so that every
            # offer is parsed rather than refused by one identity's rate limit (tests/integration/test_request_limits.py)
            token = server.token("burst", "terminal", identity=f"class-{i}")
            body = "v=0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\n" + "a=x\r\n" * (i % 7)
            async with http.post(f"{server.base_url}/whip/burst", data=body,
                                 headers={"Content-Type": "application/sdp", "Authorization": f"Bearer {token}"}) as r:
                return r.status
        statuses = await asyncio.gather(*(one(i) for i in range(150)))
        assert set(statuses) == {400}, collections.Counter(statuses)
        async with http.get(f"{server.base_url}/healthz") as r:
            assert r.status == 200
        async with http.get(f"{server.base_url}/api/stats", params={"token": server.token("x", "admin")}) as r:
            assert (await r.json())["sessions"] == 0
