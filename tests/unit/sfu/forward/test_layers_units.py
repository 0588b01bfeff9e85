"""Layer choice and layer switching, fed recorded-style packet sequences with injected time (no sockets).

The packet fixtures model what Chromium sends for simulcast with VP8 L1T3: three encodings, each with its
own SSRC, sequence numbers, PictureIDs and TL0PICIDX, temporal pattern 0,2,1,2, a keyframe every 2 s.
"""
from __future__ import annotations

import random
from dataclasses import dataclass, field

import pytest

from sfu.allocation.allocator import HOLD_MIN, PROBE_GAIN, PROBE_GRACE_S, PROBE_S, SPATIAL_UP_FILL, Allocator, LinkReport
from sfu.rtp.codec_info import parse_vp8
from sfu.forward.consumer import Consumer
from sfu.ingest.inbound import InboundStream
from sfu.forward.munger import DropCounter
from sfu.rtp.rtp_header import RtpView, build_header
from sfu.forward.rtx_limiter import RtxLimiter
from sfu.webrtc.simulcast_sdp import complete_answer, parse_offer
from sfu.room.track import Track
from testkit.recording_tap import RecordingTap

TID_PATTERN = (0, 2, 1, 2)
FPS = 30


def vp8_packet(seq: int, ts: int, ssrc: int, picture_id: int, tl0: int, tid: int, keyframe: bool, start: bool,
               marker: bool, layer_sync: bool = False, size: int = 300) -> bytes:
    desc = bytes([0x90 if start else 0x80, 0xE0, 0x80 | (picture_id >> 8), picture_id & 0xFF, tl0,
                  (tid << 6) | (0x20 if layer_sync else 0)])
    body = bytes([0x00 if keyframe else 0x01, 0, 0]) if start else b"\x00\x00\x00"
    return bytes(build_header(int(marker), 96, seq, ts, ssrc)) + desc + body + b"\x55" * size


@dataclass
class LayerSource:
    """One simulcast encoding as the publisher sends it."""
    ssrc: int
    packets_per_frame: int
    seq: int = field(default_factory=lambda: random.randrange(65536))
    picture_id: int = field(default_factory=lambda: random.randrange(32768))
    tl0: int = field(default_factory=lambda: random.randrange(256))
    ts_base: int = field(default_factory=lambda: random.randrange(1 << 32))

    def frame(self, index: int, keyframe: bool) -> list[bytes]:
        tid = 0 if keyframe else TID_PATTERN[index % 4]
        if tid == 0:
            self.tl0 = (self.tl0 + 1) & 0xFF
        self.picture_id = (self.picture_id + 1) & 0x7FFF
        ts = (self.ts_base + index * 90000 // FPS) & 0xFFFFFFFF
        out = []
        for i in range(self.packets_per_frame):
            out.append(vp8_packet(self.seq, ts, self.ssrc, self.picture_id, self.tl0, tid, keyframe, i == 0,
                                  i == self.packets_per_frame - 1))
            self.seq = (self.seq + 1) & 0xFFFF
        return out


class Rig:
    """A video track with simulcast layers and one consumer on it."""

    def __init__(self, packets_per_frame=(1, 2, 4), keyframe_every: int = 60) -> None:
        self.track = Track("video", lambda: 0.0)
        self.keyframe_requests: list[tuple[float, int]] = []
        self.pending_keyframe: set[int] = set()
        self.track.on_keyframe_needed = self._keyframe_needed
        self.sources = [LayerSource(1000 + i, n) for i, n in enumerate(packets_per_frame)]
        self.streams = [InboundStream("video", "VP8", 90000, s.ssrc, 96, rid) for s, rid in zip(self.sources, "lmh")]
        for i, st in enumerate(self.streams):
            st.height = (180, 360, 720)[i]
        self.tap = RecordingTap()
        self.consumer = Consumer("video", self.tap, 5555, 5556, {"VP8": (96, 97)}, 0, self.track)
        self.keyframe_every = keyframe_every
        self.frame_index = 0
        self.now = 0.0
        for st in self.streams:
            self.track.attach(st, self.now)
        self.track.add(self.consumer, self.now)

    def _keyframe_needed(self, stream: InboundStream, now: float) -> None:
        self.keyframe_requests.append((now, stream.ssrc))
        self.pending_keyframe.add(stream.ssrc)  # the publisher answers with its next frame

    def run(self, frames: int, drop=lambda layer, frame, i: False, reorder: bool = False) -> None:
        for _ in range(frames):
            for layer, (src, st) in enumerate(zip(self.sources, self.streams)):
                keyframe = self.frame_index % self.keyframe_every == 0 or src.ssrc in self.pending_keyframe
                if keyframe:
                    self.pending_keyframe.discard(src.ssrc)
                packets = src.frame(self.frame_index, keyframe)
                if reorder and len(packets) > 2:
                    packets[1], packets[2] = packets[2], packets[1]
                for i, data in enumerate(packets):
                    if drop(layer, self.frame_index, i):
                        continue
                    view = RtpView(data)
                    st.last_packet_at = self.now
                    pkt = st.classify(view, self.now)
                    self.track.forward(pkt, st, self.now)
            self.frame_index += 1
            self.now += 1 / FPS
            if self.frame_index % FPS == 0:
                for st in self.streams:
                    st.update_rates(1.0)

    def output(self) -> list[tuple[RtpView, object]]:
        out = []
        for data in self.tap.sent:
            v = RtpView(data)
            out.append((v, parse_vp8(data, v.payload_start, v.payload_end) if v.payload_size else None))
        return out


def assert_continuous(out) -> None:
    seqs = [v.seq for v, _ in out]
    assert all((b - a) & 0xFFFF == 1 for a, b in zip(seqs, seqs[1:])), "output sequence numbers have holes"
    pids = []
    for v, d in out:
        if d is not None and d.start_of_partition and d.partition_id == 0:
            pids.append(d.picture_id)
    assert all((b - a) & 0x7FFF == 1 for a, b in zip(pids, pids[1:])), "output PictureIDs have holes"
    tl0s = [d.tl0picidx for _, d in out if d is not None and d.tid == 0 and d.start_of_partition]
    assert all((b - a) & 0xFF in (0, 1) for a, b in zip(tl0s, tl0s[1:])), "TL0PICIDX jumps"


def set_target(rig: Rig, layer: int, tid: int) -> None:
    rig.consumer._set_target(rig.streams[layer], tid, rig.now)


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
    assert rig.consumer.munger.source is rig.streams[2]
    before = len(rig.tap.sent)
    set_target(rig, 0, 2)
    assert rig.keyframe_requests[-1][1] == rig.sources[0].ssrc   # asked of the layer switched to
    rig.run(3)
    out = rig.output()
    assert rig.consumer.munger.source is rig.streams[0]
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
    assert rig.consumer.munger.source is rig.streams[0] and not rig.consumer.thinning
    assert {d.tid for _, d in rig.output()[len(out):]} == {0, 1, 2}
    assert_continuous(rig.output())


def as_one_layer(stream: InboundStream) -> None:
    """Make a layer look like a one-layer publisher's stream (no temporal layers to shed)."""
    plain = stream.classify

    def one_layer(view, arrival):
        pkt = plain(view, arrival)
        stream.temporal_layers = 1
        return pkt
    stream.classify = one_layer  # type: ignore[method-assign]


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
    assert rig.consumer.munger.source is rig.streams[0]
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
    assert rig.consumer.munger.source is rig.streams[1]  # the fixture delivered one: switched
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


def test_drop_counter_renumbers_late_values():
    c = DropCounter(16)
    for v in (10, 11):
        c.see(v)
    assert c.drop(12)
    c.see(13)
    assert c.before(13) == 1 and c.before(11) == 0
    assert not c.drop(12)                          # already past it: a hole to fill
    assert c.drop(65535 + 20 & 0xFFFF) is True     # far ahead (wraps): absorbed


# --- allocator -------------------------------------------------------------------------------------------

RATES = [[60e3, 90e3, 120e3], [200e3, 320e3, 450e3], [700e3, 1.1e6, 1.5e6]]


def test_allocator_starts_high_and_drops_within_one_estimate():
    a = Allocator()
    assert a.update(0.0, LinkReport(None, 0.0, 0.0, RATES)) == (2, 2)
    assert a.update(0.25, LinkReport(500e3, 0.0, 1.5e6, RATES)) == (1, 2)        # fits 450k in 475k
    assert a.update(0.5, LinkReport(100e3, 0.0, 450e3, RATES)) == (0, 1)          # drops frame rate, then resolution


def test_allocator_climbs_after_the_hold_straight_to_what_fits():
    a = Allocator()
    a.update(0.0, LinkReport(100e3, 0.0, 0, RATES))
    assert a.state.current == (0, 1)
    t = 0.0
    while t < HOLD_MIN - 0.1:
        t += 0.25
        assert a.update(t, LinkReport(2.5e6, 0.0, 90e3, RATES)) == (0, 1)          # not before the hold
    t += 0.25
    assert a.update(t, LinkReport(2.5e6, 0.0, 90e3, RATES)) == (2, 2)             # the link came back: all the way up


def test_allocator_wants_headroom_for_a_higher_resolution():
    a = Allocator()
    assert a.update(0.0, LinkReport(500e3, 0.0, 0, RATES)) == (1, 2)
    # (3 % loss: no probing, to look at the rule alone)
    for i in range(20):  # 720p at half rate (1.1M) would fit in 0.85 of 1.35M, but its keyframe would not
        assert a.update(0.25 * (i + 1), LinkReport(1.35e6, 0.03, 450e3, RATES)) == (1, 2)
    assert a.update(6.0, LinkReport(1.6e6, 0.03, 450e3, RATES)) == (1, 2)
    assert a.update(8.5, LinkReport(1.6e6, 0.03, 450e3, RATES)) == (2, 1)


def test_allocator_does_not_trim_a_viewer_that_receives_well():
    # Chromium's REMB hovers near what it receives (it cannot exceed 1.5x that): no congestion, no trim
    a = Allocator()
    assert a.update(0.0, LinkReport(None, 0.0, 0.0, RATES)) == (2, 2)
    for i in range(40):
        assert a.update(0.25 * (i + 1), LinkReport(1.45e6 if i % 2 else 1.55e6, 0.0, 1.45e6, RATES)) == (2, 2)
    # the estimate falls under what it is sent: congestion, down at once
    assert a.update(11.0, LinkReport(1.2e6, 0.0, 1.45e6, RATES)) == (2, 1)
    assert a.update(11.25, LinkReport(300e3, 0.0, 1.1e6, RATES)) == (0, 2)         # never 720p or 360p at 5 fps


def test_allocator_ignores_a_keyframe_burst_while_the_estimate_rises():
    a = Allocator()
    a.update(0.0, LinkReport(None, 0.0, 0.0, RATES))
    for i in range(8):
        assert a.update(0.25 * i + 0.25, LinkReport(1.6e6 + 20e3 * i, 0.0, 1.5e6, RATES)) == (2, 2)
    # another viewer's keyframe request: this one is sent 2.4M for a second, its estimate keeps rising
    assert a.update(2.25, LinkReport(1.8e6, 0.0, 2.4e6, RATES)) == (2, 2)
    assert a.update(2.5, LinkReport(1.82e6, 0.0, 2.4e6, RATES)) == (2, 2)


def test_allocator_probes_prove_rates_in_slow_start_steps():
    a = Allocator()
    assert a.update(0.0, LinkReport(150e3, 0.0, 0, RATES)) == (0, 2)
    t, totals = 0.0, []
    while a.state.current == (0, 2) and t < 20:   # the estimate stays flat (as Chromium's REMB does)
        t += 0.25
        a.update(t, LinkReport(150e3, 0.0, 120e3, RATES))
        if a.probe_rate(t) and (not totals or a.state.probe_total_bps != totals[-1]):
            totals.append(a.state.probe_total_bps)
    # each clean probe proves its rate and the step above it doubles, until 360p fits with its headroom
    assert totals == pytest.approx([150e3 * 1.2, 180e3 * 1.4, 252e3 * 1.8], rel=0.01)
    assert 252e3 * 1.8 * SPATIAL_UP_FILL >= 320e3
    assert a.state.current == (1, 1) and t < 3 * (PROBE_S + PROBE_GRACE_S) + 1


def test_allocator_probe_backs_off_and_stays_under_a_failed_rate():
    a = Allocator()
    a.update(0.0, LinkReport(150e3, 0.0, 0, RATES))
    a.update(0.25, LinkReport(150e3, 0.0, 120e3, RATES))
    assert a.probe_rate(0.25) == pytest.approx(150e3 * PROBE_GAIN - 120e3, rel=0.01)
    a.update(1.0, LinkReport(150e3, 0.05, 120e3, RATES))                         # loss while probing: stop, back off
    assert a.probe_rate(1.0) == 0
    a.update(2.0, LinkReport(150e3, 0.0, 120e3, RATES))
    assert a.probe_rate(2.0) == 0                                   # still backing off (2 s)
    t = 1.0 + HOLD_MIN + 0.1
    a.update(t, LinkReport(150e3, 0.0, 120e3, RATES))
    assert a.state.probe_total_bps == pytest.approx((150e3 + 180e3) / 2)   # halfway to the failed rate
    t += PROBE_S + PROBE_GRACE_S + 0.1
    a.update(t, LinkReport(150e3, 0.0, 120e3, RATES))
    assert a.state.proven_bps == pytest.approx(165e3)
    # an estimate cut disproves the rate: back to what the estimate says (down at once if congested)
    assert a.update(t + 0.25, LinkReport(100e3, 0.0, 120e3, RATES)) == (0, 1)
    assert a.state.proven_bps == 0


def test_allocator_probe_stops_when_the_estimate_is_cut():
    a = Allocator()
    a.update(0.0, LinkReport(150e3, 0.0, 0, RATES))
    a.update(0.25, LinkReport(150e3, 0.0, 120e3, RATES))
    assert a.probe_rate(0.25) > 0
    a.update(0.5, LinkReport(130e3, 0.0, 120e3, RATES))                          # the receiver saw its queue grow
    assert a.probe_rate(0.5) == 0 and a.state.proven_bps == 0
    a.update(1.5, LinkReport(150e3, 0.0, 120e3, RATES))
    assert a.probe_rate(1.5) == 0                                   # backing off


def test_allocator_probe_fails_on_nacks():
    a = Allocator()
    a.update(0.0, LinkReport(150e3, 0.0, 0, RATES, nacks=10))
    a.update(0.25, LinkReport(150e3, 0.0, 120e3, RATES, nacks=10))
    assert a.probe_rate(0.25) > 0
    a.update(0.5, LinkReport(150e3, 0.0, 120e3, RATES, nacks=12))                # two: a reordering, not an overflow
    assert a.probe_rate(0.5) > 0
    a.update(0.75, LinkReport(150e3, 0.0, 120e3, RATES, nacks=20))               # the probe overflowed a queue
    assert a.probe_rate(0.75) == 0
    a.update(PROBE_S + PROBE_GRACE_S + 0.5, LinkReport(150e3, 0.0, 120e3, RATES, nacks=20))
    assert a.state.proven_bps == 0 and a.probe_rate(PROBE_S + PROBE_GRACE_S + 0.5) == 0


def test_allocator_probes_from_the_bottom_when_the_estimate_starved():
    # an estimate under the lowest layer (it cannot exceed 1.5x what little arrives): stay, but probe
    a = Allocator()
    assert a.update(0.0, LinkReport(40e3, 0.0, 0, RATES)) == (0, 0)
    t, probed = 0.0, []
    for _ in range(12):
        t += 0.25
        assert a.update(t, LinkReport(40e3, 0.0, 55e3, RATES)) == (0, 0)
        probed.append(a.probe_rate(t))
    assert probed[0] > 0 and max(probed) > probed[0]   # proven, the next probe goes higher


def test_allocator_backs_off_after_a_failed_upgrade_and_respects_cap():
    a = Allocator()
    a.update(0.0, LinkReport(500e3, 0.0, 0, RATES))
    t = 0.0
    switches = 0
    last = a.state.current
    for _ in range(400):                                            # estimate oscillating every 1.5 s
        t += 0.25
        estimate = 800e3 if int(t / 1.5) % 2 == 0 else 480e3
        q = a.update(t, LinkReport(estimate, 0.0, 0, RATES))
        if q != last:
            switches += 1
            last = q
    assert switches <= 12, f"{switches} switches in 100 s: flapping"
    capped = Allocator()
    assert capped.update(0.0, LinkReport(5e6, 0.0, 0, RATES, cap=1)) == (1, 2)


def test_allocator_heavy_loss_cuts_the_rate():
    a = Allocator()
    a.update(0.0, LinkReport(2e6, 0.0, 0, RATES))
    assert a.update(1.0, LinkReport(2e6, 0.3, 1.5e6, RATES)) < (2, 2)


# --- SDP --------------------------------------------------------------------------------------------------

OFFER = """v=0\r
o=- 1 2 IN IP4 127.0.0.1\r
s=-\r
t=0 0\r
m=video 9 UDP/TLS/RTP/SAVPF 96\r
a=mid:0\r
a=rid:q send\r
a=rid:h send\r
a=rid:f send\r
a=simulcast:send q;h;~f\r
m=audio 9 UDP/TLS/RTP/SAVPF 111\r
a=mid:1\r
"""


def test_simulcast_offer_is_answered_per_mid():
    offers = parse_offer(OFFER)
    assert len(offers) == 1 and offers[0].rids == ["q", "h", "f"] and offers[0].paused == {"f"}
    answer = "v=0\r\nm=video 9 X 96\r\na=mid:0\r\na=sendrecv\r\nm=audio 9 X 111\r\na=mid:1\r\n"
    done = complete_answer(answer, offers)
    video = done.split("m=audio")[0]
    assert "a=rid:q recv\r\na=rid:h recv\r\na=rid:f recv\r\na=simulcast:recv q;h;~f\r\n" in video
    assert "simulcast" not in done.split("m=audio")[1]


def test_malformed_simulcast_is_ignored():
    bad = OFFER.replace("a=rid:h send\r\n", "")                       # names a rid it never declares
    assert parse_offer(bad) == []
    too_many = OFFER.replace("q;h;~f", ";".join("abcde"))
    assert parse_offer(too_many) == []


def test_start_bitrate_hint_on_every_video_codec():
    from sfu.webrtc.sdp_hints import add_start_bitrate
    answer = ("v=0\r\nm=video 9 X 96 97 102\r\na=rtpmap:96 VP8/90000\r\na=rtpmap:97 rtx/90000\r\n"
              "a=fmtp:97 apt=96\r\na=rtpmap:102 H264/90000\r\na=fmtp:102 packetization-mode=1\r\n"
              "m=audio 9 X 111\r\na=rtpmap:111 opus/48000/2\r\n")
    done = add_start_bitrate(answer, 1000)
    assert "a=fmtp:96 x-google-start-bitrate=1000\r\n" in done
    assert "a=fmtp:102 packetization-mode=1;x-google-start-bitrate=1000\r\n" in done
    assert "a=fmtp:97 apt=96\r\n" in done                               # RTX untouched
    assert done.count("x-google") == 2


def test_allocator_reflex_sheds_resolution_where_no_temporal_layer_can_go():
    single = [[60e3, 90e3, 150e3], [200e3, 300e3, 500e3], [1.5e6]]      # ladder rungs, then the source
    a = Allocator()
    assert a.update(0.0, LinkReport(None, 0.0, 0.0, single)) == (2, 0)
    assert a.update(0.25, LinkReport(2.2e6, 0.0, 1.5e6, single)) == (2, 0)
    # what fits in 15 % of 1.5M, with room for its keyframe (nothing to thin meanwhile)
    assert a.update(0.5, LinkReport(2.2e6, 0.0, 1.5e6, single, reflex=True)) == (0, 1)
    c = Allocator()                       # already switching to the 360p rung, still sent the 1.5M source
    c.update(0.0, LinkReport(None, 0.0, 0.0, single))
    c.update(0.25, LinkReport(2.2e6, 0.0, 1.5e6, single))
    assert c.update(0.5, LinkReport(1.0e6, 0.0, 1.5e6, single, nacks=10)) == (1, 1)
    assert c.update(0.55, LinkReport(1.0e6, 0.0, 1.5e6, single, nacks=30, reflex=True)) == (1, 1)   # it could thin
    assert c.update(0.6, LinkReport(1.0e6, 0.0, 1.5e6, single, nacks=40, reflex=True, forwarding_single=True)) == (0, 1)
    b = Allocator()                                                   # with temporal layers: the consumer thins
    b.update(0.0, LinkReport(None, 0.0, 0.0, RATES))
    assert b.update(0.5, LinkReport(2.2e6, 0.0, 1.5e6, RATES, reflex=True)) == (2, 2)


def test_a_classrooms_second_session_yields_to_the_teachers_picture():
    from types import SimpleNamespace

    from sfu.allocation import priority
    from sfu.room.feed import Slot

    main, screen, other = Rig(keyframe_every=1000), Rig(keyframe_every=1000), Rig(keyframe_every=1000)
    set_target(screen, 2, 2)
    screen.run(4)
    sessions = [SimpleNamespace(owner="school-1", slot=Slot("camera"), consumers=[("video", main.consumer)]),
                SimpleNamespace(owner="school-1", slot=Slot("screen"), consumers=[("video", screen.consumer)]),
                SimpleNamespace(owner="school-2", slot=Slot("screen"), consumers=[]),
                SimpleNamespace(owner="school-1", slot=Slot("camera"), consumers=[("video", other.consumer)])]
    alloc = main.consumer.allocator
    alloc.update(0.0, LinkReport(5e6, 0.0, 0.0, RATES))
    priority.apply(sessions, 0.0)
    assert screen.consumer.yield_level == priority.YIELD_NONE      # the main picture is whole: no yielding
    alloc.update(0.5, LinkReport(500e3, 0.0, 1.5e6, RATES))                     # the link is short: the main is trimmed
    priority.apply(sessions, 0.5)
    assert screen.consumer.yield_level == priority.YIELD_LOWEST
    screen.tap.sent.clear()
    screen.run(8)
    out = screen.output()
    assert {v.ssrc for v, _ in out} == {5555} and {d.tid for _, d in out} == {0}
    assert screen.consumer.munger.source is screen.streams[0]       # the smallest layer, a quarter rate
    alloc.update(1.0, LinkReport(40e3, 0.0, 450e3, RATES))                       # the main at its smallest: pause
    priority.apply(sessions, 1.0)
    paused_from = screen.output()
    screen.tap.sent.clear()
    screen.run(8)
    assert screen.tap.sent == []
    assert other.consumer.yield_level == priority.YIELD_NONE        # a second page of the same classroom
    alloc.update(30.0, LinkReport(5e6, 0.0, 40e3, RATES))                        # recovered (after the hold)
    alloc.update(33.0, LinkReport(5e6, 0.0, 40e3, RATES))
    priority.apply(sessions, 33.0)
    assert screen.consumer.yield_level == priority.YIELD_NONE
    screen.run(6)
    after = screen.output()
    assert after and after[0][1].keyframe                          # back on a keyframe, numbering unbroken
    assert (after[0][0].seq - paused_from[-1][0].seq) & 0xFFFF == 1


def test_allocator_big_step_down_waits_for_loss_or_a_deep_cut():
    single = [[60e3, 90e3, 150e3], [200e3, 300e3, 500e3], [1.5e6]]      # ladder rungs, then the source
    a = Allocator()
    a.update(0.0, LinkReport(None, 0.0, 0.0, single))
    a.update(0.25, LinkReport(2.0e6, 0.0, 1.5e6, single, nacks=0))
    assert a.update(0.5, LinkReport(1.2e6, 0.0, 1.5e6, single, nacks=0)) == (2, 0)      # a shallow dip, nothing lost
    # ... with NACKs: down, with room for the lower layer's keyframe (the estimate still lags the link)
    assert a.update(0.75, LinkReport(1.2e6, 0.0, 1.5e6, single, nacks=5)) == (1, 2)
    b = Allocator()
    b.update(0.0, LinkReport(None, 0.0, 0.0, single))
    b.update(0.25, LinkReport(2.0e6, 0.0, 1.5e6, single))
    assert b.update(0.5, LinkReport(0.9e6, 0.0, 1.5e6, single)) == (1, 1)               # a deep cut: down at once


def test_the_plan_for_a_packet_is_a_value_and_does_no_io():
    rig = Rig(keyframe_every=1000)
    c, low = rig.consumer, rig.streams[0]
    set_target(rig, 0, 2)
    sent_before, requests_before = len(rig.tap.sent), len(rig.keyframe_requests)
    delta = rig.sources[0].frame(1, keyframe=False)[0]
    key = rig.sources[0].frame(2, keyframe=True)[0]
    high = rig.sources[2].frame(1, keyframe=True)[0]
    assert c.plan(rig.streams[2].classify(RtpView(high), 0.0), rig.streams[2], True, 0.0).drop == "other_layer"
    assert c.plan(low.classify(RtpView(key), 0.0), low, False, 0.0).drop == "transport_not_ready"
    waiting = c.plan(low.classify(RtpView(delta), 0.0), low, True, 0.0)
    assert waiting.drop == "waiting_keyframe" and waiting.keyframe_of is low
    start = c.plan(low.classify(RtpView(key), 0.0), low, True, 0.0)
    assert start.drop is None and start.switched and start.out is not None
    # the plans changed the viewer's numbering, nothing was sent or asked for: that is send's job
    assert len(rig.tap.sent) == sent_before and len(rig.keyframe_requests) == requests_before
