"""The edge's end of a link, between two in-process nodes with real aiortc peers on loopback: one link per room
whatever the number of viewers, the origin's refusal said to the viewer who needed it, the link kept up when
the origin drops it, given up when the room is placed here, and ended once the last viewer has gone."""
from __future__ import annotations

from typing import Callable

import pytest

from sfu.cascade.relay_in import RelayUnavailable
from sfu.node import SfuNode
from sfu.room.feed import Slot
from testkit.node_peers import NodePeers, relay_signal, until

ROOM = "r"


class CountedSignal:
    """The edge's way to the origin, counting the times it is used (each is a new link asked for)."""

    def __init__(self, origin: SfuNode) -> None:
        self.signal = relay_signal(origin, ROOM)
        self.calls = 0

    async def __call__(self, offer: str) -> tuple[str, str]:
        self.calls += 1
        return await self.signal(offer)


async def refused(offer: str) -> tuple[str, str]:
    raise RelayUnavailable("the origin is draining", 503)


def links_out(origin: SfuNode) -> list[dict]:
    rooms = origin.dump(ROOM)["rooms"]
    return rooms[0]["relays"] if rooms else []


async def test_one_link_carries_the_room_to_every_viewer_of_the_edge(nodes: Callable[..., SfuNode],
                                                                     peers: NodePeers):
    origin, edge = nodes(), nodes()
    signal = CountedSignal(origin)
    viewers = [peers.viewer() for _ in range(3)]
    for viewer in viewers:  # each viewer's request makes sure of the link first, as signaling does
        relay = await edge.ensure_relay(ROOM, signal)
        await viewer.play(edge, ROOM)
        await viewer.connected()
    await until(lambda: relay.state == "connected", 5, "the link up")
    await peers.publisher().publish(origin, ROOM)
    await until(lambda: all(len(v.of("video")) > 10 and v.of("audio") for v in viewers), 5, "media on the edge")
    assert signal.calls == 1 and edge.counts()["relays_in"] == 1 and origin.counts()["relays_out"] == 1
    assert edge.is_edge_for(ROOM) and edge.local_rooms() == set() and origin.local_rooms() == {ROOM}
    assert relay.origin == "origin" and relay.state == "connected"
    (link,) = edge.dump(ROOM)["links_in"]
    assert link["streams"] == 2 and link["feeds"][0]["role"] == "relay-in"


async def test_an_origin_that_refuses_is_said_to_the_viewer_and_asked_again_later(nodes: Callable[..., SfuNode],
                                                                                  peers: NodePeers):
    origin, edge = nodes(), nodes()
    with pytest.raises(RelayUnavailable, match="draining") as refusal:
        await edge.ensure_relay(ROOM, refused)
    assert refusal.value.status == 503
    assert not edge.is_edge_for(ROOM) and edge.counts()["relays_in"] == 0
    signal = CountedSignal(origin)
    await edge.ensure_relay(ROOM, signal)
    assert signal.calls == 1 and edge.is_edge_for(ROOM)


async def test_a_link_the_origin_drops_comes_back_and_its_viewers_go_on(nodes: Callable[..., SfuNode],
                                                                        peers: NodePeers):
    origin, edge = nodes(), nodes()
    signal = CountedSignal(origin)
    relay = await edge.ensure_relay(ROOM, signal)
    viewer = peers.viewer()
    viewer_id = await viewer.play(edge, ROOM)
    await viewer.connected()
    await peers.publisher().publish(origin, ROOM)
    await until(lambda: len(viewer.of("video")) > 10, 5, "media on the edge")
    (link,) = links_out(origin)
    await origin.end(ROOM, link["id"], "relay")   # the origin restarts it, say
    await until(lambda: relay.connects == 2, 5, "the edge asking the origin again")
    seen = len(viewer.of("video"))
    await until(lambda: len(viewer.of("video")) > seen + 10, 5, "media again, over the new link")
    assert signal.calls == 2 and relay.drops == 1 and edge.has_session(viewer_id)
    assert len({v.ssrc for v in viewer.of("video")}) == 1   # the viewer's session went on as it was


async def test_a_room_placed_on_the_edge_ends_its_link(nodes: Callable[..., SfuNode], peers: NodePeers):
    origin, edge = nodes(), nodes()
    relay = await edge.ensure_relay(ROOM, relay_signal(origin, ROOM))
    await until(lambda: relay.state == "connected" and links_out(origin), 5, "the link up")
    viewer = peers.viewer()
    await viewer.play(edge, ROOM)
    await viewer.connected()
    await peers.publisher().publish(edge, ROOM)   # the room is placed here now: its teacher publishes here
    assert relay.closed and not edge.is_edge_for(ROOM) and edge.local_rooms() == {ROOM}
    await until(lambda: not links_out(origin), 5, "the origin forgetting the link")
    await until(lambda: len(viewer.of("video")) > 10, 5, "the local teacher's media")


async def test_the_link_ends_once_the_edges_last_viewer_has_gone(nodes: Callable[..., SfuNode], peers: NodePeers):
    origin, edge = nodes(), nodes()
    edge.relay_linger_s = 0.1
    relay = await edge.ensure_relay(ROOM, relay_signal(origin, ROOM))
    viewer = peers.viewer()
    viewer_id = await viewer.play(edge, ROOM)
    await viewer.connected()
    await until(lambda: links_out(origin), 5, "the link up at the origin")
    await edge.end(ROOM, viewer_id, "viewer")
    await until(lambda: not edge.is_edge_for(ROOM), 5, "the link closed after the linger")
    assert relay.closed and edge.counts() == {"room_count": 0, "sessions": 0, "publishers": 0,
                                                           "viewers": 0, "relays_out": 0, "relays_in": 0, "ladders": 0}
    await until(lambda: origin.counts()["relays_out"] == 0, 5, "the origin forgetting the link")


async def test_the_edge_asks_for_the_slots_its_viewers_play(nodes: Callable[..., SfuNode], peers: NodePeers):
    origin, edge = nodes(), nodes()
    await edge.ensure_relay(ROOM, relay_signal(origin, ROOM))
    viewer = peers.viewer()
    await viewer.play(edge, ROOM, Slot("screen"))
    await viewer.connected()
    await until(lambda: links_out(origin) and links_out(origin)[0]["wants"] == ["camera", "screen"], 5,
                "the origin told the edge wants the screen")
    await peers.publisher().publish(origin, ROOM, Slot("screen"))
    await until(lambda: len(viewer.of("video")) > 10, 5, "the teacher's screen on the edge")


async def test_the_origin_sees_how_its_camera_reaches_the_classrooms_an_edge_serves(nodes: Callable[..., SfuNode],
                                                                                    peers: NodePeers):
    """A classroom served by an edge (a big lesson spread over workers) is in the origin's roster and reports."""
    origin, edge = nodes(), nodes()
    relay = await edge.ensure_relay(ROOM, relay_signal(origin, ROOM))
    far, near = peers.viewer(), peers.viewer()
    await far.play(edge, ROOM, owner="c-far")
    await near.play(origin, ROOM, owner="c-near")
    await until(lambda: relay.state == "connected", 5, "the link up")
    await peers.publisher().publish(origin, ROOM)
    await until(lambda: len(far.of("video")) > 10 and len(near.of("video")) > 10, 5, "media on both nodes")
    await until(lambda: origin.camera_reach(ROOM).get("c-far", None) is not None
                and origin.camera_reach(ROOM)["c-far"].packets > 10, 6, "the edge's report of its classroom")
    reach = origin.camera_reach(ROOM)
    assert set(reach) == {"c-far", "c-near"} and set(origin.viewer_links(ROOM)) == {"c-far", "c-near"}
    assert reach["c-far"].session == next(v["id"] for v in edge.dump(ROOM)["rooms"][0]["viewers"])
    assert origin.camera_forwarded(ROOM) and edge.camera_forwarded(ROOM)   # (the edge's stand-in publishes)
    await far.close()
    await until(lambda: "c-far" not in origin.camera_reach(ROOM), 10, "the gone classroom forgotten")
