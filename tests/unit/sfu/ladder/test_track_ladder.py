"""A track's ladder over a real VP8 source: its rungs are layers at nominal rates on the source's clock, made
(decoded once, encoded per rung) only while wanted or kept warm, answered with a keyframe when asked, and freed
once nobody has wanted them for a while (time passed in)."""
from __future__ import annotations

import asyncio
from pathlib import Path
from typing import AsyncIterator

import av
import pytest

from sfu.ingest.inbound import InboundStream, IngressPacket
from sfu.ladder.ladder_rung import Rung
from sfu.ladder.track_ladder import IDLE_CLOSE_S, TrackLadder
from sfu.rtp.depacketizer import Depacketizer
from sfu.rtp.rtp_header import RtpView
from testkit.node_peers import until
from testkit.rtp_clip import vp8_clip_rtp

RUNGS = (Rung(160, 90, 150_000, 30), Rung(96, 54, 60_000, 15))
FRAME_S = 1 / 30


class Rig:
    """The ladder of a 320x180 VP8 source, what it forwards and the keyframes it asks of the source."""

    def __init__(self, clip: Path) -> None:
        self.source = InboundStream("video", "VP8", 90000, 4321, 96)
        self.frames = vp8_clip_rtp(clip, 90_000)
        self.sent = 0
        self.forwarded: list[tuple[IngressPacket, InboundStream]] = []
        self.source_keyframes: list[tuple[InboundStream, float]] = []
        self.ladder = TrackLadder(self.source, RUNGS, lambda pkt, stream, now: self.forwarded.append((pkt, stream)),
                                  lambda stream, now: self.source_keyframes.append((stream, now)))

    async def publish(self, frames: int) -> float:
        """The source's next frames as they arrive from its publisher, each taken up by the ladder's worker
        before the next comes (as in real time: nothing skipped for being behind); the media time after them."""
        for _ in range(frames):
            now = self.sent * FRAME_S
            for data in self.frames[self.sent % len(self.frames)]:
                self.ladder.on_source_packet(self.source.classify(RtpView(data), now))
            self.sent += 1
            await until(self.settled, 5, "the ladder's worker taking the frame", every=0.002)
        await asyncio.sleep(0.002)   # what the worker made is forwarded on the event loop
        return self.sent * FRAME_S

    def settled(self) -> bool:
        stats = self.ladder.stats()
        if stats is None:
            return True
        d = stats["dropped"]
        return stats["frames_processed"] == stats["frames_in"] - d["idle"] - d["waiting_keyframe"] - d["overflow"]

    def pictures(self, index: int) -> list[tuple[int, int, bool]]:
        """(width, height, keyframe) of each picture rung `index` forwarded, decoded."""
        depacketizer = Depacketizer("VP8")
        decoder = av.CodecContext.create("vp8", "r")
        out = []
        for n, (pkt, stream) in enumerate(self.forwarded):
            if stream is not self.ladder.streams[index]:
                continue
            for frame in depacketizer.push(pkt.view.data, n * 1e-4):
                out += [(p.width, p.height, frame.keyframe) for p in decoder.decode(av.Packet(frame.data))]
        return out


@pytest.fixture
async def rig(quick_clip: Path) -> AsyncIterator[Rig]:
    made = Rig(quick_clip)
    yield made
    await made.ladder.close()


def test_rungs_are_on_demand_layers_at_nominal_rates_on_the_sources_clock(rig: Rig):
    low, lower = rig.ladder.streams
    assert [(s.width, s.height, s.on_demand) for s in (low, lower)] == [(160, 90, True), (96, 54, True)]
    assert low.rates == [60_000, 90_000, 150_000] and lower.frame_rates == [3.75, 7.5, 15.0]
    low.update_rates(1.0)   # nobody watching measured nothing: the allocator still sees the rung
    assert low.rates == [60_000, 90_000, 150_000]
    assert low.rtp_time_at(5.0) is None
    rig.source.on_sender_report(1 << 40, 1000, 4.0)
    assert low.rtp_time_at(5.0) == lower.rtp_time_at(5.0) == rig.source.rtp_time_at(5.0) is not None
    assert rig.ladder.index_of(lower) == 1 and rig.ladder.index_of(rig.source) is None


async def test_nothing_is_made_while_no_rung_is_wanted(rig: Rig):
    await rig.publish(10)
    rig.ladder.set_wanted(set(), 0.5)
    rig.ladder.tick(100.0)
    assert rig.ladder.stats() is None and rig.forwarded == [] and rig.source_keyframes == []


async def test_a_wanted_rung_is_made_at_its_size_on_the_sources_timestamps(rig: Rig):
    low, lower = rig.ladder.streams
    rig.ladder.set_wanted({id(lower)}, 0.0)
    assert rig.source_keyframes and rig.source_keyframes[0][0] is rig.source   # the decoder starts on a keyframe
    await rig.publish(24)
    assert len(rig.pictures(1)) == 12   # 15 of the source's 30 pictures a second
    assert {s for _, s in rig.forwarded} == {lower}   # the other rung is not made
    pictures = rig.pictures(1)
    assert pictures[0] == (96, 54, True) and {(w, h) for w, h, _ in pictures} == {(96, 54)}
    source_timestamps = {RtpView(p[0]).timestamp for p in rig.frames[:30]}
    assert {pkt.view.timestamp for pkt, _ in rig.forwarded} <= source_timestamps   # lip sync kept
    stats = rig.ladder.stats()
    assert stats is not None and stats["active"] == [1] and stats["dropped"]["decode_errors"] == 0


async def test_a_rung_asked_for_a_keyframe_sends_one_next(rig: Rig):
    low = rig.ladder.streams[0]
    rig.ladder.set_wanted({id(low)}, 0.0)
    await rig.publish(16)   # past the shortest time between two keyframes (the next periodic one: seconds away)
    assert [key for _, _, key in rig.pictures(0)] == [True] + [False] * 15
    rig.ladder.request_keyframe(0)
    await rig.publish(4)
    assert [key for _, _, key in rig.pictures(0)][16:] == [True, False, False, False]


async def test_an_unwanted_ladder_is_freed_after_a_while_unless_kept_warm(rig: Rig):
    low = rig.ladder.streams[0]
    rig.ladder.set_wanted({id(low)}, 0.0)
    end = await rig.publish(10)
    assert rig.pictures(0)
    rig.ladder.set_wanted(set(), end)
    rig.ladder.tick(end + IDLE_CLOSE_S - 0.1)
    assert rig.ladder.stats() is not None   # a viewer may come back to it
    rig.ladder.tick(end + IDLE_CLOSE_S + 0.1)
    assert rig.ladder.stats() is None
    rig.ladder.set_warm(True, end)   # someone watches the source: decode ahead, encode nothing
    forwarded = len(rig.forwarded)
    end = await rig.publish(20)
    assert (rig.ladder.stats() or {}).get("frames_decoded", 0) >= 10   # from the source's next keyframe on
    rig.ladder.tick(end + 2 * IDLE_CLOSE_S)
    assert rig.ladder.stats() is not None and len(rig.forwarded) == forwarded
    rig.ladder.set_warm(False, end)
    rig.ladder.tick(end + IDLE_CLOSE_S + 0.1)
    assert rig.ladder.stats() is None
