"""The origin's end of a link, between two in-process nodes with real aiortc peers on loopback: every layer once
on its own link SSRC whatever the edge serves, loss on the link repaired from the origin's cache, an edge
viewer's keyframe request carried to the publisher, sender reports carried for lip sync, a bad control message
counted and survived."""
from __future__ import annotations

from typing import Callable

from sfu.cascade.relay_in import RelayIn
from sfu.node import SfuNode
from sfu.rtp import rtcp_builder
from testkit.lossy import DropEvery, drop_incoming_datagrams
from testkit.node_peers import NodePeers, NodePublisher, NodeViewer, holes, relay_signal, until

ROOM = "r"


async def linked(nodes: Callable[..., SfuNode], peers: NodePeers,
                 viewers: int = 1) -> tuple[SfuNode, SfuNode, RelayIn, NodePublisher, list[NodeViewer]]:
    """An origin with the teacher publishing, an edge with `viewers` viewers of the room over one link, media
    flowing to each."""
    origin, edge = nodes(), nodes()
    relay = await edge.ensure_relay(ROOM, relay_signal(origin, ROOM))
    watching = [peers.viewer() for _ in range(viewers)]
    for viewer in watching:
        await viewer.play(edge, ROOM)
        await viewer.connected()
    await until(lambda: relay.state == "connected", 5, "the link up")
    pub = peers.publisher()
    await pub.publish(origin, ROOM)
    await until(lambda: all(len(v.of("video")) > 10 for v in watching), 5, "media on the edge")
    return origin, edge, relay, pub, watching


def link_streams(origin: SfuNode) -> dict[str, dict]:
    (link,) = origin.dump(ROOM)["rooms"][0]["relays"]
    return {s["kind"]: s for s in link["streams"]}


def link(origin: SfuNode) -> dict:
    (out,) = origin.dump(ROOM)["rooms"][0]["relays"]
    return out


async def test_each_layer_crosses_once_on_its_own_ssrc_with_its_sender_reports(nodes: Callable[..., SfuNode],
                                                                              peers: NodePeers):
    origin, edge, relay, pub, viewers = await linked(nodes, peers, viewers=3)
    published = {s["kind"]: s for s in origin.dump(ROOM)["rooms"][0]["publisher"]["streams"]}
    carried = link_streams(origin)
    assert set(carried) == {"audio", "video"} and link(origin)["edge"] == "edge"
    assert {s["ssrc"] for s in carried.values()}.isdisjoint(s["ssrc"] for s in published.values())
    (edge_feed,) = edge.dump(ROOM)["links_in"][0]["feeds"]
    assert {s["ssrc"] for s in edge_feed["streams"]} == {s["ssrc"] for s in carried.values()}
    for kind in ("audio", "video"):   # three viewers on the edge, each packet once on the link
        assert 0 < carried[kind]["packets"] <= published[kind]["packets"]
    await until(lambda: all(len(v.reported) >= 2 for v in viewers), 5, "sender reports at the edge's viewers")
    for v in viewers:
        assert {v.of("video")[0].ssrc, v.of("audio")[0].ssrc} <= v.reported


async def test_loss_on_the_link_is_repaired_from_the_origins_cache(nodes: Callable[..., SfuNode],
                                                                   peers: NodePeers):
    origin, edge, relay, pub, (viewer,) = await linked(nodes, peers)
    assert relay.pc is not None
    loss = DropEvery(8)
    drop_incoming_datagrams(relay.pc, loss)
    seen = len(viewer.of("video"))
    await until(lambda: loss.dropped >= 8 and len(viewer.of("video")) > seen + 40, 5, "media through the loss")
    await until(lambda: holes(viewer.of("video")[seen:]) == 0, 2, "every lost packet repaired")
    assert link_streams(origin)["video"]["repaired"] > 0


async def test_an_edge_viewers_keyframe_request_reaches_the_teacher(nodes: Callable[..., SfuNode],
                                                                   peers: NodePeers):
    origin, edge, relay, pub, (viewer,) = await linked(nodes, peers)
    await until(lambda: link(origin)["plis"] >= 1, 5, "the edge asking the origin once for its joiner")
    asked, plis = pub.keyframe_requests, link(origin)["plis"]
    assert viewer.send_rtcp(rtcp_builder.pli(1, viewer.of("video")[-1].ssrc))
    await until(lambda: link(origin)["plis"] > plis, 5, "the request over the link")
    await until(lambda: pub.keyframe_requests > asked, 5, "the request at the teacher")


async def test_a_bad_control_message_is_counted_and_the_link_goes_on(nodes: Callable[..., SfuNode],
                                                                     peers: NodePeers):
    origin, edge, relay, pub, (viewer,) = await linked(nodes, peers)
    assert relay.channel is not None
    relay.channel.send('{"type": "want", "slots": [3]}')
    await until(lambda: link(origin)["bad_messages"] == 1, 5, "the message refused")
    assert link(origin)["wants"] == ["camera"] and relay.state == "connected"
    seen = len(viewer.of("video"))
    await until(lambda: len(viewer.of("video")) > seen + 10, 5, "media after it")
