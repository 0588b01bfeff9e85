"""One media stream arriving from a publisher: its statistics, loss repair, packet cache and keyframe requests."""
from __future__ import annotations

from typing import Optional

from sfu.rtp.codec_info import Vp8Descriptor, h264_is_keyframe, parse_vp8, vp8_keyframe_size
from sfu.ingest.keyframe_requester import KeyframeRequester
from sfu.ingest.nack_generator import NackGenerator
from sfu.ingest.reception_stats import ReceptionStats
from sfu.rtp.rtp_header import RtpView

CACHE_SIZE = 1024  # about 6 s of 1.5 Mbit/s video: plenty for NACKs, bounded memory
MAX_TID = 3
RATE_SMOOTHING = 0.4  # weight of the newest one-second sample (keyframes make single seconds spiky)


class IngressPacket:
    """A parsed packet as it is fanned out: shared by every viewer, never modified."""

    __slots__ = ("view", "vp8", "keyframe", "arrival")

    def __init__(self, view: RtpView, vp8: Optional[Vp8Descriptor], keyframe: bool, arrival: float) -> None:
        self.view = view
        self.vp8 = vp8
        self.keyframe = keyframe
        self.arrival = arrival


class InboundStream:
    on_demand = False  # a layer the SFU makes only while wanted (the ladder's rungs): always an option

    def __init__(self, kind: str, codec: str, clock_rate: int, ssrc: int, payload_type: int,
                 rid: Optional[str] = None) -> None:
        self.kind = kind
        self.rid = rid  # simulcast encoding id, None for a single-layer publisher
        self.codec = codec  # "VP8", "H264", "opus", ...
        self.clock_rate = clock_rate
        self.ssrc = ssrc
        self.payload_type = payload_type
        self.rtx_ssrc: Optional[int] = None
        self.stats = ReceptionStats(clock_rate)
        self.nack = NackGenerator() if kind == "video" else None
        self.keyframes = KeyframeRequester()
        self.cache: list[Optional[IngressPacket]] = [None] * CACHE_SIZE if kind == "video" else []
        self.sr: Optional[tuple[int, int, float]] = None  # (ntp, rtp timestamp, local arrival time)
        self.lsr_time: float = 0.0
        self.lsr: int = 0
        self.keyframes_seen = 0
        self.rtx_forwarded = 0
        self.rtx_dropped = 0
        self.malformed = 0
        self.bad_seq = -1               # RFC 3550 A.1 probation for sequence jumps
        self.last_packet_at = 0.0
        self.width = 0                  # from the last VP8 keyframe
        self.height = 0
        self.tid_octets = [0] * (MAX_TID + 1)
        self.temporal_layers = 1        # highest TID seen + 1
        self.rates: list[float] = []    # bit/s with temporal layers 0..t, smoothed
        self.tid_pictures = [0] * (MAX_TID + 1)
        self.frame_rates: list[float] = []  # pictures/s with temporal layers 0..t, smoothed

    def classify(self, view: RtpView, arrival: float) -> IngressPacket:
        vp8 = None
        if self.codec == "VP8":
            vp8 = parse_vp8(view.data, view.payload_start, view.payload_end)
            keyframe = vp8 is not None and vp8.keyframe
        elif self.codec == "H264":
            keyframe = h264_is_keyframe(view.data, view.payload_start, view.payload_end)
        else:
            keyframe = True
        if vp8 is not None:
            tid = vp8.tid if vp8.tid <= MAX_TID else MAX_TID
            self.tid_octets[tid] += view.payload_end - view.payload_start
            if vp8.start_of_partition and vp8.partition_id == 0:
                self.tid_pictures[tid] += 1
            if tid >= self.temporal_layers:
                self.temporal_layers = tid + 1
        else:
            self.tid_octets[0] += view.payload_end - view.payload_start
        if keyframe and self.kind == "video":
            self.keyframes_seen += 1
            self.keyframes.on_keyframe(arrival)
            if vp8 is not None:
                size = vp8_keyframe_size(view.data, view.payload_start + vp8.size, view.payload_end)
                if size is not None:
                    self.width, self.height = size
        pkt = IngressPacket(view, vp8, keyframe, arrival)
        if self.cache:
            self.cache[view.seq % CACHE_SIZE] = pkt
        return pkt

    def update_rates(self, interval: float) -> None:
        """Once a second: fold the octets counted since into the smoothed per-temporal-layer bitrates."""
        n = self.temporal_layers
        cumulative, total = [], 0
        for t in range(n):
            total += self.tid_octets[t]
            cumulative.append(total * 8 / interval)
        self.tid_octets = [0] * (MAX_TID + 1)
        self.rates = _smoothed(self.rates, cumulative)
        fps = [sum(self.tid_pictures[:t + 1]) / interval for t in range(n)]
        self.tid_pictures = [0] * (MAX_TID + 1)
        self.frame_rates = _smoothed(self.frame_rates, fps)

    def cached(self, seq: int) -> Optional[IngressPacket]:
        if not self.cache:
            return None
        p = self.cache[seq % CACHE_SIZE]
        return p if p is not None and p.view.seq == seq else None

    def on_sender_report(self, ntp: int, rtp_ts: int, now: float) -> None:
        self.sr = (ntp, rtp_ts, now)
        self.lsr = (ntp >> 16) & 0xFFFFFFFF
        self.lsr_time = now

    def rtp_time_at(self, now: float) -> Optional[tuple[int, int]]:
        """(ntp, rtp timestamp) of this stream's clock extrapolated to `now`, from its last SR."""
        if self.sr is None:
            return None
        ntp, rtp_ts, at = self.sr
        elapsed = now - at
        return ntp + int(elapsed * (1 << 32)), (rtp_ts + int(elapsed * self.clock_rate)) & 0xFFFFFFFF


def _smoothed(old: list[float], new: list[float]) -> list[float]:
    if len(old) != len(new):
        return new
    return [o + RATE_SMOOTHING * (n - o) for o, n in zip(old, new)]
