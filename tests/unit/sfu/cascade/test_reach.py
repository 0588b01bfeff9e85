"""An edge's report of how the teacher's camera reaches its classrooms: the wire form, its validation, and the
origin's memory of it (fresh only, bounded). Pure: no sockets, time passed in."""
from __future__ import annotations

import json

import pytest

from sfu.cascade.reach import (MAX_PER_MESSAGE, MAX_REMOTE, REACH_FRESH_S, Reach, ReachError, RemoteReach,
                               encode_reach, reach_of)
from sfu.cascade.relay_map import decode


def reach(i: int, **kw) -> Reach:
    return Reach(**{"owner": f"c{i}", "session": f"s{i}", "packets": 100 + i, "height": 360, "loss": 0.03,
                    "rtt_ms": 41.5, "bitrate": 650_000.0, **kw})


def test_a_report_round_trips_in_messages_a_control_channel_takes():
    items = [reach(i) for i in range(MAX_PER_MESSAGE + 5)] + [reach(9999, height=None, rtt_ms=None, bitrate=None)]
    texts = encode_reach(items)
    assert len(texts) == 2 and all(len(t) < 64 * 1024 for t in texts)
    assert [r for t in texts for r in reach_of(decode(t))] == items
    assert encode_reach([]) == []
    assert reach(1).link() == {"loss": 0.03, "rtt": 41.5, "bitrate": 650_000.0}


@pytest.mark.parametrize("bad", [
    {"viewers": "x"},
    {"viewers": [["c1", "s1", 5, 360, 0.0, 1.0]]},                 # a figure short
    {"viewers": [["", "s1", 5, 360, 0.0, 1.0, 2.0]]},              # no owner
    {"viewers": [["c1", "s1", -5, 360, 0.0, 1.0, 2.0]]},           # negative packets
    {"viewers": [["c1", "s1", 5, 360, 1.5, 1.0, 2.0]]},            # loss above 1
    {"viewers": [["c1", "s1", 5, 360, float("nan"), 1.0, 2.0]]},   # not a number
    {"viewers": [["c1", "s1", True, 360, 0.0, 1.0, 2.0]]},         # a boolean is no count
    {"viewers": [["c1", "s1", 5, "360", 0.0, 1.0, 2.0]]},
    {"viewers": [["x" * 200, "s1", 5, 360, 0.0, 1.0, 2.0]]},       # a name too long
    {"viewers": [["c1", "s1", 5, 360, 0.0, 1.0, 2.0]] * (MAX_PER_MESSAGE + 1)},
])
def test_a_malformed_report_is_refused_whole(bad: dict):
    with pytest.raises(ReachError):
        reach_of({"type": "reach", **json.loads(json.dumps(bad, allow_nan=True))})


def test_the_origin_keeps_each_classrooms_latest_while_it_is_fresh_and_bounded():
    remote = RemoteReach()
    remote.update([reach(1), reach(2)], now=10.0)
    remote.update([reach(1, packets=500)], now=12.0)
    assert {o: r.packets for o, r in remote.fresh(12.0).items()} == {"c1": 500, "c2": 102}
    assert set(remote.fresh(10.0 + REACH_FRESH_S + 0.1)) == {"c1"}   # c2's edge stopped naming it: gone
    assert remote.fresh(12.0 + REACH_FRESH_S + 0.1) == {}
    many = RemoteReach()
    many.update([reach(i) for i in range(MAX_REMOTE + 50)], now=0.0)
    assert len(many.fresh(0.0)) == MAX_REMOTE
