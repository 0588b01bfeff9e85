"""Publisher and viewer sessions with real aiortc peers on loopback: what the answer says (bitrate hint, simulcast,
announced address), media in and out on the viewer's own stream, and the viewer's RTCP (NACK, PLI) answered;
a stage viewer follows the stage without renegotiating."""
from __future__ import annotations

import re
from typing import Callable

from sfu.node import SfuNode
from sfu.room.feed import LessonFacts, Slot
from sfu.rtp import rtcp_builder
from sfu.rtp.rtp_header import RtpView
from sfu.webrtc import aiortc_adapter as adapter
from sfu.webrtc.sessions import ViewerSession
from testkit.node_peers import NodePeers, until

ROOM = "r"
SIMULCAST = ("a=extmap:10 urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id\r\n"
             "a=rid:q send\r\na=rid:h send\r\na=simulcast:send q;h\r\n")


def continuous(packets: list[RtpView]) -> bool:
    return all((b.seq - a.seq) & 0xFFFF == 1 for a, b in zip(packets, packets[1:]))


def viewer_session(node: SfuNode, session_id: str) -> ViewerSession:
    session = node.session(ROOM, session_id, "viewer")
    assert isinstance(session, ViewerSession)
    return session


async def test_a_publishers_media_is_counted_and_its_answer_starts_chromium_high(node: SfuNode, peers: NodePeers):
    pub = peers.publisher()
    session_id = await pub.publish(node, ROOM, owner="teacher")
    assert "x-google-start-bitrate=" in pub.answer.split("m=audio")[0]
    session = node.session(ROOM, session_id, "publisher")

    def streams() -> dict[str, dict]:
        return {s["kind"]: s for s in session.dump()["streams"]}
    await until(lambda: len(streams()) == 2 and all(s["packets"] > 10 for s in streams().values()), 5,
                "both streams counted")
    assert (streams()["video"]["width"], streams()["video"]["height"]) == (320, 180)   # read off its keyframe
    assert streams()["video"]["keyframes"] >= 1 and streams()["video"]["lost"] == 0
    dump = session.dump()
    assert (dump["role"], dump["source"], dump["owner"], dump["state"]) == ("publisher", "camera", "teacher",
                                                                            "connected")


async def test_a_simulcast_offer_is_answered_with_its_layers_only_when_they_can_be_told_apart(node: SfuNode):
    pc = adapter.new_peer_connection()
    pc.addTransceiver("video", direction="sendonly")
    try:
        await pc.setLocalDescription(await pc.createOffer())
        offer = pc.localDescription.sdp.replace("a=mid:0\r\n", "a=mid:0\r\n" + SIMULCAST, 1)
        _, answer = await node.publish(ROOM, offer)
        assert "a=rid:q recv\r\na=rid:h recv\r\na=simulcast:recv q;h\r\n" in answer
        _, answer = await node.publish("other", offer.replace(SIMULCAST.split("\r\n")[0] + "\r\n", ""))
        assert "simulcast" not in answer   # without the RID extension the layers could not be told apart
    finally:
        await pc.close()


async def test_an_answer_announces_the_public_address(nodes: Callable[..., SfuNode]):
    node = nodes("203.0.113.9")
    pc = adapter.new_peer_connection()
    pc.addTransceiver("video", direction="recvonly")
    try:
        await pc.setLocalDescription(await pc.createOffer())
        _, answer = await node.play(ROOM, pc.localDescription.sdp)
        hosts = re.findall(r"^a=candidate:\S+ \d+ \S+ \d+ (\S+) \d+ typ host", answer, re.M)
        assert hosts and set(hosts) == {"203.0.113.9"}
    finally:
        await pc.close()


async def test_a_viewer_gets_the_media_on_its_own_streams_numbered_without_gaps(node: SfuNode, peers: NodePeers):
    pub, viewer = await peers.watching(node, ROOM, "t1")
    session_id = viewer.session_id
    await until(lambda: len(viewer.of("video")) > 15 and len(viewer.of("audio")) > 5, 5, "video and audio")
    video, audio = viewer.of("video"), viewer.of("audio")
    consumers = {c["kind"]: c for c in viewer_session(node, session_id).dump()["consumers"]}
    assert {v.ssrc for v in video} == {consumers["video"]["ssrc"]}
    assert {a.ssrc for a in audio} == {consumers["audio"]["ssrc"]}
    assert continuous(video) and continuous(audio)
    assert pub.keyframe_requests >= 1   # the viewer's transport came up: a keyframe for it was asked


async def test_a_viewers_nack_is_answered_from_the_cache_and_its_pli_reaches_the_publisher(node: SfuNode,
                                                                                           peers: NodePeers):
    pub, viewer = await peers.watching(node, ROOM)
    session_id = viewer.session_id
    await until(lambda: len(viewer.of("video")) > 10, 5, "video")
    lost = viewer.of("video")[-3]
    assert viewer.send_rtcp(rtcp_builder.nack(1, lost.ssrc, [lost.seq]))
    await until(lambda: viewer.of("rtx"), 5, "the retransmission")
    (rtx,) = viewer.of("rtx")
    assert int.from_bytes(rtx.data[rtx.payload_start:rtx.payload_start + 2], "big") == lost.seq   # its OSN
    assert rtx.data[rtx.payload_start + 2:rtx.payload_end] == lost.data[lost.payload_start:lost.payload_end]
    asked = pub.keyframe_requests
    assert viewer.send_rtcp(rtcp_builder.pli(1, lost.ssrc))
    await until(lambda: pub.keyframe_requests > asked, 5, "the viewer's keyframe request at the publisher")
    (video,) = [c for c in viewer_session(node, session_id).dump()["consumers"] if c["kind"] == "video"]
    assert (video["nacks"], video["rtx_packets"], video["plis"]) == (1, 1, 1)


async def test_a_stage_viewer_follows_the_stage_on_the_same_stream(node: SfuNode, peers: NodePeers):
    viewer = peers.viewer()
    session_id = await viewer.play(node, ROOM, Slot("stage"), owner="teacher")
    await viewer.connected()
    mics = frozenset({"t1", "t2"})
    node.apply_lesson(ROOM, LessonFacts(on_stage="t1", open_mics=mics))
    await peers.publisher(("video",)).publish(node, ROOM, Slot("classroom", "t1"), owner="t1")
    await peers.publisher().publish(node, ROOM, Slot("classroom", "t2"), owner="t2")
    await until(lambda: len(viewer.of("video")) > 15, 5, "the first classroom's video")
    assert viewer.of("audio") == []   # t1 sends no audio
    repoints = viewer_session(node, session_id).dump()["repoints"]
    seen = len(viewer.of("video"))
    node.apply_lesson(ROOM, LessonFacts(on_stage="t2", open_mics=mics))
    await until(lambda: viewer.of("audio") and len(viewer.of("video")) > seen + 15, 5, "the second classroom")
    video = viewer.of("video")
    assert len({v.ssrc for v in video}) == 1 and continuous(video)   # no renegotiation, numbering unbroken
    assert viewer_session(node, session_id).dump()["repoints"] == repoints + 1


def offering_red(offer: str, fmtp: str) -> str:
    """The offer's audio section with Chromium's `red/48000/2` (payload type 63) after Opus (aiortc's 96)."""
    head, audio = offer.split("m=audio", 1)
    first, rest = audio.split("\r\n", 1)
    rest = rest.replace("a=rtpmap:96 opus/48000/2\r\n",
                        f"a=rtpmap:96 opus/48000/2\r\na=rtpmap:63 red/48000/2\r\na=fmtp:63 {fmtp}\r\n", 1)
    return f"{head}m=audio{first} 63\r\n{rest}"


def audio_formats(answer: str) -> list[str]:
    return re.search(r"^m=audio \S+ \S+ ([\d ]+)\r$", answer, re.M).group(1).split()


async def test_red_is_preferred_in_a_publishers_answer_and_offered_second_to_a_viewer(node: SfuNode):
    pc = adapter.new_peer_connection()
    pc.addTransceiver("audio", direction="sendonly")
    try:
        await pc.setLocalDescription(await pc.createOffer())
        offer = pc.localDescription.sdp
        session_id, answer = await node.publish(ROOM, offering_red(offer, "96/96"))
        assert audio_formats(answer)[:2] == ["63", "96"] and "a=fmtp:63 96/96\r\n" in answer   # Chromium sends RED
        ingest = node.session(ROOM, session_id, "publisher").ingest
        assert [(u.red_pt, u.opus_pt) for u in ingest.red_unwraps] == [(63, 96)] and 63 not in ingest.payloads
        _, answer = await node.publish("other", offering_red(offer, "0/0"))   # redundancy of another codec
        assert "63" not in audio_formats(answer)
        viewer_offer = offering_red(offer.replace("a=sendonly", "a=recvonly"), "96/96")
        _, answer = await node.play("third", viewer_offer)
        assert audio_formats(answer)[:1] == ["96"] and "63" in audio_formats(answer)   # we choose per packet
    finally:
        await pc.close()
