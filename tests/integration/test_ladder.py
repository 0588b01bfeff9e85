"""Server-side simulcast ladder: depacketizers, VP8 packetizer, rung policies (crafted packets), then the
whole RoomLadder on real VP8 720p and H.264 sources, its output depacketized and decoded with PyAV."""
from __future__ import annotations

import asyncio
import os
import random
from pathlib import Path

import av
import numpy as np
import pytest
from aiortc.codecs.h264 import h264_depayload

from sfu.rtp.codec_info import parse_vp8
from sfu.rtp.depacketizer import Depacketizer
from sfu.rtp.h264_depacketizer import h264_access_unit, h264_starts_picture
from sfu.ladder.room_ladder import RoomLadder, Rung
from sfu.ladder.ladder_rung import FrameRateGate, KeyframeSchedule, fit_within
from sfu.rtp.rtp_header import RtpView
from sfu.rtp.vp8_packetizer import Vp8Packetizer, l1t3_layer
from testkit.media import make_clip
from testkit.recording_tap import RecordingTap
from testkit.rtp_clip import h264_clip_rtp, h264_rtp, vp8_clip_rtp

CACHE = Path(os.environ.get("LIVECLASS_TEST_CACHE", Path.home() / ".cache" / "liveclass-tests"))
RUNGS = [Rung(640, 360, 500_000, 30), Rung(320, 180, 150_000, 15)]


# ---------- crafted packets ----------

def vp8_source(frames: int, key_every: int = 10, size: int = 2500, ts0: int = 1000) -> list[list[bytes]]:
    """RTP packets per frame; payload bytes encode (frame index, byte index) so reassembly is checkable."""
    pk = Vp8Packetizer(ssrc=1234, rng=random.Random(1))
    out = []
    for n in range(frames):
        tag = 0x10 if n % key_every == 0 else 0x11  # VP8 frame tag bit 0: 0 = keyframe
        body = bytes([tag]) + bytes((n * 7 + i) & 0xFF for i in range(size - 1))
        out.append(pk.packetize(body, ts0 + n * 3000, None))
    return out


def frame_body(packets: list[bytes]) -> bytes:
    parts = []
    for p in packets:
        v = RtpView(p)
        d = parse_vp8(p, v.payload_start, v.payload_end)
        parts.append(p[v.payload_start + d.size:v.payload_end])
    return b"".join(parts)


def feed(dp: Depacketizer, packets: list[bytes], t0: float = 0.0, step: float = 0.001) -> list:
    out = []
    for i, p in enumerate(packets):
        out += dp.push(p, t0 + i * step)
    return out


def test_vp8_depacketizer_in_order_reorder_and_duplicates():
    src = vp8_source(6)
    dp = Depacketizer("VP8")
    flat = [p for f in src for p in f]
    frames = feed(dp, flat)
    assert [f.data for f in frames] == [frame_body(f) for f in src]
    assert [f.keyframe for f in frames] == [True, False, False, False, False, False]
    assert frames[0].after_loss and not any(f.after_loss for f in frames[1:])
    # reordered inside and across frames, with duplicates: same frames, once each, in order
    dp = Depacketizer("VP8")
    shuffled = flat[:1] + [flat[3], flat[2], flat[1], flat[1]] + flat[4:8] + [flat[9], flat[8]] + flat[8:]
    frames2 = feed(dp, shuffled)
    assert [f.data for f in frames2] == [f.data for f in frames]
    assert dp.duplicates + dp.late == 3


def test_vp8_depacketizer_loss_waits_then_drops_and_flags():
    src = vp8_source(12, key_every=10)
    lost = src[3][1]  # middle packet of frame 3
    dp = Depacketizer("VP8", hold=0.1)
    out = []
    now = 0.0
    for n, f in enumerate(src):
        for p in f:
            if p is not lost:
                out += dp.push(p, now)
        now += 0.033
    # frame 3 dropped once the hole blocked later packets for 100 ms; frames 4.. released, flagged
    assert [f.timestamp for f in out] == [1000 + n * 3000 for n in range(12) if n != 3]
    flags = {f.timestamp: f.after_loss for f in out}
    assert flags[1000 + 4 * 3000] and not flags[1000 + 5 * 3000]
    assert dp.frames_dropped == 1
    # a retransmission inside the hold completes the frame instead
    dp = Depacketizer("VP8", hold=0.1)
    out = []
    for p in src[0] + src[1][:1] + src[1][2:] + src[2]:
        out += dp.push(p, 0.0)
    assert [f.timestamp for f in out] == [1000]
    out = dp.push(src[1][1], 0.05)
    assert [f.timestamp for f in out] == [4000, 7000] and not any(f.after_loss for f in out)
    # the repair after the hold is late: dropped
    dp = Depacketizer("VP8", hold=0.1)
    for p in src[0] + src[1][:1] + src[1][2:]:
        dp.push(p, 0.0)
    assert [f.timestamp for f in dp.push(src[2][0], 0.2)] == []  # frame 2 still incomplete
    rest = feed(dp, src[2][1:], 0.2)
    assert [f.timestamp for f in rest] == [7000] and rest[0].after_loss
    assert dp.push(src[1][1], 0.3) == [] and dp.late == 1


def test_vp8_depacketizer_lost_frame_start_and_late_keyframe():
    src = vp8_source(14, key_every=10)
    dp = Depacketizer("VP8")
    out = []
    now = 0.0
    for n, f in enumerate(src):
        for i, p in enumerate(f):
            if not (n == 2 and i == 0):   # first packet of frame 2 (its S bit) lost
                out += dp.push(p, now)
        now += 0.05
    stamps = [f.timestamp for f in out]
    assert 1000 + 2 * 3000 not in stamps and 1000 + 3 * 3000 in stamps
    # the keyframe (frame 10) arrives last, after frames 11-13: they wait (hold), then it fills the hole
    dp = Depacketizer("VP8")
    order = [p for f in src[:10] for p in f] + [p for f in src[11:] for p in f] + src[10]
    frames = feed(dp, order, step=0.0005)
    assert [f.timestamp for f in frames] == [1000 + n * 3000 for n in range(14)]
    assert frames[10].keyframe


def test_depacketizer_sequence_wrap_and_reset():
    pk = Vp8Packetizer(ssrc=5, rng=random.Random(2))
    pk.seq = 0xFFFE
    dp = Depacketizer("VP8")
    got = []
    for n in range(4):
        got += feed(dp, pk.packetize(b"\x11" + b"x" * 2000, 3000 * n, None))
    assert len(got) == 4 and dp.late == 0
    pk.seq = 30000  # a sequence jump: the publisher restarted
    got = feed(dp, pk.packetize(b"\x10" + b"y" * 100, 90000, None))
    assert len(got) == 1 and got[0].after_loss and dp.resets == 1
    pk.ssrc = 6  # a new SSRC, sequence numbers close by: a new stream too
    got = feed(dp, pk.packetize(b"\x10" + b"z" * 100, 93000, None))
    assert len(got) == 1 and got[0].after_loss and dp.resets == 2


# H.264: SPS, PPS, an IDR slice and a P slice (first_mb_in_slice = 0 -> first bit after the header is 1)
SPS = b"\x67\x42\xc0\x1e" + bytes(range(20))
PPS = b"\x68\xce\x3c\x80"
IDR = b"\x65\x88" + bytes(i & 0xFF for i in range(3000))
P_SLICE = b"\x41\x9a" + bytes(i & 0x7F for i in range(700))
P_SLICE2 = b"\x41\x1a" + bytes(50)  # a second slice of the same picture (first_mb_in_slice != 0)


def test_h264_depacketizer_stap_fu_single_and_loss():
    aus = [[SPS, PPS, IDR], [P_SLICE, P_SLICE2], [P_SLICE], [SPS, PPS, IDR], [P_SLICE]]
    src = h264_rtp(aus, [3000 * n for n in range(len(aus))], seq0=100)
    assert any(len(f) > 1 for f in src)  # FU-A in play
    dp = Depacketizer("H264")
    frames = feed(dp, [p for f in src for p in f])
    assert [f.data for f in frames] == [b"".join(b"\x00\x00\x00\x01" + n for n in au) for au in aus]
    assert [f.keyframe for f in frames] == [True, False, False, True, False]
    # same bytes as aiortc's own depayloader
    assert frames[1].data == b"".join(h264_depayload(RtpView(p).payload) for p in src[1])
    # a lost FU-A fragment: that access unit is dropped, the next picture start resynchronises
    dp = Depacketizer("H264")
    out = []
    for n, f in enumerate(src):
        for i, p in enumerate(f):
            if not (n == 0 and i == 2):
                out += dp.push(p, n * 0.2)
    assert [f.timestamp for f in out] == [3000, 6000, 9000, 12000] and out[0].after_loss
    # resynchronisation needs a picture start: a second slice is not one
    assert h264_starts_picture(PPS) and h264_starts_picture(P_SLICE) and not h264_starts_picture(P_SLICE2)
    assert h264_access_unit([b"\x7c\x05" + b"abc"]) is None  # FU-A middle without its start


# ---------- packetizer and policies ----------

def parse(p: bytes):
    v = RtpView(p)
    return v, parse_vp8(p, v.payload_start, v.payload_end)


def test_vp8_packetizer_descriptor_and_numbering():
    pk = Vp8Packetizer(ssrc=77, rng=random.Random(3))
    pk.seq, pk.picture_id, pk.tl0picidx = 0xFFFF, 0x7FFE, 0xFF
    seqs, pics, tl0s = [], [], []
    for n in range(6):
        tid, sync = l1t3_layer(n, n == 0)
        packets = pk.packetize(bytes([0x10 if n == 0 else 0x11]) + bytes(3000 if n == 0 else 500), 90 * n, tid, sync)
        for i, p in enumerate(packets):
            v, d = parse(p)
            assert v.payload_size <= 1200 and v.ssrc == 77 and v.payload_type == 96 and v.timestamp == 90 * n
            assert v.marker == (i == len(packets) - 1)
            assert d.start_of_partition == (i == 0) and d.partition_id == 0
            assert (d.tid, d.layer_sync, d.picture_id_bits) == (tid, sync, 15)
            seqs.append(v.seq)
        pics.append(d.picture_id)
        tl0s.append(d.tl0picidx)
    assert seqs == [(0xFFFF + i) & 0xFFFF for i in range(len(seqs))]
    assert pics == [0x7FFF, 0, 1, 2, 3, 4]
    assert tl0s == [0, 0, 0, 0, 1, 1]  # increments on TL0 frames only, wraps at 8 bits
    v, d = parse(pk.packetize(b"\x11abc", 1, None)[0])
    assert d.tl0picidx is None and d.tid == 0 and d.picture_id == 5


def test_l1t3_pattern_and_sync():
    assert [l1t3_layer(i, False)[0] for i in range(8)] == [0, 2, 1, 2] * 2
    assert [l1t3_layer(i, False)[1] for i in range(4)] == [False, True, True, False]
    assert l1t3_layer(3, True) == (0, False)  # an encoder-chosen keyframe is TL0 whatever the phase


def test_frame_rate_gate():
    g = FrameRateGate(15)
    assert [g.take(3000 * n) for n in range(8)] == [True, False] * 4
    g = FrameRateGate(30)
    assert all(g.take(3000 * n + random.Random(n).randint(-400, 400)) for n in range(60))
    g = FrameRateGate(15)
    kept = sum(g.take(3600 * n) for n in range(250))  # 25 fps source: about 15 fps, never more
    assert 140 <= kept <= 151
    g = FrameRateGate(15)
    assert g.take(0) and g.take(900000)  # after a gap the next frame is kept and the grid restarts
    assert not g.take(903000) and g.take(906000)


def test_keyframe_schedule():
    k = KeyframeSchedule(interval=3.0, min_interval=0.5)
    assert k.due(10.0, False)
    k.sent(10.0)
    assert not k.due(10.1, False) and not k.due(10.3, True)  # coalesced: too soon after the last one
    assert k.due(10.5, True) and not k.due(10.5, False) and k.due(13.0, False)
    assert k.due(9.0, False)  # media time went back: new stream, start with a keyframe


def test_fit_within():
    assert fit_within(1280, 720, 640, 360) == (640, 360)
    assert fit_within(640, 480, 640, 360) == (480, 360)
    assert fit_within(320, 180, 640, 360) == (320, 180)  # never upscale
    assert fit_within(1918, 1080, 320, 180) == (320, 180)


# ---------- the ladder on real media ----------

class Harness:
    """Feeds source frames in media time as fast as the worker takes them (never skipping encodes)."""

    def __init__(self, rungs: list[Rung]) -> None:
        self.rungs = rungs
        self.out: dict[int, list[bytes]] = {i: [] for i in range(len(rungs))}
        self.kf_requests = 0
        self.ladder = RoomLadder(rungs, lambda i, p: self.out[i].append(p), self._on_kf)

    async def __aenter__(self) -> "Harness":
        return self

    async def __aexit__(self, *exc) -> None:
        await self.ladder.close()

    def check(self, src: list[list[bytes]]) -> list[list[dict]]:
        """Every rung's stream checked against the source (see check_stream); its frames."""
        source_ts = {RtpView(f[0]).timestamp for f in src}
        return [check_stream(self.out[i], self.ladder.ssrcs[i], (r.width, r.height), source_ts)
                for i, r in enumerate(self.rungs)]

    def _on_kf(self) -> None:
        self.kf_requests += 1

    async def feed(self, frames: list[list[bytes]], codec: str, start: float = 0.0, skip=()) -> None:
        for n, pkts in enumerate(frames):
            now = start + n / 30
            for p in pkts:
                if p not in skip:
                    self.ladder.on_packet(p, codec, 90000, now)
            await self.settle()

    async def settle(self) -> None:
        lad = self.ladder
        for _ in range(2000):
            s = lad.stats()
            if s["queue_depth"] == 0 and lad.frames_processed == self.queued():
                break
            await asyncio.sleep(0.002)
        await asyncio.sleep(0.002)  # deliveries scheduled by the worker run now

    def queued(self) -> int:
        lad = self.ladder
        d = lad.stats()["dropped"]
        return lad.frames_in - d["idle"] - d["waiting_keyframe"] - d["overflow"]


def rung_frames(packets: list[bytes]) -> list[dict]:
    """Depacketize a rung's stream with the ladder's own depacketizer; metadata from each frame's first packet."""
    meta = {}
    for p in packets:
        v, d = parse(p)
        if d.start_of_partition and d.partition_id == 0:
            meta[v.timestamp] = {"ts": v.timestamp, "tid": d.tid, "sync": d.layer_sync, "pic": d.picture_id,
                                 "tl0": d.tl0picidx, "key": d.keyframe}
    dp = Depacketizer("VP8")
    frames = []
    for i, p in enumerate(packets):
        for f in dp.push(p, i * 1e-4):
            frames.append({**meta[f.timestamp], "data": f.data})
    assert dp.frames_dropped == 0 and dp.duplicates == 0
    return frames


def decode(frames: list[dict]) -> list[np.ndarray]:
    dec = av.CodecContext.create("vp8", "r")
    out = []
    for f in frames:
        pics = dec.decode(av.Packet(f["data"]))
        assert len(pics) == 1
        out.append(pics[0].to_ndarray(format="yuv420p"))
    return out


def check_stream(packets: list[bytes], ssrc: int, size: tuple[int, int], source_ts: set[int]) -> list[dict]:
    views = [RtpView(p) for p in packets]
    assert {v.ssrc for v in views} == {ssrc} and {v.payload_type for v in views} == {96}
    assert all(v.payload_size <= 1200 for v in views)
    assert all((b.seq - a.seq) & 0xFFFF == 1 for a, b in zip(views, views[1:]))  # continuous
    frames = rung_frames(packets)
    assert {f["ts"] for f in frames} <= source_ts  # the source's own timestamps: lip sync kept
    assert all((b["pic"] - a["pic"]) & 0x7FFF == 1 for a, b in zip(frames, frames[1:]))
    pics = decode(frames)
    h, w = size[1], size[0]
    assert pics[0].shape == (h * 3 // 2, w)
    # L1T3 after every keyframe, TL0PICIDX counting TL0 frames
    phase = 0
    for a, b in zip(frames, frames[1:]):
        phase = 0 if a["key"] else phase + 1
        assert b["tid"] == (0 if b["key"] else (0, 2, 1, 2)[(phase + 1) % 4])
        assert (b["tl0"] - a["tl0"]) & 0xFF == (1 if b["tid"] == 0 else 0)
    return frames


def tl_subset_identical(frames: list[dict], max_tid: int) -> bool:
    """Frames of TID <= max_tid decoded alone are bit-identical to the same frames in the full decode."""
    full = decode(frames)
    keep = [i for i, f in enumerate(frames) if f["tid"] <= max_tid]
    part = decode([frames[i] for i in keep])
    return all(np.array_equal(full[i], p) for i, p in zip(keep, part))


@pytest.fixture(scope="module")
def clip720() -> Path:
    return make_clip(CACHE / "clip-1280x720-4s-gop30-v1.webm", seconds=4.0, width=1280, height=720,
                     bitrate=1_500_000, gop=30)


@pytest.mark.timeout(120)
async def test_ladder_vp8_720p_source(clip720):
    src = vp8_clip_rtp(clip720, 0xFFFFFFFF - 45000)  # the source's timestamps wrap half a second in
    async with Harness(RUNGS) as h:
        lad = h.ladder
        lad.set_active({0, 1})
        await h.feed(src[:60], "VP8")
        n_before = len(rung_frames(h.out[0]))
        lad.request_keyframe(0)
        lad.request_keyframe(0)  # coalesced with the first
        await h.feed(src[60:], "VP8", start=2.0)
        s = lad.stats()
        assert s["dropped"] == {"idle": 0, "waiting_keyframe": 0, "overflow": 0, "encode_skipped": 0,
                                "decode_errors": 0}
        assert s["frames_decoded"] == len(src) == 120
        f0, f1 = h.check(src)
        assert len(f0) == 120 and 58 <= len(f1) <= 61  # 30 fps and 15 fps
        assert f0[n_before]["key"] and not f0[n_before + 1]["key"]  # requested: the very next frame
        assert [i for i, f in enumerate(f0) if f["key"]] == [0, n_before]  # coalesced, none periodic yet
        assert tl_subset_identical(f0, 0) and tl_subset_identical(f0, 1)
        assert any(f["sync"] for f in f0 if f["tid"] > 0)
        rates = [8 * r["octets"] / 4.0 for r in s["rungs"]]
        assert 250_000 < rates[0] < 750_000 and 60_000 < rates[1] < 250_000, rates
        assert s["worker_cpu_seconds"] > 0 and s["rungs"][0]["encode_ms"] > 0


@pytest.mark.timeout(120)
async def test_ladder_active_set_and_source_loss(clip):
    """360p VP8 source (keyframe every second): rung switching, idle decoder, loss -> source keyframe."""
    src = vp8_clip_rtp(clip, 12345)[:150]
    async with Harness(RUNGS) as h:
        lad = h.ladder
        lad.set_active({1})
        assert h.kf_requests == 1  # starting: the decoder needs a keyframe (this source's first frame is one)
        await h.feed(src[:20], "VP8")
        assert h.out[0] == [] and h.out[1]
        lad.set_active({0, 1})  # a viewer needs 360p: it starts with a keyframe, no source keyframe needed
        await h.feed(src[20:40], "VP8", start=20 / 30)
        assert h.kf_requests == 1 and rung_frames(h.out[0])[0]["key"]
        lad.set_active(set())  # nobody: decoder idle
        decoded = lad.frames_decoded
        await h.feed(src[40:70], "VP8", start=40 / 30)
        assert lad.frames_decoded == decoded and lad.stats()["dropped"]["idle"] == 30
        lad.set_active({0})  # back: ask the source for a keyframe, wait for one
        assert h.kf_requests == 2
        await h.feed(src[70:100], "VP8", start=70 / 30)
        assert lad.frames_decoded > decoded
        # a lost source packet: frames wait for the next source keyframe, one request (coalesced)
        requests, waiting = h.kf_requests, lad.dropped_waiting_keyframe
        await h.feed(src[100:150], "VP8", start=100 / 30, skip={src[101][0]})
        assert lad.dropped_waiting_keyframe > waiting and h.kf_requests == requests + 1
        s = lad.stats()
        assert s["dropped"]["decode_errors"] == 0 and s["depacketizer"]["frames_dropped"] == 1
        h.check(src)  # continuous across the pauses


@pytest.mark.timeout(120)
async def test_ladder_h264_source(h264_clip):
    src = h264_clip_rtp(h264_clip, 777)[:90]
    async with Harness(RUNGS) as h:
        h.ladder.set_active({0, 1})
        await h.feed(src, "H264")
        s = h.ladder.stats()
        assert s["frames_decoded"] == 90 and s["dropped"]["decode_errors"] == 0
        f0, f1 = h.check(src)
        assert len(f0) == 90 and 44 <= len(f1) <= 46


@pytest.mark.timeout(120)
async def test_ladder_overload_drops_but_stays_valid(clip720):
    """Fed far faster than it encodes: the queue stays bounded, frames are skipped or dropped (never the
    decoder's reference chain silently), and what comes out is still continuous and decodable."""
    src = vp8_clip_rtp(clip720, 5)
    async with Harness(RUNGS) as h:
        lad = h.ladder
        lad.queue_limit = 8
        lad.set_active({0, 1})
        depth = 0
        for n, pkts in enumerate(src):  # ~500 fps: beyond even decoding alone
            for p in pkts:
                lad.on_packet(p, "VP8", 90000, n / 30)
            depth = max(depth, lad.stats()["queue_depth"])
            await asyncio.sleep(0.002)
        await h.settle()
        s = lad.stats()
        assert depth <= 8
        assert s["dropped"]["encode_skipped"] + s["dropped"]["overflow"] > 0
        assert s["dropped"]["decode_errors"] == 0 and s["frames_decoded"] >= 8
        h.check(src)


# ---------- the ladder inside a room's track ----------

@pytest.mark.timeout(120)
async def test_track_ladder_serves_a_capped_viewer_and_idles_otherwise(clip720):
    """A single-layer 720p publisher's track with ladder rungs: a viewer capped at 360 lines gets the 360p
    rung (decodable, continuous numbering); a viewer of the original costs no ladder at all."""
    import time as _time

    from sfu.forward.consumer import Consumer
    from sfu.forward.viewer_out import ViewerOut
    from sfu.ingest.inbound import InboundStream
    from sfu.room.track import Track

    track = Track("video", _time.time, ladder_rungs=RUNGS)
    source_requests: list[int] = []
    track.on_keyframe_needed = lambda layer, now: source_requests.append(layer.ssrc)
    source = InboundStream("video", "VP8", 90000, 4321, 96)
    track.attach(source, 0.0)
    assert [s.height for s in track.layers[:2]] == [180, 360] and track.layers[-1] is source
    full_tap, capped_tap = RecordingTap(), RecordingTap()
    full = Consumer("video", ViewerOut(full_tap), 1, 2, {"VP8": (96, 97)}, 0, track)
    track.add(full, 0.0)
    src = vp8_clip_rtp(clip720, 5000)
    for n, pkts in enumerate(src[:30]):
        for p in pkts:
            source.last_packet_at = n / 30
            track.forward(source.classify(RtpView(p), n / 30), source, n / 30)
    source.update_rates(1.0)
    full.allocate(1.0)
    assert full.target is source and full_tap.sent and track.ladder is not None and track.ladder.ladder is None  # nobody wants a rung
    assert not track.ladder.encoding   # an idle ladder costs its node nothing (placement counts only working ones)

    capped = Consumer("video", ViewerOut(capped_tap), 3, 4, {"VP8": (96, 97)}, 0, track)
    capped.max_height = 360
    track.add(capped, 1.0)
    assert capped.target is track.layers[1]
    for n, pkts in enumerate(src[30:], start=30):
        now = n / 30
        for p in pkts:
            source.last_packet_at = now
            track.forward(source.classify(RtpView(p), now), source, now)
        for _ in range(200):  # let the worker keep up (media time, not wall time)
            lad = track.ladder.ladder
            if lad is None or lad.stats()["queue_depth"] == 0:
                break
            await asyncio.sleep(0.002)
        await asyncio.sleep(0.005)
    assert track.ladder.active == {0} and track.ladder.encoding
    out = [parse(p) for p in capped_tap.sent]
    assert len(out) > 50 and {v.ssrc for v, _ in out} == {3}
    seqs = [v.seq for v, _ in out]
    assert all((b - a) & 0xFFFF == 1 for a, b in zip(seqs, seqs[1:]))
    frames = []
    dp = Depacketizer("VP8")
    for i, p in enumerate(capped_tap.sent):
        frames += dp.push(p, i * 1e-4)
    pictures = decode([{"data": f.data} for f in frames])
    assert len(pictures) >= 60 and {p.shape for p in pictures} == {(360 * 3 // 2, 640)}
    assert all(p.shape == (720 * 3 // 2, 1280) for p in decode([{"data": f.data} for f in
               _depacketize(full_tap.sent)][:5]))
    await track.close()
    assert track.ladder is None


def _depacketize(packets: list[bytes]) -> list:
    dp = Depacketizer("VP8")
    out = []
    for i, p in enumerate(packets):
        out += dp.push(p, i * 1e-4)
    return out


@pytest.mark.timeout(120)
async def test_warm_ladder_starts_a_rung_without_waiting_for_the_source_keyframe(clip720):
    src = vp8_clip_rtp(clip720, 777)  # a keyframe every 30 frames
    for warm in (True, False):
        async with Harness(RUNGS) as h:
            h.ladder.set_warm(warm)
            await h.feed(src[:40], "VP8")
            assert h.ladder.stats()["frames_decoded"] == (40 if warm else 0)
            assert not h.out[0]                                  # warm decodes, encodes nothing
            h.ladder.set_active({0})
            await h.feed(src[40:50], "VP8", start=40 / 30)
            first = rung_frames(h.out[0])
            if warm:   # from the next frame on, starting with a keyframe of its own
                assert len(first) == 10 and first[0]["key"]
                assert first[0]["ts"] == RtpView(src[40][0]).timestamp
            else:      # a cold ladder waits for the source's next keyframe (frame 60)
                assert first == []
