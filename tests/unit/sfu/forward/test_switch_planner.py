"""The switch planner, alone: each packet's plan is a value, and new targets say what they ask for."""
from __future__ import annotations

from sfu.forward.switch_planner import DROP_CODEC, DROP_WAIT_KEYFRAME, FOLLOWUP_KEYFRAME_S, UNCHANGED, SwitchPlanner
from sfu.rtp.rtp_header import RtpView
from tests.unit.sfu.forward.simulcast_rig import Rig, set_target


def test_the_plan_for_a_packet_is_a_value_and_does_no_io():
    rig = Rig(keyframe_every=1000)
    c, low = rig.consumer, rig.streams[0]
    set_target(rig, 0, 2)
    sent_before, requests_before = len(rig.tap.sent), len(rig.keyframe_requests)
    delta = rig.sources[0].frame(1, keyframe=False)[0]
    key = rig.sources[0].frame(2, keyframe=True)[0]
    high = rig.sources[2].frame(1, keyframe=True)[0]
    assert c.planner.plan(rig.streams[2].classify(RtpView(high), 0.0), rig.streams[2], True, 0.0).drop == "other_layer"
    assert c.planner.plan(low.classify(RtpView(key), 0.0), low, False, 0.0).drop == "transport_not_ready"
    waiting = c.planner.plan(low.classify(RtpView(delta), 0.0), low, True, 0.0)
    assert waiting.drop == "waiting_keyframe" and waiting.keyframe_of is low
    start = c.planner.plan(low.classify(RtpView(key), 0.0), low, True, 0.0)
    assert start.drop is None and start.switched and start.out is not None
    # the plans changed the viewer's numbering, nothing was sent or asked for: that is send's job
    assert len(rig.tap.sent) == sent_before and len(rig.keyframe_requests) == requests_before


def planner_on(rig: Rig) -> SwitchPlanner:
    return SwitchPlanner("video", {"VP8": (96, 97)}, first_seq=100, first_ts=9000)


def packet(rig: Rig, layer: int, index: int, keyframe: bool):
    data = rig.sources[layer].frame(index, keyframe)[0]
    return rig.streams[layer].classify(RtpView(data), 0.0)


def test_a_new_target_asks_for_its_keyframe_only_once_the_viewer_can_receive_it():
    rig = Rig()
    p = planner_on(rig)
    change = p.retarget(rig.streams[2], 2, rig.streams, ready=False)
    assert change.reroute and change.keyframe_of is None       # a keyframe now would be lost before DTLS
    assert p.retarget(rig.streams[2], 2, rig.streams, ready=True) is UNCHANGED
    assert p.plan(packet(rig, 2, 0, True), rig.streams[2], True, 0.0).out == (100, 9000)
    change = p.retarget(rig.streams[0], 2, rig.streams, ready=True)
    assert change.reroute and change.keyframe_of is rig.streams[0]
    assert p.thinning and p.wanted_sources() == [rig.streams[2], rig.streams[0]]   # down: thin meanwhile


def test_after_a_pause_only_a_keyframe_restarts_the_same_layer():
    rig = Rig()
    p = planner_on(rig)
    p.retarget(rig.streams[1], 2, rig.streams, ready=True)
    first = p.plan(packet(rig, 1, 0, True), rig.streams[1], True, 0.0)
    last = p.plan(packet(rig, 1, 1, False), rig.streams[1], True, 0.03).out
    assert first.switched and last is not None
    assert p.retarget(None, 2, rig.streams, ready=True).reroute and p.wanted_sources() == []
    change = p.retarget(rig.streams[1], 2, rig.streams, ready=True)
    assert change.keyframe_of is rig.streams[1]               # the viewer missed what came while paused
    waiting = p.plan(packet(rig, 1, 2, False), rig.streams[1], True, 0.06)
    assert waiting.drop == DROP_WAIT_KEYFRAME and waiting.keyframe_of is rig.streams[1]
    again = p.plan(packet(rig, 1, 3, True), rig.streams[1], True, 0.1)
    assert again.switched and again.out is not None and again.out[0] == last[0] + 1   # numbering unbroken


def test_a_codec_the_viewer_did_not_negotiate_is_never_forwarded():
    rig = Rig()
    p = SwitchPlanner("video", {"H264": (102, 103)}, first_seq=1, first_ts=1)
    p.retarget(rig.streams[2], 2, rig.streams, ready=True)
    assert p.plan(packet(rig, 2, 0, True), rig.streams[2], True, 0.0).drop == DROP_CODEC
    assert p.source is None


def test_a_switch_down_to_a_ladder_rung_wants_one_followup_keyframe():
    rig = Rig()
    rig.streams[0].on_demand = True
    p = planner_on(rig)
    p.retarget(rig.streams[2], 2, rig.streams, ready=True)
    p.plan(packet(rig, 2, 0, True), rig.streams[2], True, 0.0)
    p.retarget(rig.streams[0], 2, rig.streams, ready=True)
    assert p.plan(packet(rig, 0, 1, True), rig.streams[0], True, 1.0).switched
    assert [p.due_followup_keyframe(t) for t in (1.2, 1.5 + FOLLOWUP_KEYFRAME_S, 3.0)] == [False, True, False]
