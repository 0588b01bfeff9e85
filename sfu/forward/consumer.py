"""One viewer's copy of one room track: applies the switch planner's plan to each packet (rewrite and send),
chooses the layer with its allocator, answers NACKs with RTX, probes for bandwidth with RTX copies, and sends
sender reports."""
from __future__ import annotations

import random
import struct
from collections import Counter
from typing import TYPE_CHECKING, Callable, Optional

from sfu.allocation.allocator import PROBE_RAMP_S, PROBE_S, Allocator, LinkReport
from sfu.allocation.priority import YIELD_LOWEST, YIELD_PAUSE
from sfu.congestion.loss_level import LossLevel
from sfu.forward.audio_redundancy import AudioRedundancy
from sfu.forward.contracts import ConsumerOwner
from sfu.forward.repair import RepairOutcome, repair
from sfu.forward.repair_watch import Resent
from sfu.forward.rtx_limiter import RtxLimiter
from sfu.forward.sent_stream import SentStream
from sfu.forward.switch_planner import ALL_TIDS, SwitchPlanner
from sfu.forward.pacer import AUDIO, PROBE, RETRANSMISSION, VIDEO
from sfu.forward.viewer_out import ViewerOut
from sfu.rtp.codec_info import write_vp8_ids
from sfu.rtp.rtp_header import abs_send_time, build_header

if TYPE_CHECKING:
    from sfu.ingest.inbound import InboundStream, IngressPacket

_PATCH = struct.Struct("!BHII")
_OSN = struct.Struct("!H")
LAYER_IDLE_S = 0.5        # a layer that sent nothing for this long is paused (the publisher cut it)
PROBE_PACKET_BYTES = 1000
FILL_PADDING = b"\x00\x00\x00\x04"
NACK_BURST = 8            # packets NACKed within NACK_BURST_S: a queue overflowed somewhere on the way
NACK_BURST_S = 0.25
REFLEX_S = 1.0            # ... then only the base temporal layer for this long, before any estimate says so
SHARE_DECAY = 0.9
UNREPAIRABLE_KEYFRAME_S = 1.0  # at most one keyframe request per this for losses resends could not repair
RTX_CLEAN_RATIO = 0.15    # a viewer's repair budget on a clean link (it grows with the link's own loss) ...
RTX_MIN_BPS = 100_000     # ... and its floor: a thin layer's keyframe still gets repaired


class Consumer(SentStream):
    def __init__(self, kind: str, out: ViewerOut, ssrc: int, rtx_ssrc: int,
                 payload_types: dict[str, tuple[int, Optional[int]]], abs_send_time_id: int,
                 owner: ConsumerOwner, red: Optional[AudioRedundancy] = None) -> None:
        super().__init__(ssrc)
        self.kind = kind
        self.out = out               # the viewer connection's way out (paced, numbered), shared by its consumers
        self.media_class = AUDIO if kind == "audio" else VIDEO
        self.rtx_ssrc = rtx_ssrc
        self.ast_id = abs_send_time_id
        self.ext_key = (out.ext_id, abs_send_time_id)  # header template key
        self.red = red               # redundant audio, when the viewer takes it
        self.owner = owner
        self.planner = SwitchPlanner(kind, payload_types, random.getrandbits(16), random.getrandbits(32))
        self.limiter = RtxLimiter(budget_ratio=RTX_CLEAN_RATIO, min_budget_bps=RTX_MIN_BPS)
        self.allocator = Allocator()
        self.rtx_seq = random.getrandbits(16)
        self.rtx_skipped = 0       # NACKed packets not resent: no longer of use to the viewer
        self.drops: Counter[str] = Counter()
        self.unrepairable_at = -1e9
        self._unrepaired = False
        self.keyframes_for_loss = 0  # keyframes asked for because a loss could not be repaired
        self._nack_times: list[float] = []
        self.max_height: Optional[int] = None   # the viewer's own cap (?max= on WHEP, or a message)
        self.yield_level = 0                     # priority.YIELD_*: a secondary session giving way to the main one
        self._probe_credit = 0.0
        self._probe_cursor = 0
        # counters (packets and octets: SentStream's)
        self.rtx_packets = 0
        self.repairs_lost = 0        # retransmissions the transport feedback reported lost (resent at once)
        self.probe_packets = 0
        self.nacks = 0
        self.plis = 0
        # the viewer's link: the estimate (its REMB, or ours from its transport-wide feedback), the link's own
        # steady random loss (loss and RTT of the latest reports: SentStream's)
        self.estimate_bps: Optional[int] = None
        self.share_bps = 0.0
        self.estimate_from = "remb"
        self.loss_floor = 0.0
        self.link_loss: Optional[float] = None   # the latest loss interval of transport feedback (else RRs')
        self.heard_loss = 0.0                     # loss seen lately without a queue, whatever its cause
        self.capacity_bps: Optional[float] = None  # the link's known capacity, less the audio's share
        self.arrived_bps: Optional[float] = None   # what arrived of it lately, by the transport feedback
        # a probe proved its rate: (now, its start, its end), for a send-side estimator to take up
        self.on_probe_proven: Callable[[float, float, float], None] = lambda now, start, end: None
        self._own_loss = LossLevel()     # the floor from receiver reports, while no transport feedback says it
        self._report_at: Optional[float] = None

    @property
    def target(self) -> Optional["InboundStream"]:
        """The layer chosen for this viewer (forwarded, or being switched to); None while paused."""
        return self.planner.target

    # --- forwarding (hot path) -----------------------------------------------------------------------------

    def send(self, pkt: "IngressPacket", source: "InboundStream", payload: bytes, templates: dict,
             ast: bytes, now: float) -> None:
        """Forward one packet of a layer this consumer forwards or is switching to: plan, then apply."""
        before = self.planner.source
        plan = self.planner.plan(pkt, source, self.out.ready, now)
        if plan.switched:
            self.owner.reroute()   # the layer left is no longer routed here
            if before is not None and before is not source:
                self.out.drop_queued(before)   # its backlog would only delay the new layer's keyframe
        if plan.drop is not None:
            self.drops[plan.drop] += 1
            if plan.keyframe_of is not None:
                self.owner.request_keyframe(now, plan.keyframe_of)
            if plan.fill is not None:
                self._send_fill(*plan.fill, now)
            return
        out = plan.out
        view = pkt.view
        if self.red is not None and self._send_red(self.red, view.marker, out, payload, ast, plan.switched, now):  # type: ignore[arg-type]
            return
        vp8 = pkt.vp8
        e = self.planner.munger.epoch
        tmpl = templates.get(self.ext_key)
        if tmpl is None:
            hdr = build_header(0, 0, 0, 0, 0, self._extensions(ast))
            tmpl = templates[self.ext_key] = (bytes(hdr) + payload, len(hdr))
        buf = bytearray(tmpl[0])
        _PATCH.pack_into(buf, 1, (view.marker << 7) | self.planner.pt, out[0], out[1], self.ssrc)  # type: ignore[index]
        if vp8 is not None:
            if e.pid_offset or e.tl0_offset or e.pid_drops.count:  # type: ignore[union-attr]
                write_vp8_ids(buf, vp8, None if vp8.picture_id is None else e.out_pid(vp8.picture_id),  # type: ignore[union-attr]
                              None if vp8.tl0picidx is None else e.out_tl0(vp8.tl0picidx),  # type: ignore[union-attr]
                              tmpl[1] - view.payload_start)
        if self.out.send(buf, now, self.media_class, source):
            self.packets += 1
            self.octets += len(payload)

    def _send_red(self, red: AudioRedundancy, marker: int, out: tuple[int, int], frame: bytes, ast: bytes,
                  switched: bool, now: float) -> bool:
        """Send an audio packet as RED with earlier frames, if the viewer's link needs them; False: send it plain."""
        if switched:
            red.restart()
        wrapped = red.wrap(self.planner.pt, out[1], frame)
        if wrapped is None:
            return False
        packet = build_header(marker, red.red_pt, out[0], out[1], self.ssrc, self._extensions(ast)) + wrapped
        if self.out.send(packet, now, AUDIO):
            self.packets += 1
            self.octets += len(wrapped)
        return True

    def _send_fill(self, seq: int, ts: int, now: float) -> None:
        """A padding-only packet where a left-out packet's number was already given away (it came late)."""
        hdr = build_header(0, self.planner.pt, seq, ts, self.ssrc, self._extensions(self._send_time()))
        hdr[0] |= 0x20
        self.out.send(hdr + FILL_PADDING, now, self.media_class, self.planner.source)

    # --- layer choice -------------------------------------------------------------------------------------

    def wanted_sources(self) -> list["InboundStream"]:
        """The layers whose packets this consumer needs: the one it forwards and the one it switches to."""
        return self.planner.wanted_sources()

    def layers_changed(self, now: float) -> None:
        self.allocate(now)

    @property
    def picture_height(self) -> Optional[int]:
        return getattr(self.planner.source, "height", None) or None

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
        layers = self.owner.layers
        if not layers or self.kind == "video" and self.yield_level >= YIELD_PAUSE:
            self.set_target(None, ALL_TIDS, now)
            return
        if self.kind == "video" and self.yield_level == YIELD_LOWEST:
            self.set_target(layers[0], 0 if layers[0].temporal_layers > 1 else ALL_TIDS, now)
            return
        if self.kind != "video" or len(layers) == 1 and layers[0].temporal_layers == 1:
            self.set_target(layers[-1], ALL_TIDS, now)
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
        cur = self.planner.source
        forwarding_single = cur is not None and cur is not self.target and cur.temporal_layers == 1
        loss = self.link_loss if self.link_loss is not None else self.fraction_lost
        link = LinkReport(self.estimate_bps, loss, self.media_bps, rates, cap, self.nacks,
                          now < self.planner.reflex_until, forwarding_single, self._unrepaired, self.loss_floor,
                          self.packets + self.rtx_packets + self.probe_packets,
                          [s.frame_rates for s in layers], self.capacity_bps, self.arrived_bps)
        proven = self.allocator.state.proven_bps
        choice = self.allocator.update(now, link) if measured else None
        st = self.allocator.state
        if st.proven_bps > proven:
            self.on_probe_proven(now, st.probe_started_at + PROBE_RAMP_S, st.probe_started_at + PROBE_S)
        if choice is None:  # no rates measured yet (publisher just started): best layer, all frames
            self.set_target(layers[-1] if cap is None else layers[cap], ALL_TIDS, now)
            return
        spatial, tid = choice
        self.set_target(layers[spatial], tid if layers[spatial].temporal_layers > 1 else ALL_TIDS, now)

    def set_target(self, layer: Optional["InboundStream"], tid: int, now: float) -> None:
        """Forward `layer` (None: pause) up to temporal layer `tid`: what the allocator chose, or a forced one."""
        change = self.planner.retarget(layer, tid, self.owner.layers, self.out.ready)
        if change.reroute:
            self.owner.reroute()
        if change.keyframe_of is not None:
            self.owner.request_keyframe(now, change.keyframe_of)

    def fast_tick(self, now: float, interval: float) -> None:
        """Every ~50 ms: bandwidth probe by resending recent packets as RTX (the viewer's estimator counts
        them; its decoder drops them as duplicates)."""
        if self.planner.due_followup_keyframe(now):
            self.owner.request_keyframe(now, self.planner.source)
        bps = self.allocator.probe_rate(now)
        if not bps or self.planner.rtx_pt is None:
            self._probe_credit = 0.0
            return
        # refused padding is not owed later: at most one top-up's worth carries over
        self._probe_credit = min(self._probe_credit, PROBE_PACKET_BYTES) + bps * interval / 8
        last = self.planner.munger.last_seq
        while self._probe_credit >= PROBE_PACKET_BYTES:
            self._probe_cursor = (self._probe_cursor + 1) % 64
            if not self._resend((last - self._probe_cursor) & 0xFFFF, now, probe=True):
                break
            self._probe_credit -= PROBE_PACKET_BYTES
            self.probe_packets += 1

    def probe_window(self, now: float) -> Optional[tuple[float, float, float]]:
        return self.allocator.probe_window(now) if self.kind == "video" else None

    def probe_arrived(self, bps: float) -> None:
        self.allocator.probe_arrived(bps)

    def abort_probe(self, now: float) -> None:
        self.allocator.abort_probe(now)
        self._probe_credit = 0.0

    # --- feedback from the viewer ---------------------------------------------------------------------------

    def on_nack(self, lost: list[int], now: float) -> None:
        self.nacks += len(lost)
        if self.kind == "video":
            self._nack_burst(len(lost), now)
        if self.allocator.probe_rate(now):  # a probe that overflows a queue must stop at once
            self.allocate(now)
        outcome = self._repair(lost, now)
        if self.kind == "video" and outcome.exhausted:
            self._unrepairable(now)

    def on_repair_lost(self, out_seq: int, now: float) -> None:
        """The viewer's transport feedback says a retransmission of `out_seq` was lost as well: resend it now
        (within the same budget and per-packet limits), not when the viewer's next NACK comes."""
        self.repairs_lost += 1
        self._repair([out_seq], now)

    def _repair(self, lost: list[int], now: float) -> "RepairOutcome":
        p = self.planner
        m = p.munger
        cur = m.source
        # A retransmission the viewer cannot use only takes the link from the next keyframe: packets of an
        # earlier epoch (a keyframe of the current source followed them) or of a layer without temporal
        # layers that is being left for a lower one (its packets are held back already).
        abandoning = p.thinning and cur is not None and cur.temporal_layers == 1

        def find(out_seq: int) -> Optional[tuple["IngressPacket", bool]]:
            found = m.to_source(out_seq)
            if found is None or abandoning or (self.kind == "video" and found[2] is not m.epoch):
                return None
            pkt = found[0].cached(found[1])
            if pkt is None:
                return None
            # the picture the viewer's decoder restarts from: its repair may overdraw the budget (one picture)
            return pkt, pkt.view.timestamp == p.keyframe_ts and found[0] is m.source

        outcome = repair(lost, find, self.limiter, self.media_bps, now, lambda out_seq, _: self._resend(out_seq, now))
        self.rtx_packets += outcome.resent
        self.rtx_skipped += outcome.skipped
        return outcome

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
            self.owner.request_keyframe(now, self.planner.source)

    def _nack_burst(self, count: int, now: float) -> None:
        """A reflex ahead of the estimate: a burst of NACKs means a queue on the way overflowed, and the
        viewer's REMB will say so only after its next report. Halving the load at once lets the queue
        drain, so the frames keep coming while the allocator decides."""
        times = self._nack_times
        times.extend([now] * min(count, NACK_BURST + 1))
        while times and times[0] < now - NACK_BURST_S:
            times.pop(0)
        if len(times) > NACK_BURST:
            self.planner.reflex_until = now + REFLEX_S
            times.clear()
            self.allocate(now)  # a layer without temporal layers to shed sheds resolution (allocator reflex)

    def _resend(self, out_seq: int, now: float, probe: bool = False) -> bool:
        """Send the packet that carried `out_seq` again, as RTX when negotiated."""
        found = self.planner.munger.to_source(out_seq)
        if found is None:
            return False
        source, src_seq, e = found
        pkt = source.cached(src_seq)
        if pkt is None:
            return False
        view = pkt.view
        payload = bytearray(view.payload)
        vp8 = pkt.vp8
        if vp8 is not None and (e.pid_offset or e.tl0_offset or e.pid_drops.count):
            write_vp8_ids(payload, vp8, None if vp8.picture_id is None else e.out_pid(vp8.picture_id),
                          None if vp8.tl0picidx is None else e.out_tl0(vp8.tl0picidx), -view.payload_start)
        out_ts = (view.timestamp + e.ts_offset) & 0xFFFFFFFF
        ext = self._extensions(self._send_time())
        if self.planner.rtx_pt is not None:
            hdr = build_header(view.marker, self.planner.rtx_pt, self.rtx_seq, out_ts, self.rtx_ssrc, ext)
            self.rtx_seq = (self.rtx_seq + 1) & 0xFFFF
            data = hdr + _OSN.pack(out_seq) + payload
        else:
            data = build_header(view.marker, self.planner.pt, out_seq, out_ts, self.ssrc, ext) + payload
        return self.out.send(data, now, PROBE if probe else RETRANSMISSION, None if probe else Resent(self, out_seq))

    def _send_time(self) -> bytes:
        """abs-send-time on repairs, probes and fills too: a viewer's receive-side estimator counts only packets
        that carry it, so probes without it could never raise its estimate."""
        return abs_send_time(self.owner.wall_clock()) if self.ast_id else b""

    def _extensions(self, send_time: bytes) -> bytes:
        return self.out.extensions([(self.ast_id, send_time)] if self.ast_id else [])

    def on_keyframe_request(self, now: float) -> None:
        self.plis += 1
        self.owner.request_keyframe(now, self.planner.source or self.target)

    def on_estimate(self, bitrate: int, now: float) -> None:
        """A REMB from the viewer: the allocator may move down at once."""
        self.estimate_bps = bitrate
        if self.kind == "video":
            self.allocate(now)

    def on_report(self, fraction_lost: int, cumulative_lost: int, lsr: int, dlsr: int, now: float) -> None:
        super().on_report(fraction_lost, cumulative_lost, lsr, dlsr, now)
        if self.estimate_from == "remb" and self._report_at is not None and not self.allocator.probe_rate(now):
            self._own_loss.learn(now - self._report_at, self.fraction_lost)   # a probe's loss is not the link's
            self.loss_floor = self._own_loss.level
        self._report_at = now

    def on_transport_estimate(self, bitrate: int, loss_floor: float, loss: Optional[float], now: float,
                              allocate_now: bool, capacity_bps: Optional[float] = None,
                              heard_loss: float = 0.0, arrived_bps: Optional[float] = None) -> None:
        """Our send-side estimate of the viewer's link for this stream, the link's own random loss, the
        latest interval's loss (over all its packets: steadier than one stream's receiver reports), the
        most the link is known to carry for it (None: not known) and the loss seen lately without a queue,
        whatever its cause (what audio redundancy answers), and what arrived of it lately by the feedback."""
        self.estimate_bps, self.loss_floor, self.estimate_from = bitrate, loss_floor, "transport-cc"
        self.arrived_bps = arrived_bps
        self.link_loss, self.capacity_bps, self.heard_loss = loss, capacity_bps, heard_loss
        if allocate_now and self.kind == "video":
            self.allocate(now)

    # --- periodic -------------------------------------------------------------------------------------------

    def tick(self, now: float, wall: float, interval: float) -> None:
        """Once a second: media rate, layer choice, and a sender report mapped onto our timestamps."""
        self.rate_tick(interval)
        # what this stream takes of the link, for the others' budget: up at once, down slowly (audio comes in
        # bursts, and its redundancy comes and goes; a budget that swings with it flaps the video's layer)
        self.share_bps = max(self.media_bps, SHARE_DECAY * self.share_bps + (1 - SHARE_DECAY) * self.media_bps)
        if self.kind == "video":
            self.allocate(now)
        self.limiter.observe(self.rtt, self.loss_floor)
        if self.red is not None:
            # the loss seen without a queue (a congested moment's is no reason), if a copy of the voice is
            # affordable on this link: judged by what it carries at most (its known capacity), not by the
            # estimate's dip after a failed probe, the very moment a thin link loses most
            link_bps = None if self.estimate_bps is None else \
                max(self.estimate_bps, self.capacity_bps or 0.0) + self.share_bps
            self.red.set_loss(max(self.loss_floor, self.heard_loss), self.media_bps, link_bps)
        m = self.planner.munger
        source = m.source
        if source is None or not self.packets:
            return
        clock = source.rtp_time_at(now)
        if clock is None:
            return
        ntp, src_ts = clock
        sr = self.sender_report(ntp, src_ts + m.epoch.ts_offset, now)  # type: ignore[union-attr]
        if sr is not None:
            self.out.send_rtcp(sr)

    def dump(self) -> dict:
        layers = self.owner.layers
        p = self.planner
        cur = p.source
        st = self.allocator.state
        return {
            "kind": self.kind, "ssrc": self.ssrc, "packets": self.packets, "octets": self.octets,
            "rtx_packets": self.rtx_packets, "probe_packets": self.probe_packets, "nacks": self.nacks,
            "plis": self.plis, "waiting_keyframe": p.waiting_keyframe, "switches": p.munger.switches,
            "layer": layers.index(cur) if cur in layers else None,  # type: ignore[arg-type]
            "layer_height": self.picture_height,
            "target_layer": layers.index(self.target) if self.target in layers else None,  # type: ignore[arg-type]
            "temporal_limit": p.tid_limit, "target_temporal": p.target_tid, "thinning": p.thinning,
            "reflex_until": round(p.reflex_until, 3),
            "max_height": self.max_height, "yield": self.yield_level,
            "switches_up": st.switches_up, "switches_down": st.switches_down, "allocator": st.reason,
            "probing_bps": st.probe_bps if st.probe_until else 0, "dropped": p.munger.dropped,
            "fraction_lost": round(self.fraction_lost, 4), "rtt_ms": None if self.rtt is None else round(self.rtt * 1000, 1),
            "estimate_bps": self.estimate_bps, "estimate_from": self.estimate_from,
            "loss_floor": round(self.loss_floor, 4), "bitrate_bps": int(self.media_bps),
            "rtx_suppressed": self.limiter.suppressed, "repairs_lost": self.repairs_lost,
            "rtx_skipped": self.rtx_skipped, "drops": dict(self.drops),
            "rtx_over_budget": self.limiter.over_budget, "keyframes_for_loss": self.keyframes_for_loss,
            "red_distance": None if self.red is None else self.red.distance,
        }
