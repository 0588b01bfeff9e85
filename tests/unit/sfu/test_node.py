"""SfuNode, the facade signaling and the recorder use, with real aiortc peers on loopback: sessions made from
offers, found by room and role, ended and forgotten; a room kept while anyone uses it; the lesson followed
(microphones); sinks fed; each identity's downlink as the roster shows it."""
from __future__ import annotations

import asyncio

import pytest

from sfu.errors import BadOffer, RoomBusy, SessionNotFound
from sfu.ingest.inbound import IngressPacket, InboundStream
from sfu.node import SfuNode
from sfu.room.feed import LessonFacts, Slot
from sfu.rtp import rtcp_builder
from testkit.node_peers import NodePeers, until

ROOM = "r"


class Sink:
    """The recorder's side of `attach_sink`: what arrives, and from which stream."""

    def __init__(self) -> None:
        self.packets: list[IngressPacket] = []
        self.sources: list[InboundStream] = []

    def on_rtp(self, pkt: IngressPacket, source: InboundStream, now: float) -> None:
        self.packets.append(pkt)
        if source not in self.sources:
            self.sources.append(source)


async def test_a_viewer_gets_the_publishers_media_and_the_node_counts_both(node: SfuNode, peers: NodePeers):
    pub, viewer = await peers.watching(node, ROOM, "t1", "teacher")
    pub_id, viewer_id = pub.session_id, viewer.session_id
    await until(lambda: viewer.of("audio"), 5, "audio at the viewer")
    assert node.counts() == {"room_count": 1, "sessions": 2, "publishers": 1, "viewers": 1, "relays_out": 0,
                             "relays_in": 0, "ladders": 0}
    assert node.room_sessions(ROOM) == 2 and node.local_rooms() == {ROOM} and node.busy_rooms() == {ROOM}
    assert node.has_session(pub_id) and node.has_session(viewer_id) and not node.is_edge_for(ROOM)
    assert node.session(ROOM, viewer_id, "viewer").owner == "t1"
    assert node.forwarded_packets() >= len(viewer.packets)
    (room,) = node.dump(ROOM)["rooms"]
    assert room["room"] == ROOM and [v["id"] for v in room["viewers"]] == [viewer_id]
    assert node.dump("other")["rooms"] == []


async def test_a_session_is_found_only_in_its_room_and_role(node: SfuNode, peers: NodePeers):
    pub_id = await peers.publisher().publish(node, ROOM)
    assert node.session(ROOM, pub_id, "publisher").id == pub_id
    for room, role, session_id in ((ROOM, "viewer", pub_id), ("other", "publisher", pub_id),
                                   (ROOM, "publisher", "nope")):
        with pytest.raises(SessionNotFound):
            node.session(room, session_id, role)
    with pytest.raises(SessionNotFound):
        await node.end(ROOM, pub_id, "viewer")
    assert node.has_session(pub_id)


async def test_ended_sessions_are_forgotten_and_the_empty_room_dropped(node: SfuNode, peers: NodePeers):
    pub, viewer = await peers.watching(node, ROOM)
    pub_id, viewer_id = pub.session_id, viewer.session_id
    await node.end(ROOM, viewer_id, "viewer")
    assert not node.has_session(viewer_id) and node.room_sessions(ROOM) == 1
    await until(lambda: viewer.pc.connectionState == "closed", 5, "the viewer's peer told the session ended")
    await node.end(ROOM, pub_id, "publisher")
    assert node.counts()["sessions"] == 0 and node.counts()["room_count"] == 0
    assert node.local_rooms() == set() and node.busy_rooms() == set() and node.room_sessions(ROOM) == 0


async def test_a_peer_that_hangs_up_is_closed_and_forgotten(node: SfuNode, peers: NodePeers):
    pub, viewer = await peers.watching(node, ROOM)
    pub_id, viewer_id = pub.session_id, viewer.session_id
    await viewer.close()
    await until(lambda: not node.has_session(viewer_id), 5, "the node forgetting the viewer")
    await pub.close()
    await until(lambda: not node.has_session(pub_id), 5, "the node forgetting the publisher")
    assert node.counts()["room_count"] == 0


async def test_a_second_teacher_camera_is_refused_but_a_classroom_replaces_its_own(node: SfuNode,
                                                                                      peers: NodePeers):
    first = await peers.publisher().publish(node, ROOM, owner="teacher")
    with pytest.raises(RoomBusy):
        await peers.publisher().publish(node, ROOM, owner="teacher")
    assert node.counts()["publishers"] == 1 and node.has_session(first)
    t1 = Slot("classroom", "t1")
    viewer = peers.viewer()
    await viewer.play(node, ROOM, t1)
    await viewer.connected()
    old = await peers.publisher().publish(node, ROOM, t1, owner="t1")
    new = await peers.publisher().publish(node, ROOM, t1, owner="t1")  # the terminal reloaded its page
    assert not node.has_session(old) and node.session(ROOM, new, "publisher").owner == "t1"
    await until(lambda: viewer.of("video"), 5, "the new classroom session's video")


async def test_an_offer_that_cannot_be_answered_leaves_nothing_behind(node: SfuNode, peers: NodePeers):
    with pytest.raises(BadOffer, match="v=0"):
        await node.publish(ROOM, "hello")
    viewer_offer = peers.viewer()   # recvonly: nothing to publish
    await viewer_offer.pc.setLocalDescription(await viewer_offer.pc.createOffer())
    with pytest.raises(BadOffer, match="sends no media"):
        await node.publish(ROOM, viewer_offer.pc.localDescription.sdp)
    publisher_offer = peers.publisher()   # sendonly: nothing to play
    await publisher_offer.pc.setLocalDescription(await publisher_offer.pc.createOffer())
    with pytest.raises(BadOffer, match="receives no media"):
        await node.play(ROOM, publisher_offer.pc.localDescription.sdp)
    assert node.counts()["sessions"] == 0 and node.counts()["room_count"] == 0
    await peers.publisher().publish(node, ROOM)   # the camera slot was given back
    assert node.counts()["publishers"] == 1


async def test_a_removed_participant_and_the_lessons_end_close_the_right_sessions(node: SfuNode,
                                                                                    peers: NodePeers):
    teacher = await peers.publisher().publish(node, ROOM, owner="teacher")
    t1_camera = await peers.publisher().publish(node, ROOM, Slot("classroom", "t1"), owner="t1")
    t1_view = await peers.viewer().play(node, ROOM, owner="t1")
    t2_view = await peers.viewer().play(node, ROOM, owner="t2")
    assert await node.end_owner(ROOM, "t1") == 2
    assert not node.has_session(t1_camera) and not node.has_session(t1_view)
    assert node.has_session(teacher) and node.has_session(t2_view)
    assert await node.end_publishing(ROOM) == 1
    assert not node.has_session(teacher) and node.has_session(t2_view)   # viewers wait for the next lesson
    assert await node.end_rooms({"other"}) == 0 and await node.end_rooms({ROOM}) == 1
    assert node.counts()["sessions"] == 0


async def test_an_identitys_playback_sessions_oldest_first(node: SfuNode, peers: NodePeers):
    first = await peers.viewer().play(node, ROOM, owner="t1")
    await peers.viewer().play(node, ROOM, Slot("screen"), owner="t1")
    await peers.viewer().play(node, ROOM, owner="t2")
    second = await peers.viewer().play(node, ROOM, owner="t1")
    assert [s.id for s in node.playback_sessions(ROOM, "t1", Slot("camera"))] == [first, second]
    await node.end(ROOM, first, "viewer")
    assert [s.id for s in node.playback_sessions(ROOM, "t1", Slot("camera"))] == [second]


async def test_a_closed_microphone_is_dropped_until_the_lesson_opens_it(node: SfuNode, peers: NodePeers):
    node.lesson = lambda room: LessonFacts(open_mics=frozenset())   # asked when the room is made
    viewer = peers.viewer()
    await viewer.play(node, ROOM, Slot("classroom", "t1"), owner="teacher")
    await viewer.connected()
    await peers.publisher().publish(node, ROOM, Slot("classroom", "t1"), owner="t1")
    await until(lambda: len(viewer.of("video")) > 10, 5, "the classroom's video")
    assert viewer.of("audio") == []
    node.apply_lesson(ROOM, LessonFacts(open_mics=frozenset({"t1"})))
    await until(lambda: viewer.of("audio"), 5, "the classroom's audio once its microphone is open")
    node.apply_lesson(ROOM, LessonFacts(open_mics=frozenset()))
    await asyncio.sleep(0.1)   # what was on its way
    heard, seen = len(viewer.of("audio")), len(viewer.of("video"))
    await until(lambda: len(viewer.of("video")) > seen + 15, 5, "more of the classroom's video")
    assert len(viewer.of("audio")) == heard


async def test_a_sink_keeps_the_room_gets_the_teachers_camera_and_asks_for_keyframes(node: SfuNode,
                                                                                       peers: NodePeers):
    sink = Sink()
    node.attach_sink(ROOM, "video", sink)
    assert node.busy_rooms() == {ROOM} and node.counts()["room_count"] == 1   # waiting for the teacher
    pub = peers.publisher()
    pub_id = await pub.publish(node, ROOM)
    await until(lambda: sink.packets, 5, "the teacher's video at the sink")
    assert all(s.kind == "video" for s in sink.sources) and sink.packets[0].keyframe
    asked = pub.keyframe_requests
    node.request_keyframe(ROOM, "video", sink.sources[-1])
    await until(lambda: pub.keyframe_requests > asked, 5, "a keyframe request at the publisher")
    with pytest.raises(ValueError):
        node.request_keyframe(ROOM, "video", sink.sources[-1], source="stage")
    await node.end(ROOM, pub_id, "publisher")
    assert node.busy_rooms() == {ROOM}
    node.detach_sink(ROOM, "video", sink)
    assert node.busy_rooms() == set() and node.counts()["room_count"] == 0


async def test_an_identitys_downlink_as_its_receiver_reports_and_estimate_say(node: SfuNode, peers: NodePeers):
    viewer = peers.viewer()
    await viewer.play(node, ROOM, owner="t1")
    await peers.viewer().play(node, ROOM, Slot("screen"), owner="t2")   # not the main picture: not reported
    await viewer.connected()
    await peers.publisher().publish(node, ROOM)
    await until(lambda: viewer.of("video"), 5, "video at the viewer")
    ssrc = viewer.of("video")[-1].ssrc
    block = rtcp_builder.report_block(ssrc, 0.25, 40, viewer.of("video")[-1].seq, 0, 0, 0)
    assert viewer.send_rtcp(rtcp_builder.receiver_report(1, [block]) + rtcp_builder.remb(1, 800_000, [ssrc]))
    await until(lambda: node.viewer_links(ROOM).get("t1", {}).get("loss"), 5, "the report read")
    assert node.viewer_links(ROOM) == {"t1": {"loss": 0.25, "rtt": None, "bitrate": 800_000.0}}
    assert node.viewer_links("other") == {}
