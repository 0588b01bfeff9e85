"""The viewer-side switch logic, pure: which layer a viewer's stream carries, when a switch may happen (on a
keyframe the viewer can receive), the temporal layers it keeps, and the numbers each forwarded packet gets.
Every packet gets a Plan, a value; the consumer applies it (routing, keyframe requests, sending). Time is an
argument; no IO."""
from __future__ import annotations

from typing import TYPE_CHECKING, Optional, Sequence

from sfu.forward.munger import StreamMunger

if TYPE_CHECKING:
    from sfu.ingest.inbound import InboundStream, IngressPacket
    from sfu.rtp.codec_info import Vp8Descriptor

ALL_TIDS = 3
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
    """A decision for one packet: `drop` (the reason) or `out` (its sequence number and timestamp on the
    viewer's stream); `switched` when this packet started a layer (the track routes anew), `keyframe_of` the
    layer whose keyframe the drop waits for, `fill` a padding packet's (seq, ts) for a number given away."""

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


class Retarget:
    """What a new target asks of the consumer: `reroute` (the track must route anew) and `keyframe_of` (the
    layer whose keyframe starts the switch)."""

    __slots__ = ("reroute", "keyframe_of")

    def __init__(self, reroute: bool = False, keyframe_of: Optional["InboundStream"] = None) -> None:
        self.reroute = reroute
        self.keyframe_of = keyframe_of


UNCHANGED = Retarget()


class SwitchPlanner:
    def __init__(self, kind: str, payload_types: dict[str, tuple[int, Optional[int]]], first_seq: int,
                 first_ts: int) -> None:
        self.payload_types = payload_types  # codec name -> (payload type, rtx payload type)
        self.munger: StreamMunger["InboundStream"] = StreamMunger(first_seq, first_ts)
        self.pt = 0
        self.rtx_pt: Optional[int] = None
        self.last_vp8: Optional["Vp8Descriptor"] = None   # what the viewer saw last: a switch continues its ids
        self.waiting_keyframe = kind == "video"
        self.target: Optional["InboundStream"] = None
        self.target_tid = ALL_TIDS
        self.tid_limit = ALL_TIDS
        # Switching down to a lower resolution waits for its keyframe, which must squeeze through the same
        # full link: meanwhile forward only the current layer's base temporal layer (no keyframe needed).
        self.thinning = False
        self.reflex_until = 0.0   # a NACK burst: only the base temporal layer until then
        self.resync = False  # after a pause: start again on a keyframe even on the same layer
        self.keyframe_ts: Optional[int] = None  # source RTP timestamp of the last keyframe forwarded
        self.followup_keyframe_at = 0.0

    @property
    def source(self) -> Optional["InboundStream"]:
        """The layer forwarded now."""
        return self.munger.source

    def wanted_sources(self) -> list["InboundStream"]:
        """The layers whose packets are needed: the one forwarded and the one being switched to."""
        if self.target is None:  # paused, or nothing published
            return []
        cur = self.munger.source
        out = [cur] if cur is not None else []
        if self.target is not cur:
            out.append(self.target)
        return out

    def retarget(self, layer: Optional["InboundStream"], tid: int, layers: Sequence["InboundStream"],
                 ready: bool) -> Retarget:
        """A new target layer and temporal limit (the allocator's choice, or a forced one)."""
        self.target_tid = tid
        if layer is self.target:
            return UNCHANGED
        cur = self.munger.source
        self.thinning = (layer is not None and cur in layers and layer in layers
                         and layers.index(layer) < layers.index(cur))  # type: ignore[arg-type]
        if self.target is None and layer is not None and cur is not None:
            self.resync = True  # the viewer missed what came while paused: only a keyframe will do
        self.target = layer
        wants_keyframe = layer is not None and (layer is not cur or self.resync) and ready
        return Retarget(True, layer if wants_keyframe else None)

    def plan(self, pkt: "IngressPacket", source: "InboundStream", ready: bool, now: float) -> Plan:
        """What to do with one packet of a routed layer: drop it (with the reason, and what the drop asks for:
        a keyframe, a padding packet in a hole), or forward it with the numbers it gets. Advances the
        viewer's numbering and layer state."""
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
            self.keyframe_ts = view.timestamp  # its packets' repair goes first
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
        if vp8 is not None:
            self.last_vp8 = vp8
        return Plan(out=out, switched=switched)

    def due_followup_keyframe(self, now: float) -> bool:
        """True once when the second keyframe of a rung switched to under congestion is due."""
        if self.followup_keyframe_at and now >= self.followup_keyframe_at:
            self.followup_keyframe_at = 0.0
            return True
        return False

    def _temporal_step(self, vp8: "Vp8Descriptor", keyframe: bool, now: float) -> None:
        """At a picture boundary: lower the frame rate at once; raise it only where the decoder can follow
        (a keyframe, a base-layer picture, or a layer-sync picture of the layer being added)."""
        want = self.target_tid
        if self.thinning or now < self.reflex_until:
            want = min(want, thinnest(self.munger.source))
        if want < self.tid_limit:
            self.tid_limit = want
        elif want > self.tid_limit:
            if keyframe or vp8.tid == 0:
                self.tid_limit = want
            elif vp8.layer_sync and self.tid_limit < vp8.tid <= want:
                self.tid_limit = vp8.tid

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


def thinnest(source: Optional["InboundStream"]) -> int:
    """The fewest temporal layers a quick thinning keeps: below THIN_MIN_FPS the picture would stutter like a
    freeze (a 15 fps source's base layer alone is 3.75 fps)."""
    rates = getattr(source, "frame_rates", None) or []
    for tid, fps in enumerate(rates):
        if fps >= THIN_MIN_FPS:
            return tid
    return max(0, len(rates) - 1)
