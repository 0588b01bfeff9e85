"""Cascade, pure logic: the link's stream map and its reconciliation on the edge, viewer routing by region and
fullness, lesson-fact messages and relay tokens. No sockets, no sleeping."""
from __future__ import annotations

import pytest

from sfu.room.feed import LessonFacts, Slot
from sfu.cascade.relay_map import (RelayedStream, RelayMessageError, decode, encode_streams, encode_want, layer_id,
                           parse_slot, plan, streams_of, wants_of)
from signaling.cascade.cascade_policy import (EDGE, FULL, LINK_VIEWERS, LOCAL, REDIRECT, CascadeConfig,
                                              CascadeConfigError, EdgeInfo, other_work, route_viewer)
from signaling.cluster.placement import NodeInfo
from signaling.cascade.lesson_bus import decode as decode_lesson, encode as encode_lesson
from signaling.auth.tokens import TokenError, mint, mint_relay, verify, verify_relay

SECRET = "unit-secret-0123456789abcdef0123456789"


def video(ssrc: int, layer: str, slot: str = "camera", height: int = 0) -> RelayedStream:
    return RelayedStream(ssrc, slot, "video", "VP8", 90000, 96, layer, 0, height)


def audio(ssrc: int, slot: str = "camera") -> RelayedStream:
    return RelayedStream(ssrc, slot, "audio", "opus", 48000, 111)


# --- the stream map ------------------------------------------------------------------------------------------

def test_stream_map_round_trip_and_layer_ids() -> None:
    streams = [video(1, "q", height=180), video(2, "h"), video(3, "f"), audio(4), video(5, "main", "classroom:t 1")]
    msg = decode(encode_streams(streams))
    assert msg["type"] == "streams" and streams_of(msg) == streams
    assert layer_id("video", None) == "main" and layer_id("video", "ladder-0") == "ladder-0"
    assert layer_id("audio", None) is None
    assert parse_slot("classroom:t 1") == Slot("classroom", "t 1") and parse_slot("stage") == Slot("stage")
    assert wants_of(decode(encode_want(["stage", "camera", "stage"]))) == {"camera", "stage"}


@pytest.mark.parametrize("stream, reason", [
    ({"ssrc": 0}, "out of range"),
    ({"ssrc": 1 << 32}, "out of range"),
    ({"ssrc": True}, "integers"),
    ({"kind": "data"}, "unknown kind"),
    ({"codec": "AV9"}, "unknown kind"),
    ({"payload_type": 200}, "unknown kind"),
    ({"clock_rate": 1}, "clock rate"),
    ({"layer": None}, "name a layer"),
    ({"slot": "balcony"}, "unknown source"),
    ({"slot": "classroom:"}, "names its identity"),
])
def test_stream_map_refuses_bad_entries(stream: dict, reason: str) -> None:
    good = {"ssrc": 7, "slot": "camera", "kind": "video", "codec": "VP8", "clock_rate": 90000,
            "payload_type": 96, "layer": "h"}
    with pytest.raises(RelayMessageError, match=reason):
        streams_of({"type": "streams", "streams": [{**good, **stream}]})


def test_stream_map_refuses_malformed_messages() -> None:
    for text in ("not json", "[]", '{"type": "other"}', "x" * 70_000):
        with pytest.raises(RelayMessageError):
            decode(text)
    with pytest.raises(RelayMessageError, match="repeated"):
        streams_of({"streams": [encode_dict(video(1, "q")), encode_dict(video(1, "h"))]})
    with pytest.raises(RelayMessageError, match="at most"):
        streams_of({"streams": [encode_dict(video(i + 1, f"l{i}")) for i in range(65)]})
    with pytest.raises(RelayMessageError):
        wants_of({"slots": ["camera", 3]})


def encode_dict(s: RelayedStream) -> dict:
    import json
    return json.loads(encode_streams([s]))["streams"][0]


def test_plan_adds_new_streams_per_slot() -> None:
    changes = plan({}, [video(1, "q"), video(2, "h"), audio(3), video(4, "main", "screen")])
    assert [(c.slot, [s.ssrc for s in c.added], c.removed, c.rebuild) for c in changes] == [
        ("camera", [1, 2, 3], [], False), ("screen", [4], [], False)]


def test_plan_replaces_a_reconnected_publishers_layers_without_rebuild() -> None:
    current = {1: video(1, "q"), 2: video(2, "h"), 3: audio(3)}
    changes = plan(current, [video(11, "q"), video(12, "h"), audio(13)])  # new SSRCs, same layers
    assert len(changes) == 1
    c = changes[0]
    assert sorted(c.removed) == [1, 2, 3] and [s.ssrc for s in c.added] == [11, 12, 13] and not c.rebuild


def test_plan_rebuilds_when_a_layer_goes_for_good() -> None:
    current = {1: video(1, "q"), 2: video(2, "h"), 3: video(3, "f")}
    (c,) = plan(current, [video(1, "q"), video(2, "h")])   # the publisher stopped sending "f"
    assert c.removed == [3] and c.added == [] and c.rebuild


def test_plan_keeps_unchanged_streams_and_ignores_size_updates() -> None:
    current = {1: video(1, "q"), 2: audio(2)}
    assert plan(current, [video(1, "q", height=180), audio(2)]) == []
    assert plan(current, list(current.values())) == []


def test_plan_moves_a_stream_that_changed_slot() -> None:
    current = {5: video(5, "main", "classroom:t1")}
    changes = plan(current, [video(5, "main", "classroom:t2")])
    assert {(c.slot, tuple(s.ssrc for s in c.added), tuple(c.removed)) for c in changes} == {
        ("classroom:t1", (), (5,)), ("classroom:t2", (5,), ())}


def test_plan_drops_a_slot_that_is_no_longer_relayed() -> None:
    current = {1: video(1, "main", "screen"), 2: audio(2, "screen"), 3: video(3, "q")}
    (c,) = plan(current, [video(3, "q")])
    assert c.slot == "screen" and sorted(c.removed) == [1, 2] and c.rebuild


# --- viewer routing ------------------------------------------------------------------------------------------

def node(node_id: str, region: str = "default", viewers: int = 0, limit: int = 0, sessions: int = 0) -> EdgeInfo:
    return EdgeInfo(NodeInfo(node_id, f"http://{node_id}:1", sessions=sessions), region, viewers, limit)


def live(*nodes: EdgeInfo) -> dict[str, EdgeInfo]:
    return {n.node_id: n for n in nodes}


def test_the_origin_serves_its_viewers_until_it_is_full() -> None:
    a, b, c = node("a", "north", 3, 10), node("b", "north", 5), node("c", "south", 0)
    assert route_viewer(a, a, live(a, b, c)).action == LOCAL
    full = node("a", "north", 10, 10)
    r = route_viewer(full, full, live(full, b, c))
    assert (r.action, r.node.node_id) == (REDIRECT, "b")   # its own region first, even with more viewers
    r = route_viewer(full, full, live(full, node("b", "north", 5, 5), c))
    assert (r.action, r.node.node_id) == (REDIRECT, "c")   # b is full too: another region
    r = route_viewer(full, full, live(full))
    assert r.action == FULL and "no other node" in r.reason


def test_a_node_of_another_region_serves_as_an_edge() -> None:
    origin, edge = node("a", "central"), node("e", "east")
    r = route_viewer(edge, origin, live(origin, edge))
    assert r.action == EDGE and "region central" in r.reason


def test_a_node_of_the_same_region_redirects_unless_the_origin_is_full() -> None:
    origin, other = node("a", "x", 1, 10), node("b", "x")
    r = route_viewer(other, origin, live(origin, other))
    assert (r.action, r.node.node_id) == (REDIRECT, "a")
    full = node("a", "x", 10, 10)
    assert route_viewer(other, full, live(full, other)).action == EDGE


def test_a_full_edge_passes_the_viewer_on() -> None:
    origin, edge, spare = node("a", "central"), node("e", "east", 4, 4), node("f", "east", 1, 4)
    r = route_viewer(edge, origin, live(origin, edge, spare))
    assert (r.action, r.node.node_id) == (REDIRECT, "f")
    near_origin = node("a", "east")                             # same region, room there: go to the origin
    assert route_viewer(edge, near_origin, live(near_origin, edge)).node.node_id == "a"
    full_origin = node("a", "central", 9, 9)
    assert route_viewer(edge, full_origin, live(full_origin, edge)).action == FULL


def test_ties_break_by_fewest_viewers_then_load_then_id() -> None:
    full = node("a", "r", 2, 2)
    candidates = live(full, node("c", "r", 1), node("b", "r", 1), node("d", "r", 0, sessions=50))
    assert route_viewer(full, full, candidates).node.node_id == "d"
    candidates = live(full, node("c", "r", 1), node("b", "r", 1))
    assert route_viewer(full, full, candidates).node.node_id == "b"


def test_cascade_config_and_published_facts() -> None:
    assert CascadeConfig.build(None, None) == CascadeConfig("default", 0)
    assert CascadeConfig.build("cn-east_1", "200") == CascadeConfig("cn-east_1", 200)
    for region, limit, reason in (("bad region!", None, "--region"), ("r", "many", "whole number"),
                                  ("r", -1, "between")):
        with pytest.raises(CascadeConfigError, match=reason):
            CascadeConfig.build(region, limit)
    n = NodeInfo("a", "http://a:1")
    assert EdgeInfo.from_hash(n, node("a", "west", 3, 9).to_hash()) == EdgeInfo(n, "west", 3, 9)
    assert EdgeInfo.from_hash(n, {"region": "<script>", "viewers": "x"}) == EdgeInfo(n)
    linked = EdgeInfo(n, "w", 3, 0, 12.5, frozenset({"r1", "r-2"}))
    assert EdgeInfo.from_hash(n, linked.to_hash()) == linked
    assert EdgeInfo.from_hash(n, {"links": "ok,<bad>,,also.ok"}).links == {"ok", "also.ok"}
    assert EdgeInfo.from_hash(n, {"published_at": "1796000000.5"}).published_at == 1796000000.5
    assert EdgeInfo.from_hash(n, {"published_at": "inf"}).published_at == 0.0
    for bad in ("nan", "-1", "1e9", "x"):
        assert EdgeInfo.from_hash(n, {"other_work": bad}).other_work == 0.0
    assert CascadeConfig.build(None, None, spread=True).spread
    assert node("a", viewers=5, limit=0).full is False and node("a", viewers=5, limit=5).full


# --- one lesson spread over the workers of a machine ----------------------------------------------------------

def worker(node_id: str, viewers: int = 0, work: float = 0.0, limit: int = 0, region: str = "m",
           links: tuple[str, ...] = ()) -> EdgeInfo:
    return EdgeInfo(NodeInfo(node_id, f"http://{node_id}:1"), region, viewers, limit, work, frozenset(links))


def test_a_small_lesson_stays_on_its_origin() -> None:
    origin = worker("w0", 3, other_work(1, 0, 0, 0))            # the teacher's ingest and 3 viewers
    other = worker("w1")
    assert route_viewer(origin, origin, live(origin, other), spread=True).action == LOCAL
    r = route_viewer(other, origin, live(origin, other), spread=True)   # no link on w1 yet: not worth one
    assert (r.action, r.node.node_id) == (REDIRECT, "w0")


def test_a_big_lesson_spreads_by_load_counting_the_origins_own_work() -> None:
    origin = worker("w0", 60, other_work(1, 1, 1, 0))           # ingest, the ladder, the link out
    edge = worker("w1", 175, other_work(0, 0, 0, 1), links=("big",))   # the link in: 185 against 193
    assert origin.other_work > edge.other_work + 100
    r = route_viewer(origin, origin, live(origin, edge), spread=True, room="big")
    assert (r.action, r.node.node_id) == (REDIRECT, "w1")       # fewer viewers, but the heavier node
    assert route_viewer(edge, origin, live(origin, edge), spread=True, room="big").action == EDGE
    r = route_viewer(origin, origin, live(origin, edge), spread=True, room="other")
    assert r.action == LOCAL                        # w1 has no link for that room: with a new one's cost, 198
    light = worker("w1", 40 - int(LINK_VIEWERS))
    r = route_viewer(light, worker("w0", 60), live(worker("w0", 60), light), spread=True)
    assert r.action == EDGE and "spread" in r.reason           # lighter even with a new link's cost


def test_spread_counts_viewers_sent_but_not_yet_published_and_skips_full_or_draining_nodes() -> None:
    origin, a, b = worker("w0", 50, 10), worker("w1", 30, 10), worker("w2", 31, 10)
    nodes = live(origin, a, b)
    assert route_viewer(origin, origin, nodes, spread=True).node.node_id == "w1"
    assert route_viewer(origin, origin, nodes, spread=True, pending={"w1": 5}).node.node_id == "w2"
    full = worker("w0", 50, 10, limit=50)
    r = route_viewer(full, full, live(full, worker("w1", 80, 10)), spread=True)
    assert (r.action, r.node.node_id) == (REDIRECT, "w1")       # full: passes it on even to a heavier node
    draining = EdgeInfo(NodeInfo("w1", "http://w1:1", draining=True), "m", 0)
    assert route_viewer(origin, origin, live(origin, draining), spread=True).action == LOCAL
    r = route_viewer(full, full, live(full, draining), spread=True)
    assert r.action == FULL and "region m" in r.reason


def test_spread_stays_within_the_region_and_is_off_by_default() -> None:
    origin, far = worker("w0", 90, 10, region="central"), worker("e1", 0, region="east")
    assert route_viewer(origin, origin, live(origin, far), spread=True).action == LOCAL
    assert route_viewer(far, origin, live(origin, far), spread=True).action == EDGE   # the region rule still
    near = worker("w1", 0, region="central")
    assert route_viewer(origin, origin, live(origin, near)).action == LOCAL           # without spread


# --- lesson facts and relay tokens ---------------------------------------------------------------------------

def test_lesson_facts_round_trip_and_refusals() -> None:
    facts = LessonFacts(on_stage="t1", open_mics=frozenset({"t1", "t3"}))
    assert decode_lesson(encode_lesson("physics", facts, "a")) == ("physics", facts, frozenset())
    assert decode_lesson(encode_lesson("physics", facts, "a", frozenset({"t9"}))) == ("physics", facts, {"t9"})
    assert decode_lesson(encode_lesson("physics", None, "a")) == ("physics", None, frozenset())
    for bad in ("[]", '{"lesson": null}', '{"room": "r", "lesson": 3}', '{"room": "r", "lesson": {"on_stage": 1}}',
                '{"room": "r", "lesson": {"open_mics": "t1"}}', '{"room": "r", "lesson": {"removed": [1]}}'):
        with pytest.raises(ValueError):
            decode_lesson(bad)


def test_relay_tokens_are_apart_from_access_tokens() -> None:
    token = mint_relay(SECRET, "physics", "edge-1", now=None)
    assert verify_relay(SECRET, token) == ("edge-1", "physics")
    with pytest.raises(TokenError, match="audience"):
        verify(SECRET, token)                                   # not an access token
    with pytest.raises(TokenError, match="aud"):
        verify_relay(SECRET, mint(SECRET, "physics", "admin"))  # an access token is no relay token
    with pytest.raises(TokenError, match="expired"):
        verify_relay(SECRET, mint_relay(SECRET, "physics", "e", ttl=60, now=1_000_000))
    with pytest.raises(TokenError):
        verify_relay("another-secret-0123456789abcdef012345", token)
