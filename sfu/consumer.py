"""One viewer's copy of one room track: rewrites and sends forwarded packets, answers NACKs with RTX, sends SRs."""
from __future__ import annotations

import random
import struct
from collections import OrderedDict
from typing import TYPE_CHECKING, Callable, Optional

from . import rtcp_builder
from .codec_info import rewrite_vp8
from .munger import StreamMunger
from .rtp_header import build_header, one_byte_extensions
from .rtx_limiter import RtxLimiter

if TYPE_CHECKING:
    from .aiortc_adapter import PacketTap
    from .inbound import InboundStream, IngressPacket

_PATCH = struct.Struct("!BHII")
_OSN = struct.Struct("!H")


class Consumer:
    def __init__(self, kind: str, tap: "PacketTap", ssrc: int, rtx_ssrc: int,
                 payload_types: dict[str, tuple[int, Optional[int]]], abs_send_time_id: int,
                 request_keyframe: Callable[[float], None]) -> None:
        self.kind = kind
        self.tap = tap
        self.ssrc = ssrc
        self.rtx_ssrc = rtx_ssrc
        self.payload_types = payload_types  # codec name -> (payload type, rtx payload type)
        self.ast_id = abs_send_time_id
        self.request_keyframe = request_keyframe
        self.munger = StreamMunger(random.getrandbits(16), random.getrandbits(32))
        self.limiter = RtxLimiter()
        self.pt = 0
        self.rtx_pt: Optional[int] = None
        self.rtx_seq = random.getrandbits(16)
        self.last_vp8 = None
        self.waiting_keyframe = kind == "video"
        self.paused = False
        # counters
        self.packets = 0
        self.octets = 0
        self.rtx_packets = 0
        self.nacks = 0
        self.plis = 0
        self.unsupported_codec = 0
        # receiver feedback
        self.fraction_lost = 0.0
        self.cumulative_lost = 0
        self.rtt: Optional[float] = None
        self.remb: Optional[int] = None
        self.media_bps = 0.0
        self._octets_prior = 0
        self._sr_sent: "OrderedDict[int, float]" = OrderedDict()

    def send(self, pkt: "IngressPacket", source: "InboundStream", payload: bytes, templates: dict,
             ast: bytes, now: float) -> None:
        """Forward one packet (hot path: called for every viewer for every packet)."""
        m = self.munger
        view = pkt.view
        if m.source is not source:
            # Start only on a keyframe the viewer can receive: one sent before its DTLS is up is lost and
            # the picture would start a whole GOP late (the tap asks for a keyframe when it becomes ready).
            if not self.tap.ready:
                return
            if not pkt.keyframe:
                self.waiting_keyframe = True
                self.request_keyframe(now)
                return
            if not self._switch_to(source, pkt, now):
                return
        out = m.map(view.seq, view.timestamp, now)
        if out is None:
            return
        tmpl = templates.get(self.ast_id)
        if tmpl is None:
            ext = one_byte_extensions([(self.ast_id, ast)]) if self.ast_id else b""
            hdr = build_header(0, 0, 0, 0, 0, ext)
            tmpl = templates[self.ast_id] = (bytes(hdr) + payload, len(hdr))
        buf = bytearray(tmpl[0])
        _PATCH.pack_into(buf, 1, (view.marker << 7) | self.pt, out[0], out[1], self.ssrc)
        vp8 = pkt.vp8
        if vp8 is not None:
            if m.pid_offset or m.tl0_offset:
                rewrite_vp8(buf, vp8, m.pid_offset, m.tl0_offset, tmpl[1] - view.payload_start)
            self.last_vp8 = vp8
        if self.tap.send_rtp(buf):
            self.packets += 1
            self.octets += len(payload)

    def _switch_to(self, source: "InboundStream", pkt: "IngressPacket", now: float) -> bool:
        pts = self.payload_types.get(source.codec)
        if pts is None:
            self.unsupported_codec += 1
            return False
        m = self.munger
        if self.last_vp8 is not None:
            lv = self.last_vp8
            m.note_vp8(lv.picture_id, lv.tl0picidx, lv.picture_id_bits)
        vp8 = pkt.vp8
        m.start(source, pkt.view.seq, pkt.view.timestamp, now, source.clock_rate,
                vp8.picture_id if vp8 else None, vp8.tl0picidx if vp8 else None)
        self.pt, self.rtx_pt = pts
        self.waiting_keyframe = False
        return True

    # --- feedback from the viewer ---------------------------------------------------------------------------

    def on_nack(self, lost: list[int], now: float) -> None:
        self.nacks += len(lost)
        for out_seq in lost:
            found = self.munger.to_source(out_seq)
            if found is None:
                continue
            source, src_seq, epoch = found
            pkt = source.cached(src_seq)  # type: ignore[attr-defined]
            if pkt is None:
                continue
            view = pkt.view
            if not self.limiter.allow(out_seq, view.payload_size, now, self.media_bps):
                continue
            payload = bytearray(view.payload)
            if pkt.vp8 is not None and (epoch[4] or epoch[5]):
                rewrite_vp8(payload, pkt.vp8, epoch[4], epoch[5], -view.payload_start)
            out_ts = view.timestamp + epoch[3]
            if self.rtx_pt is not None:
                hdr = build_header(view.marker, self.rtx_pt, self.rtx_seq, out_ts, self.rtx_ssrc)
                self.rtx_seq = (self.rtx_seq + 1) & 0xFFFF
                data = hdr + _OSN.pack(out_seq) + payload
            else:
                data = build_header(view.marker, self.pt, out_seq, out_ts, self.ssrc) + payload
            if self.tap.send_rtp(data):
                self.rtx_packets += 1

    def on_keyframe_request(self, now: float) -> None:
        self.plis += 1
        self.request_keyframe(now)

    def on_report(self, fraction_lost: int, cumulative_lost: int, lsr: int, dlsr: int, now: float) -> None:
        self.fraction_lost = fraction_lost / 256
        self.cumulative_lost = cumulative_lost
        sent = self._sr_sent.get(lsr)
        if sent is not None and lsr:
            rtt = now - sent - dlsr / 65536
            if 0 <= rtt < 10:
                self.rtt = rtt if self.rtt is None else 0.8 * self.rtt + 0.2 * rtt

    # --- periodic -------------------------------------------------------------------------------------------

    def tick(self, source: Optional["InboundStream"], now: float, wall: float, interval: float) -> None:
        """Once a second: update the media rate and send a sender report mapped onto our timestamps."""
        self.media_bps = (self.octets - self._octets_prior) * 8 / interval
        self._octets_prior = self.octets
        m = self.munger
        if source is None or m.source is not source or not self.packets:
            return
        clock = source.rtp_time_at(now)
        if clock is None:
            return
        ntp, src_ts = clock
        sr = rtcp_builder.sender_report(self.ssrc, ntp, src_ts + m.ts_offset, self.packets, self.octets)
        if self.tap.send_rtcp(sr):
            self._sr_sent[(ntp >> 16) & 0xFFFFFFFF] = now
            while len(self._sr_sent) > 8:
                self._sr_sent.popitem(last=False)

    def dump(self) -> dict:
        return {
            "kind": self.kind, "ssrc": self.ssrc, "packets": self.packets, "octets": self.octets,
            "rtx_packets": self.rtx_packets, "nacks": self.nacks, "plis": self.plis,
            "waiting_keyframe": self.waiting_keyframe, "switches": self.munger.switches,
            "fraction_lost": round(self.fraction_lost, 4), "rtt_ms": None if self.rtt is None else round(self.rtt * 1000, 1),
            "remb_bps": self.remb, "bitrate_bps": int(self.media_bps),
            "rtx_suppressed": self.limiter.suppressed, "rtx_over_budget": self.limiter.over_budget,
        }
