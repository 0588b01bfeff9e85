"""One viewer's copy of one room track: picks a layer, rewrites and sends forwarded packets, answers NACKs
with RTX, probes for bandwidth with RTX copies, and sends sender reports."""
from __future__ import annotations

import random
import struct
from collections import Counter
from typing import TYPE_CHECKING, Optional

from sfu.allocation.allocator import Allocator, LinkReport
from sfu.rtp.codec_info import write_vp8_ids
from sfu.forward.munger import StreamMunger
from sfu.allocation.priority import YIELD_LOWEST, YIELD_PAUSE
from sfu.rtp.rtp_header import abs_send_time, build_header, one_byte_extensions
from sfu.forward.repair import repair
from sfu.forward.rtx_limiter import RtxLimiter
from sfu.forward.sent_stream import SentStream

if TYPE_CHECKING:
    from sfu.webrtc.aiortc_adapter import PacketTap
    from sfu.ingest.inbound import InboundStream, IngressPacket
    from sfu.room.track import Track

_PATCH = struct.Struct("!BHII")
_OSN = struct.Struct("!H")
ALL_TIDS = 3
LAYER_IDLE_S = 0.5        # a layer that sent nothing for this long is paused (the publisher cut it)
PROBE_PACKET_BYTES = 1000
FILL_PADDING = b"\x00\x00\x00\x04"
NACK_BURST = 8            # packets NACKed within NACK_BURST_S: a queue overflowed somewhere on the way
NACK_BURST_S = 0.25
REFLEX_S = 1.0            # ... then only the base temporal layer for this long, before any estimate says so
UNREPAIRABLE_KEYFRAME_S = 1.0  # at most one keyframe request per this for losses resends could not repair
THIN_MIN_FPS = 4.5        # thinning keeps at least this frame rate: 5 fps still moves, 3.75 reads as frozen
# Chromium sometimes decodes the first keyframe of a ladder rung it was switched to under congestion and then
# stalls until the next one, without asking (seen in about 1 real-link run in 6; cause not found yet). A second
# keyframe of the rung (small, made by our own encoder) shortly after bounds that stall.
FOLLOWUP_KEYFRAME_S = 0.5
# why a packet of a routed layer was not forwarded (stats: drops by reason)
DROP_OTHER_LAYER = "other_layer"      # a layer it is not switching to (routed for a moment during a switch)
DROP_NOT_READY = "transport_not_ready"
DROP_WAIT_KEYFRAME = "waiting_keyframe"
DROP_CODEC = "unsupported_codec"
DROP_HELD_BACK = "held_back_for_switch"
DROP_TEMPORAL = "temporal_layer"      # above the temporal layer limit (frame rate)
DROP_STALE = "too_old"                # before the layer's start, or too late to number


class Plan:
    """A consumer's decision for one packet: `drop` (the reason) or `out` (its sequence number and timestamp on
    the viewer's stream); `switched` when this packet started a layer (the track routes anew), `keyframe_of`
    the layer whose keyframe the drop waits for, `fill` a padding packet's (seq, ts) for a number given away."""

    __slots__ = ("drop", "out", "switched", "keyframe_of", "fill")

    def __init__(self, drop: Optional[str] = None, out: Optional[tuple[int, int]] = None, switched: bool = False,
                 keyframe_of: Optional["InboundStream"] = None, fill: Optional[tuple[int, int]] = None) -> None:
        self.drop = drop
        self.out = out
        self.switched = switched
        self.keyframe_of = keyframe_of
        self.fill = fill


# the plans of plain drops, shared (never modified)
DROPPED = {reason: Plan(drop=reason) for reason in (DROP_OTHER_LAYER, DROP_NOT_READY, DROP_CODEC, DROP_HELD_BACK,
                                                    DROP_TEMPORAL, DROP_STALE)}


class Consumer(SentStream):
    def __init__(self, kind: str, tap: "PacketTap", ssrc: int, rtx_ssrc: int,
                 payload_types: dict[str, tuple[int, Optional[int]]], abs_send_time_id: int,
                 track: "Track") -> None:
        super().__init__(ssrc)
        self.kind = kind
        self.tap = tap
        self.rtx_ssrc = rtx_ssrc
        self.payload_types = payload_types  # codec name -> (payload type, rtx payload type)
        self.ast_id = abs_send_time_id
        self.track = track
        self.munger = StreamMunger(random.getrandbits(16), random.getrandbits(32))
        self.limiter = RtxLimiter()
        self.allocator = Allocator()
        self.pt = 0
        self.rtx_pt: Optional[int] = None
        self.rtx_seq = random.getrandbits(16)
        self.last_vp8 = None
        self.waiting_keyframe = kind == "video"
        # layer choice
        self.target: Optional["InboundStream"] = None
        self.target_tid = ALL_TIDS
        self.tid_limit = ALL_TIDS
        # Switching down to a lower resolution waits for its keyframe, which must squeeze through the same
        # full link: meanwhile forward only the current layer's base temporal layer (no keyframe needed).
        self.thinning = False
        self.reflex_until = 0.0
        self.rtx_skipped = 0       # NACKed packets not resent: no longer of use to the viewer
        self.drops: Counter[str] = Counter()
        self.unrepairable_at = -1e9
        self.keyframe_ts: Optional[int] = None  # source RTP timestamp of the last keyframe forwarded
        self._unrepaired = False
        self.keyframes_for_loss = 0  # keyframes asked for because a loss could not be repaired
        self.resync = False  # after a pause: start again on a keyframe even on the same layer
        self.followup_keyframe_at = 0.0
        self._nack_times: list[float] = []
        self.max_height: Optional[int] = None   # the viewer's own cap (?max= on WHEP, or a message)
        self.yield_level = 0                     # priority.YIELD_*: a secondary session giving way to the main one
        self._probe_credit = 0.0
        self._probe_cursor = 0
        # counters (packets and octets: SentStream's)
        self.rtx_packets = 0
        self.probe_packets = 0
        self.nacks = 0
        self.plis = 0
        self.remb: Optional[int] = None   # the viewer's estimate (loss and RTT: SentStream's)

    # --- forwarding (hot path) -----------------------------------------------------------------------------

    def send(self, pkt: "IngressPacket", source: "InboundStream", payload: bytes, templates: dict,
             ast: bytes, now: float) -> None:
        """Forward one packet of a layer this consumer forwards or is switching to: plan, then apply."""
        plan = self.plan(pkt, source, self.tap.ready, now)
        if plan.switched:
            self.track.reroute()   # the layer left is no longer routed here
        if plan.drop is not None:
            self.drops[plan.drop] += 1
            if plan.keyframe_of is not None:
                self.track.request_keyframe(now, plan.keyframe_of)
            if plan.fill is not None:
                self._send_fill(*plan.fill)
            return
        out = plan.out
        view = pkt.view
        vp8 = pkt.vp8
        e = self.munger.epoch
        tmpl = templates.get(self.ast_id)
        if tmpl is None:
            ext = one_byte_extensions([(self.ast_id, ast)]) if self.ast_id else b""
            hdr = build_header(0, 0, 0, 0, 0, ext)
            tmpl = templates[self.ast_id] = (bytes(hdr) + payload, len(hdr))
        buf = bytearray(tmpl[0])
        _PATCH.pack_into(buf, 1, (view.marker << 7) | self.pt, out[0], out[1], self.ssrc)
        if vp8 is not None:
            if e.pid_offset or e.tl0_offset or e.pid_drops.count:  # type: ignore[union-attr]
                write_vp8_ids(buf, vp8, None if vp8.picture_id is None else e.out_pid(vp8.picture_id),  # type: ignore[union-attr]
                              None if vp8.tl0picidx is None else e.out_tl0(vp8.tl0picidx),  # type: ignore[union-attr]
                              tmpl[1] - view.payload_start)
            self.last_vp8 = vp8
        if self.tap.send_rtp(buf):
            self.packets += 1
            self.octets += len(payload)

    def plan(self, pkt: "IngressPacket", source: "InboundStream", ready: bool, now: float) -> Plan:
        """What to do with one packet of a routed layer: drop it (with the reason, and what the drop asks for:
        a keyframe, a padding packet in a hole), or forward it with the numbers it gets. Advances the
        viewer's numbering and layer state; does no IO (send applies the plan)."""
        m = self.munger
        e = m.epoch
        view = pkt.view
        switched = False
        if e is None or source is not e.source or self.resync:
            # Start only on a keyframe the viewer can receive: one sent before its DTLS is up is lost and
            # the picture would start a whole GOP late (the session asks for a keyframe when it is ready).
            if source is not self.target:
                return DROPPED[DROP_OTHER_LAYER]
            if not ready:
                return DROPPED[DROP_NOT_READY]
            if not pkt.keyframe:
                self.waiting_keyframe = True
                return Plan(drop=DROP_WAIT_KEYFRAME, keyframe_of=source)
            if not self._switch_to(source, pkt, now):
                return DROPPED[DROP_CODEC]
            switched = True
        elif self.thinning and source.temporal_layers == 1:
            # switching down from a layer with no temporal layer to shed: hold it back, so that the lower
            # layer's keyframe gets through the full link at once (the picture stalls either way)
            return DROPPED[DROP_HELD_BACK]
        if pkt.keyframe:
            self.keyframe_ts = view.timestamp  # its packets' repair goes first (on_nack)
        vp8 = pkt.vp8
        if vp8 is not None:
            if vp8.start_of_partition and vp8.partition_id == 0:
                self._temporal_step(vp8, pkt.keyframe, now)
                if vp8.tid > self.tid_limit and vp8.picture_id is not None:
                    m.drop_picture(vp8.picture_id)
            if vp8.tid > self.tid_limit:
                hole = m.drop(view.seq, view.timestamp)
                if hole is None and not switched:
                    return DROPPED[DROP_TEMPORAL]
                return Plan(drop=DROP_TEMPORAL, fill=hole, switched=switched)
        out = m.map(view.seq, view.timestamp, now)
        if out is None:
            return Plan(drop=DROP_STALE, switched=True) if switched else DROPPED[DROP_STALE]
        return Plan(out=out, switched=switched)

    def _temporal_step(self, vp8, keyframe: bool, now: float) -> None:
        """At a picture boundary: lower the frame rate at once; raise it only where the decoder can follow
        (a keyframe, a base-layer picture, or a layer-sync picture of the layer being added)."""
        want = self.target_tid
        if self.thinning or now < self.reflex_until:
            want = min(want, self._thinnest(self.munger.source))
        if want < self.tid_limit:
            self.tid_limit = want
        elif want > self.tid_limit:
            if keyframe or vp8.tid == 0:
                self.tid_limit = want
            elif vp8.layer_sync and self.tid_limit < vp8.tid <= want:
                self.tid_limit = vp8.tid

    @staticmethod
    def _thinnest(source) -> int:
        """The fewest temporal layers a quick thinning keeps: below THIN_MIN_FPS the picture would stutter
        like a freeze (a 15 fps ladder rung's base layer alone is 3.75 fps)."""
        rates = getattr(source, "frame_rates", None) or []
        for tid, fps in enumerate(rates):
            if fps >= THIN_MIN_FPS:
                return tid
        return max(0, len(rates) - 1)

    def _switch_to(self, source: "InboundStream", pkt: "IngressPacket", now: float) -> bool:
        pts = self.payload_types.get(source.codec)
        if pts is None:
            return False
        m = self.munger
        if self.last_vp8 is not None:  # continue PictureID/TL0PICIDX from what the viewer saw last
            m.note_picture(self.last_vp8.picture_id, self.last_vp8.tl0picidx)
        vp8 = pkt.vp8
        m.start(source, pkt.view.seq, pkt.view.timestamp, now, source.clock_rate,
                vp8.picture_id if vp8 else None, vp8.tl0picidx if vp8 else None,
                vp8.picture_id_bits if vp8 and vp8.picture_id_bits else 15)
        self.pt, self.rtx_pt = pts
        self.tid_limit = self.target_tid
        went_down, self.thinning = self.thinning, False
        self.resync = False
        self.waiting_keyframe = False
        if source.on_demand and went_down:  # a switch down, under congestion
            self.followup_keyframe_at = now + FOLLOWUP_KEYFRAME_S
        return True

    def _send_fill(self, seq: int, ts: int) -> None:
        """A padding-only packet where a left-out packet's number was already given away (it came late)."""
        hdr = build_header(0, self.pt, seq, ts, self.ssrc, self._send_time_ext())
        hdr[0] |= 0x20
        self.tap.send_rtp(hdr + FILL_PADDING)

    # --- layer choice -------------------------------------------------------------------------------------

    def wanted_sources(self) -> list["InboundStream"]:
        """The layers whose packets this consumer needs: the one it forwards and the one it switches to."""
        if self.target is None:  # paused, or nothing published
            return []
        cur = self.munger.source
        out = [cur] if cur is not None else []
        if self.target is not cur:
            out.append(self.target)
        return out  # type: ignore[return-value]

    def layers_changed(self, now: float) -> None:
        self.allocate(now)

    @property
    def trimmed(self) -> bool:
        """The allocator holds this viewer below the best quality on offer (its link is short)."""
        st = self.allocator.state
        return st.current is not None and st.best is not None and st.current < st.best

    @property
    def at_bottom(self) -> bool:
        st = self.allocator.state
        return st.current is not None and st.current == st.worst and st.current != st.best

    def set_yield(self, level: int, now: float) -> None:
        if level != self.yield_level:
            self.yield_level = level
            self.allocate(now)

    def allocate(self, now: float) -> None:
        layers = self.track.layers
        if not layers or self.kind == "video" and self.yield_level >= YIELD_PAUSE:
            self._set_target(None, ALL_TIDS, now)
            return
        if self.kind == "video" and self.yield_level == YIELD_LOWEST:
            self._set_target(layers[0], 0 if layers[0].temporal_layers > 1 else ALL_TIDS, now)
            return
        if self.kind != "video" or len(layers) == 1 and layers[0].temporal_layers == 1:
            self._set_target(layers[-1], ALL_TIDS, now)
            return
        rates = [s.rates if s.rates and (s.on_demand or now - s.last_packet_at < LAYER_IDLE_S) else []
                 for s in layers]
        cap = None
        if self.max_height is not None:
            fitting = [i for i, s in enumerate(layers) if s.height and s.height <= self.max_height]
            cap = fitting[-1] if fitting else 0
        # No audio reserve taken off the estimate: Chromium's REMB counts only packets that carry
        # abs-send-time (our video), and its cuts are relative to the video it received, so the audio's
        # share of the link is already outside it.
        measured = any(r for r, s in zip(rates, layers) if not s.on_demand)
        cur = self.munger.source
        forwarding_single = cur is not None and cur is not self.target and cur.temporal_layers == 1  # type: ignore[attr-defined]
        link = LinkReport(self.remb, self.fraction_lost, self.media_bps, rates, cap, self.nacks,
                          now < self.reflex_until, forwarding_single, self._unrepaired)
        choice = self.allocator.update(now, link) if measured else None
        if choice is None:  # no rates measured yet (publisher just started): best layer, all frames
            self._set_target(layers[-1] if cap is None else layers[cap], ALL_TIDS, now)
            return
        spatial, tid = choice
        self._set_target(layers[spatial], tid if layers[spatial].temporal_layers > 1 else ALL_TIDS, now)

    def _set_target(self, layer: Optional["InboundStream"], tid: int, now: float) -> None:
        self.target_tid = tid
        if layer is self.target:
            return
        cur = self.munger.source
        layers = self.track.layers
        self.thinning = (layer is not None and cur in layers and layer in layers
                         and layers.index(layer) < layers.index(cur))  # type: ignore[arg-type]
        if self.target is None and layer is not None and self.munger.source is not None:
            self.resync = True  # the viewer missed what came while paused: only a keyframe will do
        self.target = layer
        self.track.reroute()
        if layer is not None and (layer is not self.munger.source or self.resync) and self.tap.ready:
            self.track.request_keyframe(now, layer)

    def fast_tick(self, now: float, interval: float) -> None:
        """Every ~50 ms: bandwidth probe by resending recent packets as RTX (the viewer's estimator counts
        them; its decoder drops them as duplicates)."""
        if self.followup_keyframe_at and now >= self.followup_keyframe_at:
            self.followup_keyframe_at = 0.0
            self.track.request_keyframe(now, self.munger.source)
        bps = self.allocator.probe_rate(now)
        if not bps or self.rtx_pt is None:
            self._probe_credit = 0.0
            return
        self._probe_credit += bps * interval / 8
        last = self.munger.last_seq
        while self._probe_credit >= PROBE_PACKET_BYTES:
            self._probe_cursor = (self._probe_cursor + 1) % 64
            if not self._resend((last - self._probe_cursor) & 0xFFFF):
                break
            self._probe_credit -= PROBE_PACKET_BYTES
            self.probe_packets += 1

    # --- feedback from the viewer ---------------------------------------------------------------------------

    def on_nack(self, lost: list[int], now: float) -> None:
        self.nacks += len(lost)
        if self.kind == "video":
            self._nack_burst(len(lost), now)
        if self.allocator.probe_rate(now):  # a probe that overflows a queue must stop at once
            self.allocate(now)
        m = self.munger
        cur = m.source
        # A retransmission the viewer cannot use only takes the link from the next keyframe: packets of an
        # earlier epoch (a keyframe of the current source followed them) or of a layer without temporal
        # layers that is being left for a lower one (its packets are held back already).
        abandoning = self.thinning and cur is not None and cur.temporal_layers == 1  # type: ignore[attr-defined]

        def find(out_seq: int) -> Optional[tuple["IngressPacket", bool]]:
            found = m.to_source(out_seq)
            if found is None or abandoning or (self.kind == "video" and found[2] is not m.epoch):
                return None
            pkt = found[0].cached(found[1])  # type: ignore[attr-defined]
            if pkt is None:
                return None
            # the picture the viewer's decoder restarts from: its repair may overdraw the budget (one picture)
            return pkt, pkt.view.timestamp == self.keyframe_ts and found[0] is m.source

        outcome = repair(lost, find, self.limiter, self.media_bps, now, lambda out_seq, _: self._resend(out_seq))
        self.rtx_packets += outcome.resent
        self.rtx_skipped += outcome.skipped
        if self.kind == "video" and outcome.exhausted:
            self._unrepairable(now)

    def _unrepairable(self, now: float) -> None:
        """The viewer still misses a packet of the current picture after every resend we allow (each was lost
        again on a full link): its decoder can only go on from a keyframe. Get it one now, instead of leaving
        it to the viewer, which Chromium asks for only after its 3 s frame timeout: the next lower resolution's
        (smaller: it gets through the full link) if there is one, else the current layer's."""
        if now - self.unrepairable_at < UNREPAIRABLE_KEYFRAME_S:
            return
        self.unrepairable_at = now
        self.keyframes_for_loss += 1
        before = self.target
        self._unrepaired = True   # the allocator moves to a lower resolution if there is one ...
        try:
            self.allocate(now)
        finally:
            self._unrepaired = False
        if self.target is before:  # ... else the current layer's keyframe it is
            self.track.request_keyframe(now, self.munger.source)  # type: ignore[arg-type]

    def _nack_burst(self, count: int, now: float) -> None:
        """A reflex ahead of the estimate: a burst of NACKs means a queue on the way overflowed, and the
        viewer's REMB will say so only after its next report. Halving the load at once lets the queue
        drain, so the frames keep coming while the allocator decides."""
        times = self._nack_times
        times.extend([now] * min(count, NACK_BURST + 1))
        while times and times[0] < now - NACK_BURST_S:
            times.pop(0)
        if len(times) > NACK_BURST:
            self.reflex_until = now + REFLEX_S
            times.clear()
            self.allocate(now)  # a layer without temporal layers to shed sheds resolution (allocator reflex)

    def _resend(self, out_seq: int) -> bool:
        """Send the packet that carried `out_seq` again, as RTX when negotiated."""
        found = self.munger.to_source(out_seq)
        if found is None:
            return False
        source, src_seq, e = found
        pkt = source.cached(src_seq)  # type: ignore[attr-defined]
        if pkt is None:
            return False
        view = pkt.view
        payload = bytearray(view.payload)
        vp8 = pkt.vp8
        if vp8 is not None and (e.pid_offset or e.tl0_offset or e.pid_drops.count):
            write_vp8_ids(payload, vp8, None if vp8.picture_id is None else e.out_pid(vp8.picture_id),
                          None if vp8.tl0picidx is None else e.out_tl0(vp8.tl0picidx), -view.payload_start)
        out_ts = (view.timestamp + e.ts_offset) & 0xFFFFFFFF
        ext = self._send_time_ext()
        if self.rtx_pt is not None:
            hdr = build_header(view.marker, self.rtx_pt, self.rtx_seq, out_ts, self.rtx_ssrc, ext)
            self.rtx_seq = (self.rtx_seq + 1) & 0xFFFF
            data = hdr + _OSN.pack(out_seq) + payload
        else:
            data = build_header(view.marker, self.pt, out_seq, out_ts, self.ssrc, ext) + payload
        return self.tap.send_rtp(data)

    def _send_time_ext(self) -> bytes:
        """abs-send-time on repairs, probes and fills too: the viewer's bandwidth estimator counts only
        packets that carry it, so probes without it could never raise the estimate."""
        if not self.ast_id:
            return b""
        return one_byte_extensions([(self.ast_id, abs_send_time(self.track.wall_clock()))])

    def on_keyframe_request(self, now: float) -> None:
        self.plis += 1
        self.track.request_keyframe(now, self.munger.source or self.target)  # type: ignore[arg-type]

    def on_estimate(self, bitrate: int, now: float) -> None:
        """A REMB from the viewer: the allocator may move down at once."""
        self.remb = bitrate
        if self.kind == "video":
            self.allocate(now)

    # --- periodic -------------------------------------------------------------------------------------------

    def tick(self, now: float, wall: float, interval: float) -> None:
        """Once a second: media rate, layer choice, and a sender report mapped onto our timestamps."""
        self.rate_tick(interval)
        if self.kind == "video":
            self.allocate(now)
        m = self.munger
        source = m.source
        if source is None or not self.packets:
            return
        clock = source.rtp_time_at(now)  # type: ignore[attr-defined]
        if clock is None:
            return
        ntp, src_ts = clock
        sr = self.sender_report(ntp, src_ts + m.epoch.ts_offset, now)  # type: ignore[union-attr]
        if sr is not None:
            self.tap.send_rtcp(sr)

    def dump(self) -> dict:
        layers = self.track.layers
        cur = self.munger.source
        st = self.allocator.state
        return {
            "kind": self.kind, "ssrc": self.ssrc, "packets": self.packets, "octets": self.octets,
            "rtx_packets": self.rtx_packets, "probe_packets": self.probe_packets, "nacks": self.nacks,
            "plis": self.plis, "waiting_keyframe": self.waiting_keyframe, "switches": self.munger.switches,
            "layer": layers.index(cur) if cur in layers else None,  # type: ignore[arg-type]
            "layer_height": getattr(cur, "height", None) or None,
            "target_layer": layers.index(self.target) if self.target in layers else None,  # type: ignore[arg-type]
            "temporal_limit": self.tid_limit, "target_temporal": self.target_tid, "thinning": self.thinning,
            "reflex_until": round(self.reflex_until, 3),
            "max_height": self.max_height, "yield": self.yield_level,
            "switches_up": st.switches_up, "switches_down": st.switches_down, "allocator": st.reason,
            "probing_bps": st.probe_bps if st.probe_until else 0, "dropped": self.munger.dropped,
            "fraction_lost": round(self.fraction_lost, 4), "rtt_ms": None if self.rtt is None else round(self.rtt * 1000, 1),
            "remb_bps": self.remb, "bitrate_bps": int(self.media_bps),
            "rtx_suppressed": self.limiter.suppressed, "rtx_skipped": self.rtx_skipped, "drops": dict(self.drops),
            "rtx_over_budget": self.limiter.over_budget, "keyframes_for_loss": self.keyframes_for_loss,
        }
