"""Real aiortc peers through `liveclass serve`: fan-out, keyframes for joiners, loss repair, teacher return."""
from __future__ import annotations

import asyncio
import time

import aiohttp

from sfu.webrtc.aiortc_adapter import negotiated_codecs
from testkit.lossy import DropEvery, drop_incoming, drop_outgoing
from testkit.peers import WhepViewer, WhipPublisher


async def room_stats(server, room: str) -> dict:
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{server.base_url}/api/stats", params={"room": room,
                                                                   "token": server.token(room, "admin")}) as r:
            assert r.status == 200
            data = await r.json()
    return data["rooms"][0]


async def wait_for(cond, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


async def test_twenty_viewers_each_get_99_percent_of_packets(server, clip):
    pub = WhipPublisher(server.base_url, "fan", server.token("fan", "teacher"), clip)
    await pub.start()
    await pub.connected()
    viewers = [WhepViewer(server.base_url, "fan", server.token("fan", "student"), count_only=True)
               for _ in range(19)]
    viewers.append(WhepViewer(server.base_url, "fan", server.token("fan", "student")))  # one decodes
    try:
        await asyncio.gather(*(v.start() for v in viewers))
        await wait_for(lambda: all(v.first_packet_at for v in viewers[:-1]) and viewers[-1].frames > 0, 15,
                       "every viewer to receive media")
        before = await room_stats(server, "fan")
        snap = [v.distinct_packets() for v in viewers[:-1]]
        await asyncio.sleep(10)
        after = await room_stats(server, "fan")
        got = [v.distinct_packets() - s for v, s in zip(viewers[:-1], snap)]
        sent = sum(s["packets"] for s in after["publisher"]["streams"]) - \
            sum(s["packets"] for s in before["publisher"]["streams"])
        assert sent > 1000, f"publisher sent only {sent} packets in 10 s"
        worst = min(got)
        assert worst >= 0.99 * sent, f"worst viewer got {worst} of {sent} packets ({got})"
        decoder = viewers[-1]
        assert decoder.frames >= 250 and decoder.frame_sizes[-1] == (640, 360)
    finally:
        await asyncio.gather(*(v.stop() for v in viewers), return_exceptions=True)
        await pub.stop()


async def test_late_viewer_gets_a_keyframe_and_teacher_can_return(server, clip):
    token = server.token("back", "teacher")
    pub = WhipPublisher(server.base_url, "back", token, clip)
    await pub.start()
    await pub.connected()
    await asyncio.sleep(1.5)
    viewer = WhepViewer(server.base_url, "back", server.token("back", "terminal"))
    try:
        await viewer.start()
        await wait_for(lambda: viewer.frames > 0, 5, "first frame")
        # the pre-encoded clip has a keyframe each second and cannot answer PLI: first frame ≤ 1 s + join
        assert viewer.first_frame_at - viewer.started_at < 2.0
        await pub.stop()
        frames_at_leave = viewer.frames
        await asyncio.sleep(1.0)
        assert viewer.frames - frames_at_leave < 10          # nothing arrives while the teacher is away
        pub = WhipPublisher(server.base_url, "back", token, clip)  # teacher comes back: new connection
        await pub.start()
        await pub.connected()
        resumed = viewer.frames
        await wait_for(lambda: viewer.frames > resumed + 30, 6, "frames after the teacher returned")
        stats = await room_stats(server, "back")
        video = next(c for c in stats["viewers"][0]["consumers"] if c["kind"] == "video")
        assert video["switches"] == 2                          # same viewer session, two sources
    finally:
        await viewer.stop()
        await pub.stop()


async def test_loss_on_ingest_and_egress_is_repaired_without_freezing(server, clip):
    pub = WhipPublisher(server.base_url, "lossy", server.token("lossy", "teacher"), clip, audio=False)
    await pub.start()
    rtx_pt = next(c.payloadType for t in pub.pc.getTransceivers() for c in negotiated_codecs(t)
                  if c.mimeType.lower() == "video/rtx")
    ingest_loss = DropEvery(25, skip_payload_types=(rtx_pt,))       # 4 % of the teacher's packets
    drop_outgoing(pub.pc, ingest_loss)
    await pub.connected()
    viewer = WhepViewer(server.base_url, "lossy", server.token("lossy", "terminal"))
    await viewer.start()
    viewer_rtx = next(c.payloadType for t in viewer.pc.getTransceivers() for c in negotiated_codecs(t)
                      if c.mimeType.lower() == "video/rtx")
    egress_loss = DropEvery(20, skip_payload_types=(viewer_rtx,))   # and 5 % more on the way to the class
    drop_incoming(viewer.pc, egress_loss)
    frame_times: list[float] = []
    try:
        await wait_for(lambda: viewer.frames > 0, 5, "first frame")
        start_frames = viewer.frames
        t0 = time.monotonic()
        last = viewer.frames
        while time.monotonic() - t0 < 8:
            await asyncio.sleep(0.02)
            if viewer.frames != last:
                last = viewer.frames
                frame_times.append(time.monotonic())
        fps = (viewer.frames - start_frames) / 8
        gaps = [b - a for a, b in zip(frame_times, frame_times[1:])]
        stats = await room_stats(server, "lossy")
        stream = stats["publisher"]["streams"][0]
        consumer = stats["viewers"][0]["consumers"][0]
        print(f"ingest dropped {ingest_loss.dropped}, egress dropped {egress_loss.dropped}, {stream}, {consumer}, fps={fps:.1f}, max gap={max(gaps):.3f}")
        assert ingest_loss.dropped > 20 and egress_loss.dropped > 20
        assert stream["nack_recovered"] >= 0.8 * ingest_loss.dropped, stream
        assert consumer["rtx_packets"] >= 0.8 * egress_loss.dropped, consumer
        assert fps > 25, f"only {fps:.1f} fps decoded under repaired loss"
        assert max(gaps) < 0.5, f"video froze for {max(gaps):.2f} s"
    finally:
        await viewer.stop()
        await pub.stop()


async def test_h264_publisher_reaches_viewers_that_offer_h264(server, h264_clip):
    pub = WhipPublisher(server.base_url, "avc", server.token("avc", "teacher"), h264_clip, audio=False,
                        video_codec="video/H264")
    await pub.start()
    await pub.connected()
    viewer = WhepViewer(server.base_url, "avc", server.token("avc", "terminal"))
    try:
        await viewer.start()
        await wait_for(lambda: viewer.frames >= 60, 10, "60 decoded H.264 frames")
        assert viewer.frame_sizes[-1] == (640, 360)
        stats = await room_stats(server, "avc")
        assert stats["tracks"]["video"]["codec"] == "H264"
    finally:
        await viewer.stop()
        await pub.stop()


async def test_sender_reports_keep_audio_and_video_in_sync(server, clip):
    """The SFU's own sender reports map each viewer's rewritten timestamps to the teacher's clock: audio and
    video captured together are presented together (offset ≤ 40 ms)."""
    pub = WhipPublisher(server.base_url, "sync", server.token("sync", "teacher"), clip)
    await pub.start()
    await pub.connected()
    viewer = WhepViewer(server.base_url, "sync", server.token("sync", "terminal"), count_only=True)
    try:
        await viewer.start()
        await wait_for(lambda: viewer.sync_offset("audio") is not None and viewer.sync_offset("video") is not None,
                       10, "sender reports for audio and video")
        await asyncio.sleep(4)
        audio, video = viewer.sync_offset("audio"), viewer.sync_offset("video")
        print(f"sync offsets audio={audio * 1000:.1f} ms video={video * 1000:.1f} ms")
        assert abs(audio) < 0.2 and abs(video) < 0.2, (audio, video)   # same machine: transit is small
        assert abs(audio - video) <= 0.040, f"A/V offset {1000 * (audio - video):.1f} ms"
    finally:
        await viewer.stop()
        await pub.stop()
