"""A viewer's consumer on a real track: layer switches on keyframes with unbroken numbering, temporal thinning,
repair with RTX and its limits, keyframes for losses beyond repair (fed packets with injected time)."""
from __future__ import annotations

from sfu.forward.rtx_limiter import RtxLimiter
from sfu.rtp.rtp_header import RtpView
from tests.unit.sfu.forward.simulcast_rig import Rig, as_one_layer, assert_continuous, set_target


def test_temporal_layers_dropped_without_holes():
    rig = Rig()
    set_target(rig, 2, 2)
    rig.run(60)
    full = len(rig.output())
    set_target(rig, 2, 0)          # a quarter of the frame rate
    rig.tap.sent.clear()
    rig.run(40)
    out = rig.output()
    assert {d.tid for _, d in out} == {0}
    assert len({d.picture_id for _, d in out}) == 10           # frames 0, 4, 8, ... of 40
    assert_continuous(out)
    assert rig.consumer.drops["temporal_layer"] == 30 * 4       # the other 30 frames' 4 packets, by reason
    assert full > 0
    set_target(rig, 2, 2)          # back up at the next base-layer picture
    rig.tap.sent.clear()
    rig.run(8)
    assert {d.tid for _, d in rig.output()} == {0, 1, 2}


def test_spatial_switch_waits_for_keyframe_and_keeps_numbering():
    rig = Rig(keyframe_every=1000)
    set_target(rig, 2, 2)
    rig.run(2)                                    # frame 0 is a keyframe on every layer
    assert rig.consumer.planner.source is rig.streams[2]
    before = len(rig.tap.sent)
    set_target(rig, 0, 2)
    assert rig.keyframe_requests[-1][1] == rig.sources[0].ssrc   # asked of the layer switched to
    rig.run(3)
    out = rig.output()
    assert rig.consumer.planner.source is rig.streams[0]
    ssrcs_in = [RtpView(p).ssrc for p in rig.tap.sent]
    assert len(set(ssrcs_in)) == 1 and ssrcs_in[0] == 5555
    assert_continuous(out)
    after = out[before:]
    assert after[0][1].keyframe                   # the new layer starts on its keyframe
    # timestamps keep real time across the switch (one frame interval, not a jump)
    assert (after[0][0].timestamp - out[before - 1][0].timestamp) & 0xFFFFFFFF == 3000


def test_switching_down_thins_the_current_layer_until_the_keyframe():
    rig = Rig(keyframe_every=1000)
    set_target(rig, 2, 2)
    rig.run(4)
    rig.track.on_keyframe_needed = lambda stream, now: None      # the publisher is slow to answer
    set_target(rig, 0, 2)
    rig.tap.sent.clear()
    rig.run(12)
    out = rig.output()
    assert out and {d.tid for _, d in out} == {0}                # only base-layer pictures meanwhile
    assert {v.ssrc for v, _ in out} == {5555}
    rig.pending_keyframe.add(rig.sources[0].ssrc)                # the keyframe comes at last
    rig.run(4)
    assert rig.consumer.planner.source is rig.streams[0] and not rig.consumer.planner.thinning
    assert {d.tid for _, d in rig.output()[len(out):]} == {0, 1, 2}
    assert_continuous(rig.output())


def test_switching_down_from_a_single_temporal_layer_holds_it_back():
    rig = Rig(keyframe_every=1000)
    set_target(rig, 2, 2)
    rig.run(4)
    as_one_layer(rig.streams[2])
    rig.track.on_keyframe_needed = lambda stream, now: None      # the lower layer's keyframe is late
    set_target(rig, 0, 2)
    rig.tap.sent.clear()
    rig.run(6)
    assert rig.tap.sent == []                                    # the link is left to the coming keyframe
    assert rig.consumer.drops["held_back_for_switch"] == 6 * 4 and rig.consumer.drops["waiting_keyframe"] == 6
    rig.pending_keyframe.add(rig.sources[0].ssrc)
    rig.run(2)
    out = rig.output()
    assert out and out[0][1].keyframe and {v.ssrc for v, _ in out} == {5555}


def test_nacks_for_a_layer_being_left_or_an_earlier_epoch_are_not_resent():
    rig = Rig(keyframe_every=1000)
    set_target(rig, 2, 2)
    rig.run(4)
    as_one_layer(rig.streams[2])
    rig.run(2)
    old = [v.seq for v, _ in rig.output()][-4:]
    rig.tap.sent.clear()
    rig.consumer.on_nack(old[:2], rig.now)
    assert len(rig.tap.sent) == 2                                # steady: NACKs are answered
    rig.track.on_keyframe_needed = lambda stream, now: None      # the lower layer's keyframe is late
    set_target(rig, 0, 2)
    rig.tap.sent.clear()
    rig.consumer.on_nack(old[2:], rig.now)                       # the 720p being left: its repair would only
    assert rig.tap.sent == []                                    # delay the coming keyframe
    rig.pending_keyframe.add(rig.sources[0].ssrc)
    rig.run(2)
    new = [v.seq for v, _ in rig.output()]
    rig.tap.sent.clear()
    rig.consumer.on_nack(old, rig.now + 0.2)                     # before the keyframe: of no use any more
    assert rig.tap.sent == []
    rig.consumer.on_nack(new[:1], rig.now + 0.2)                 # the new layer's packets are repaired
    assert len(rig.tap.sent) == 1
    assert rig.consumer.rtx_skipped == 6


def test_a_packet_lost_again_after_every_resend_gets_the_viewer_a_smaller_keyframe():
    rig = Rig(keyframe_every=1000)
    rig.run(31)                                                  # the layers' rates are known
    rig.consumer.allocate(rig.now)
    assert rig.consumer.target is rig.streams[2]
    rig.run(2)
    seq = [v.seq for v, _ in rig.output()][-3]
    asked = len(rig.keyframe_requests)
    t = rig.now
    for i in range(3):                                           # each resend is lost again on a full link
        rig.consumer.on_nack([seq], t + 0.1 * i)
    assert len(rig.keyframe_requests) == asked and rig.consumer.rtx_packets == 3
    rig.consumer.on_nack([seq], t + 0.3)                         # still missing: resends cannot repair it
    rig.consumer.on_nack([seq], t + 0.4)
    assert rig.consumer.target is rig.streams[1]                 # the next lower resolution, whose keyframe
    assert rig.keyframe_requests[asked:] == [(t + 0.3, rig.sources[1].ssrc)]   # is smaller; asked for once
    assert rig.consumer.rtx_packets == 3 and rig.consumer.keyframes_for_loss == 1
    assert rig.consumer.allocator.state.reason == "down: a loss beyond repair"


def test_at_the_lowest_resolution_a_loss_beyond_repair_asks_for_its_keyframe():
    rig = Rig(keyframe_every=1000)
    rig.run(31)
    rig.consumer.max_height = 180                                # a classroom that capped itself
    rig.consumer.allocate(rig.now)
    assert rig.consumer.target is rig.streams[0]
    rig.run(2)
    seq = [v.seq for v, _ in rig.output()][-1]
    asked = len(rig.keyframe_requests)
    for i in range(4):
        rig.consumer.on_nack([seq], rig.now + 0.1 * i)
    assert rig.consumer.target is rig.streams[0]
    assert rig.keyframe_requests[asked:] == [(rig.now + 0.3, rig.sources[0].ssrc)]


def test_a_keyframes_packets_are_repaired_first_when_the_budget_is_spent():
    rig = Rig(keyframe_every=1000)
    rig.consumer.limiter = RtxLimiter(min_budget_bps=40_000, burst_s=0.25)  # a 1250-byte bucket
    set_target(rig, 2, 2)
    rig.run(10)
    out = rig.output()
    key = [v.seq for v, d in out if v.timestamp == out[0][0].timestamp]      # the keyframe's 4 packets
    later = [v.seq for v, _ in out if v.seq not in key]
    rig.tap.sent.clear()
    rig.consumer.on_nack(later[-6:], rig.now)                               # spends the bucket
    spent = len(rig.tap.sent)
    assert 0 < spent < 6
    rig.consumer.on_nack(key, rig.now)                                      # the decoder's restart point
    assert len(rig.tap.sent) - spent == 4                                   # goes out all the same


def test_a_switch_to_a_ladder_rung_asks_for_a_second_keyframe():
    rig = Rig(keyframe_every=1000)
    rig.streams[0].on_demand = True                              # as a ladder rung
    set_target(rig, 2, 2)
    rig.run(2)
    set_target(rig, 0, 2)
    rig.run(2)
    assert rig.consumer.planner.source is rig.streams[0]
    asked = len(rig.keyframe_requests)
    rig.consumer.fast_tick(rig.now + 0.3, 0.05)
    assert len(rig.keyframe_requests) == asked                   # not yet
    rig.consumer.fast_tick(rig.now + 0.6, 0.05)
    rig.consumer.fast_tick(rig.now + 0.7, 0.05)
    assert rig.keyframe_requests[asked:] == [(rig.now + 0.6, rig.sources[0].ssrc)]   # once


def test_a_nack_burst_thins_at_once_for_a_second():
    rig = Rig(keyframe_every=1000)
    set_target(rig, 2, 2)
    rig.run(8)
    rig.consumer.on_nack(list(range(3)), rig.now)              # a few: ordinary loss
    rig.tap.sent.clear()
    rig.run(4)
    assert {d.tid for _, d in rig.output()} == {0, 1, 2}
    rig.consumer.on_nack(list(range(10)), rig.now)             # a burst: a queue overflowed
    rig.tap.sent.clear()
    rig.run(24)                                                # 0.8 s
    assert {d.tid for _, d in rig.output()} == {0}
    rig.tap.sent.clear()
    rig.run(12)                                                # past the second: all layers again
    assert {d.tid for _, d in rig.output()} == {0, 1, 2}
    assert_continuous(rig.output())


def test_quick_thinning_keeps_a_frame_rate_that_does_not_look_frozen():
    rig = Rig(keyframe_every=1000)
    set_target(rig, 2, 2)
    rig.run(62)
    assert [round(f) for f in rig.streams[2].frame_rates] == [8, 15, 30]   # measured: TL0 is every 4th picture
    rig.streams[2].frame_rates = [3.75, 7.5, 15.0]                         # a 15 fps layer (a ladder rung)
    rig.consumer.on_nack(list(range(10)), rig.now)                         # a burst: a queue overflowed
    rig.tap.sent.clear()
    rig.run(24)
    assert {d.tid for _, d in rig.output()} == {0, 1}                      # 7.5 fps, not 3.75
    assert_continuous(rig.output())


def test_requests_on_join_are_coalesced_per_layer():
    rig = Rig(keyframe_every=1000)
    set_target(rig, 1, 2)
    rig.run(1)
    requests = len(rig.keyframe_requests)
    rig.run(10)                                   # keeps waiting for a keyframe: asks each packet, but
    assert rig.consumer.planner.source is rig.streams[1]  # the fixture delivered one: switched
    assert all(ssrc == rig.sources[1].ssrc for _, ssrc in rig.keyframe_requests[requests - 1:])


def test_late_packet_of_a_dropped_layer_leaves_no_hole():
    rig = Rig()
    set_target(rig, 2, 2)
    rig.run(4)
    set_target(rig, 2, 0)
    rig.run(1)                                    # frame 4: base layer
    # frame 5 (TID 2) arrives with packets 1 and 2 swapped: packet 1 comes after packet 2 was left out
    rig.run(1, reorder=True)
    rig.run(3)
    out = rig.output()
    seqs = [v.seq for v, _ in out]
    assert sorted(set(seqs)) == sorted(seqs)       # nothing sent twice
    fills = [v for v, d in out if v.payload_size == 0]
    assert len(fills) == 1                         # its number was given away: padding keeps the sequence whole
    assert_continuous(out)


def test_reordered_and_lost_packets_keep_their_numbers():
    rig = Rig()
    set_target(rig, 2, 2)
    rig.run(10, reorder=True, drop=lambda layer, f, i: layer == 2 and f == 5 and i == 3)
    out = rig.output()
    seqs = sorted(v.seq for v, _ in out)
    holes = [b for a, b in zip(seqs, seqs[1:]) if (b - a) & 0xFFFF != 1]
    assert len(holes) == 1                         # exactly the one lost packet is missing (NACKable)
