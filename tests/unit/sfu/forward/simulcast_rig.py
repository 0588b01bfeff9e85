"""A simulcast rig for the viewer side, fed recorded-style packet sequences with injected time (no sockets).

The packet fixtures model what Chromium sends for simulcast with VP8 L1T3: three encodings, each with its
own SSRC, sequence numbers, PictureIDs and TL0PICIDX, temporal pattern 0,2,1,2, a keyframe every 2 s.
"""
from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Optional

from sfu.forward.consumer import Consumer
from sfu.forward.transport_wide import TransportWideSequencer
from sfu.forward.viewer_out import ViewerOut
from sfu.ingest.inbound import InboundStream
from sfu.room.track import Track
from sfu.rtp.codec_info import parse_vp8
from sfu.rtp.rtp_header import RtpView, build_header
from testkit.recording_tap import RecordingTap


TID_PATTERN = (0, 2, 1, 2)


FPS = 30


# what the rig's three layers send at 1, 2 and 3 temporal layers (bps)
RATES = [[60e3, 90e3, 120e3], [200e3, 320e3, 450e3], [700e3, 1.1e6, 1.5e6]]


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

    def __init__(self, packets_per_frame=(1, 2, 4), keyframe_every: int = 60,
                 transport: Optional[TransportWideSequencer] = None, abs_send_time_id: int = 0) -> None:
        self.track = Track("video", lambda: 0.0)
        self.keyframe_requests: list[tuple[float, int]] = []
        self.pending_keyframe: set[int] = set()
        self.track.on_keyframe_needed = self._keyframe_needed
        self.sources = [LayerSource(1000 + i, n) for i, n in enumerate(packets_per_frame)]
        self.streams = [InboundStream("video", "VP8", 90000, s.ssrc, 96, rid) for s, rid in zip(self.sources, "lmh")]
        for i, st in enumerate(self.streams):
            st.height = (180, 360, 720)[i]
        self.tap = RecordingTap()
        self.consumer = Consumer("video", ViewerOut(self.tap, transport), 5555, 5556, {"VP8": (96, 97)},
                                 abs_send_time_id, self.track)
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
    """Force a layer, as the allocator would choose it."""
    rig.consumer.set_target(rig.streams[layer], tid, rig.now)


def as_one_layer(stream: InboundStream) -> None:
    """Make a layer look like a one-layer publisher's stream (no temporal layers to shed)."""
    plain = stream.classify

    def one_layer(view, arrival):
        pkt = plain(view, arrival)
        stream.temporal_layers = 1
        return pkt
    stream.classify = one_layer  # type: ignore[method-assign]
