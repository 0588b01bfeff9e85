"""One media stream arriving from a publisher: its statistics, loss repair, packet cache and keyframe requests."""
from __future__ import annotations

from typing import Optional

from .codec_info import Vp8Descriptor, h264_is_keyframe, parse_vp8
from .keyframe_requester import KeyframeRequester
from .nack_generator import NackGenerator
from .reception_stats import ReceptionStats
from .rtp_header import RtpView

CACHE_SIZE = 1024  # about 6 s of 1.5 Mbit/s video: plenty for NACKs, bounded memory


class IngressPacket:
    """A parsed packet as it is fanned out: shared by every viewer, never modified."""

    __slots__ = ("view", "vp8", "keyframe", "arrival")

    def __init__(self, view: RtpView, vp8: Optional[Vp8Descriptor], keyframe: bool, arrival: float) -> None:
        self.view = view
        self.vp8 = vp8
        self.keyframe = keyframe
        self.arrival = arrival


class InboundStream:
    def __init__(self, kind: str, codec: str, clock_rate: int, ssrc: int, payload_type: int) -> None:
        self.kind = kind
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

    def classify(self, view: RtpView, arrival: float) -> IngressPacket:
        vp8 = None
        if self.codec == "VP8":
            vp8 = parse_vp8(view.data, view.payload_start, view.payload_end)
            keyframe = vp8 is not None and vp8.keyframe
        elif self.codec == "H264":
            keyframe = h264_is_keyframe(view.data, view.payload_start, view.payload_end)
        else:
            keyframe = True
        if keyframe and self.kind == "video":
            self.keyframes_seen += 1
            self.keyframes.on_keyframe(arrival)
        pkt = IngressPacket(view, vp8, keyframe, arrival)
        if self.cache:
            self.cache[view.seq % CACHE_SIZE] = pkt
        return pkt

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
