"""Cluster mode, pure logic: configuration checks, node records, placement decisions."""
from __future__ import annotations

import pytest

from signaling.cluster.placement import (ClusterConfig, ClusterConfigError, NodeInfo, NoLiveNode, choose_node,
                               config_from_options, placement_for)


def test_config_defaults_and_normalisation() -> None:
    c = config_from_options("redis://127.0.0.1:6379/0", None, None, None, "0.0.0.0", 8081, "host.example")
    assert c is not None
    assert (c.node_id, c.advertise_url, c.forward) == ("host.example-8081", "http://127.0.0.1:8081", "proxy")
    assert c.client_url == c.advertise_url and c.public_url == ""
    c = config_from_options("redis://r", "n1", "https://edge.example:8443/", "proxy", "0.0.0.0", 1, "h")
    assert (c.advertise_url, c.forward) == ("https://edge.example:8443", "proxy")
    assert config_from_options(None, None, None, None, "127.0.0.1", 8080, "h") is None


@pytest.mark.parametrize("args, reason", [
    (("http://r", "n", "http://a:1"), "--redis must be"),
    (("redis://r", "bad id!", "http://a:1"), "--node-id must be"),
    (("redis://r", "n", "ftp://a"), "--advertise-url must be"),
    (("redis://r", "n", "http://a:1/path"), "without path"),
])
def test_config_rejects_bad_values(args: tuple[str, str, str], reason: str) -> None:
    with pytest.raises(ClusterConfigError, match=reason):
        ClusterConfig.build(*args)


def test_https_nodes_and_a_public_url_behind_a_front() -> None:
    c = config_from_options("redis://r", "n1", None, None, "10.0.0.5", 8443, "h", scheme="https",
                            public_url="https://class.example.cn/")
    assert c.advertise_url == "https://10.0.0.5:8443"          # what the other nodes use
    assert c.client_url == "https://class.example.cn"          # what pages and redirected clients use
    same = config_from_options("redis://r", "n1", "http://a:1", None, "0.0.0.0", 1, "h", public_url="http://a:1")
    assert same.public_url == "" and same.client_url == "http://a:1"
    with pytest.raises(ClusterConfigError, match="--public-url must be a base URL"):
        config_from_options("redis://r", "n1", None, None, "0.0.0.0", 1, "h", public_url="https://x/lessons")
    n = NodeInfo("a", "http://127.0.0.1:8081", public_url="https://class.example.cn")
    assert NodeInfo.from_hash("a", n.to_hash()) == n and n.client_url == "https://class.example.cn"
    older = {k: v for k, v in n.to_hash().items() if k != "public_url"}   # a node of the previous release
    assert NodeInfo.from_hash("a", older).client_url == "http://127.0.0.1:8081"


def test_node_options_without_redis_are_an_error() -> None:
    with pytest.raises(ClusterConfigError, match="need --redis"):
        config_from_options(None, "n1", None, None, "127.0.0.1", 8080, "h")


def test_node_hash_round_trip_and_malformed_hashes() -> None:
    n = NodeInfo("a", "http://10.0.0.1:8080", rooms=2, sessions=7, heartbeat_at=1700000000.25)
    assert NodeInfo.from_hash("a", n.to_hash()) == n
    assert NodeInfo.from_hash("a", {}) is None
    assert NodeInfo.from_hash("a", {"url": "http://x:1", "rooms": "many"}) is None
    assert NodeInfo.from_hash("a", {"url": "javascript:alert(1)"}) is None


def test_least_loaded_node_wins_ties_by_id() -> None:
    live = {"b": NodeInfo("b", "http://b:1", rooms=0, sessions=3), "a": NodeInfo("a", "http://a:1", rooms=1),
            "c": NodeInfo("c", "http://c:1", rooms=0, sessions=3)}
    assert choose_node(live).node_id == "b"   # load 3 < a's 5 (a room weighs 5 sessions); b before c
    with pytest.raises(NoLiveNode):
        choose_node({})


def test_placement_sticks_while_its_node_lives_and_moves_when_it_dies() -> None:
    a, b = NodeInfo("a", "http://a:1", sessions=50), NodeInfo("b", "http://b:1")
    assert placement_for("a", {"a": a, "b": b}) == (a, False)       # busy but live: stays
    assert placement_for("dead", {"a": a, "b": b}) == (b, True)     # its node expired: re-placed
    assert placement_for(None, {"a": a, "b": b}) == (b, True)       # first request: least loaded
