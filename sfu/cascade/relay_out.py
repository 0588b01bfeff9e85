"""The origin's end of an SFU-to-SFU link: one peer connection per (room, edge node) that carries every layer of
every track the edge wants, each packet once, whatever number of viewers the edge serves.

Forwarding is the lean path: the packet as the publisher (or the ladder) sent it, with only its SSRC rewritten
to the link's SSRC for that layer (a fresh one per source stream, so each SSRC's sequence numbers stay
continuous for SRTP and for the edge's loss detection); sequence numbers, timestamps and payload unchanged, so
a NACK from the edge is answered straight from the origin's packet cache, on the same SSRC. Which SSRC is which
layer goes over the link's data channel (relay_map.py). A PLI from the edge becomes a keyframe request to the
origin's publisher for that layer, coalesced as a local viewer's would be. Sender reports are relayed mapped
onto the origin streams' clocks, so edge viewers keep lip sync.
"""
from __future__ import annotations

import asyncio
import logging
import os
import random
import time
from typing import TYPE_CHECKING, Callable, Optional

from sfu.webrtc import aiortc_adapter as adapter
from sfu.rtp import rtcp_dispatch
from sfu.rtp.rtcp_dispatch import RtcpReceiver, RtcpReceiverInfo
from sfu.errors import BadOffer, RoomBusy
from sfu.room.feed import KINDS, Feed, Slot
from sfu.cascade.reach import ReachError, RemoteReach, reach_of
from sfu.cascade.relay_map import RelayedStream, RelayMessageError, decode, encode_streams, layer_id, parse_slot, wants_of
from sfu.forward.repair import repair
from sfu.forward.rtx_limiter import RtxLimiter
from sfu.forward.sent_stream import SentStream
from sfu.webrtc.sessions import Session

if TYPE_CHECKING:
    from sfu.ingest.inbound import InboundStream, IngressPacket
    from sfu.room.room import Room
    from sfu.room.track import Track

log = logging.getLogger(__name__)

TICK_S = 0.25             # follow the stage and the edge's wants; flush a changed map
REPORT_EVERY = 4          # ticks: sender reports and rates once a second
MAP_EVERY = 4             # ticks: the map is repeated once a second (the edge's keepalive, and repair)
DEFAULT_WANTS = frozenset({"camera"})
# Test hook (this kernel has no netem): drop every Nth first transmission of a video packet on the link,
# so tests can show that the edge's NACKs are answered from the origin's cache. 0: off.
TEST_DROP_EVERY = int(os.environ.get("LIVECLASS_RELAY_TEST_DROP_EVERY", "0") or 0)


class RelayedOut(SentStream):
    """One layer on the link: the origin stream it carries and the link SSRC it carries it on."""

    __slots__ = ("source", "kind", "repaired", "test_dropped", "limiter")

    def __init__(self, source: "InboundStream", ssrc: int, kind: str) -> None:
        super().__init__(ssrc)
        self.source = source
        self.kind = kind
        self.repaired = 0
        self.test_dropped = 0
        self.limiter = RtxLimiter(budget_ratio=0.5, min_budget_bps=500_000)  # a data-centre link: generous


class TrackRelay:
    """Sits on one origin track like a consumer (Track calls wanted_sources/layers_changed/send) but wants every
    layer and forwards each packet unmodified but for its SSRC."""

    def __init__(self, session: "RelayOutSession", feed: Feed, kind: str) -> None:
        self.session = session
        self.feed = feed
        self.kind = kind
        self.track: "Track" = feed.tracks[kind]
        self.outs: dict[int, RelayedOut] = {}  # id(source stream) -> its relayed layer

    def wanted_sources(self) -> list["InboundStream"]:
        return list(self.track.layers)

    def layers_changed(self, now: float) -> None:
        self.sync()

    def sync(self) -> None:
        """Give each current layer a link SSRC, forget the layers that went away; the map goes out soon."""
        keep: dict[int, RelayedOut] = {}
        for source in self.track.layers:
            out = self.outs.get(id(source))
            if out is None or out.source is not source:
                out = RelayedOut(source, self.session.new_ssrc(), self.kind)
            keep[id(source)] = out
        changed = keep.keys() != self.outs.keys() or any(keep[k] is not self.outs[k] for k in keep)
        self.outs = keep
        if changed:
            self.session.map_changed()

    def send(self, pkt: "IngressPacket", source: "InboundStream", payload: bytes, templates: dict,
             ast: bytes, now: float) -> None:
        out = self.outs.get(id(source))
        if out is None or out.source is not source:
            self.sync()
            out = self.outs.get(id(source))
            if out is None:
                return
        self.session.send(out, pkt.view.data, first=True)

    def describe(self) -> list[RelayedStream]:
        return [RelayedStream(o.ssrc, str(self.feed.slot), self.kind, o.source.codec, o.source.clock_rate,
                              o.source.payload_type, layer_id(self.kind, o.source.rid), o.source.width,
                              o.source.height) for o in self.outs.values()]


class RelayOutSession(Session, RtcpReceiver):
    role = "relay"

    def __init__(self, room: "Room", on_closed: Callable[[Session], None], edge: str) -> None:
        super().__init__(room, on_closed, Slot("camera"), owner=f"relay:{edge}")
        self.edge = edge
        self.wants: set[str] = set(DEFAULT_WANTS)
        self.relays: dict[tuple[str, str], TrackRelay] = {}
        self.by_ssrc: dict[int, RelayedOut] = {}
        self.channel = None
        self.map_sent = ""
        self._map_dirty = True
        self._flush_scheduled = False
        self._task: Optional[asyncio.Task] = None
        self._sent_count = 0
        self.plis = 0
        self.nacks = 0
        self.bad_messages = 0
        self.reach = RemoteReach()   # the edge's classrooms: how the teacher's camera reaches them

    # --- negotiation ---------------------------------------------------------------------------------------

    async def negotiate(self, offer: str, public_ip: Optional[str]) -> str:
        await self._apply_offer(offer)
        transceivers = self.pc.getTransceivers()
        for t in transceivers:
            if adapter.remote_direction(t) in ("recvonly", "sendrecv"):
                sender = self.pc.addTrack(adapter.SilentTrack(t.kind))  # answer sendonly, with SSRCs
                adapter.silence_sender_reports(sender)
        if not any(t.sender.track is not None for t in transceivers):
            raise BadOffer("a relay offer receives media (recvonly audio and video)")
        if "m=application" not in offer:
            raise BadOffer("a relay offer opens a data channel (the link's stream map)")

        @self.pc.on("datachannel")
        def _channel(channel) -> None:
            self.channel = channel
            self._map_dirty = True
            channel.on("message", self._on_message)
            channel.on("open", self._schedule_flush)
            self._schedule_flush()

        self.tap = adapter.PacketTap(self.pc, lambda data, arrival: None, self.on_rtcp)
        answer = await self._answer(public_ip)
        if not self.closed:
            self.refresh()
            self._task = asyncio.get_running_loop().create_task(self._run(), name=f"relay-out-{self.room.id}")
        return answer

    # --- which feeds go over the link ------------------------------------------------------------------------

    def _wanted_feeds(self) -> list[Feed]:
        feeds: list[Feed] = []
        for text in sorted(self.wants):
            try:
                slot = parse_slot(text)
                if slot.source == "stage":
                    feed = self.room.classroom(self.room.stage, create=False) if self.room.stage else None
                else:
                    feed = self.room.feed(slot)
            except (RelayMessageError, RoomBusy, ValueError):
                continue
            if feed is not None and feed not in feeds:
                feeds.append(feed)
        return feeds

    def refresh(self) -> None:
        """Attach to the feeds wanted now (the stage moves; the edge's viewers change), detach from the rest."""
        now = time.monotonic()
        wanted: dict[tuple[str, str], tuple[Feed, str]] = {}
        for feed in self._wanted_feeds():
            for kind in KINDS:
                wanted[(str(feed.slot), kind)] = (feed, kind)
        for key, relay in list(self.relays.items()):
            if key not in wanted or relay.track is not wanted[key][0].tracks[relay.kind]:
                relay.track.remove(relay)
                del self.relays[key]
                self.map_changed()
        for key, (feed, kind) in wanted.items():
            if key not in self.relays:
                relay = self.relays[key] = TrackRelay(self, feed, kind)
                feed.tracks[kind].add(relay, now)  # calls layers_changed -> sync
                self.map_changed()

    def new_ssrc(self) -> int:
        taken = {o.ssrc for r in self.relays.values() for o in r.outs.values()}
        while True:  # bounded in practice: 64 streams among 2^32 values
            ssrc = random.randint(1, 0xFFFFFFFF)
            if ssrc not in taken:
                return ssrc

    def map_changed(self) -> None:
        self._map_dirty = True
        self._schedule_flush()

    def _schedule_flush(self) -> None:
        if not self._flush_scheduled and not self.closed:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush_map)

    def _flush_map(self, force: bool = False) -> None:
        self._flush_scheduled = False
        self.by_ssrc = {o.ssrc: o for r in self.relays.values() for o in r.outs.values()}
        streams = [s for r in self.relays.values() for s in r.describe()]
        text = encode_streams(streams)
        if text != self.map_sent:
            self._map_dirty = True
        if not (self._map_dirty or force):
            return
        channel = self.channel
        if channel is None or channel.readyState != "open":
            return
        try:
            channel.send(text)
        except Exception:  # the SCTP association is going away: the next tick or the close handles it
            log.debug("relay %s: map not sent", self.id, exc_info=True)
            return
        self.map_sent = text
        self._map_dirty = False

    def _on_message(self, message) -> None:
        try:
            msg = decode(message if isinstance(message, str) else "")
            if msg["type"] == "want":
                wants = wants_of(msg) | DEFAULT_WANTS
                if wants != self.wants:
                    log.info("relay %s to %s: room %s wants %s", self.id, self.edge, self.room.id, sorted(wants))
                    self.wants = wants
                    self.refresh()
            elif msg["type"] == "reach":
                self.reach.update(reach_of(msg), time.monotonic())
        except (RelayMessageError, ReachError) as exc:
            self.bad_messages += 1
            log.warning("relay %s: bad control message from %s: %s", self.id, self.edge, exc)

    # --- packets -------------------------------------------------------------------------------------------

    def send(self, out: RelayedOut, data: bytes, first: bool) -> bool:
        if first and TEST_DROP_EVERY and out.kind == "video":
            self._sent_count += 1
            if self._sent_count % TEST_DROP_EVERY == 0:
                out.test_dropped += 1
                return False
        buf = bytearray(data)
        buf[8:12] = out.ssrc.to_bytes(4, "big")
        if self.tap is None or not self.tap.send_rtp(buf):
            return False
        if first:
            out.packets += 1
            out.octets += len(data)
        return True

    def on_rtcp(self, data: bytes) -> None:
        rtcp_dispatch.dispatch(data, self, time.monotonic())

    def rtcp_nack(self, media_ssrc: int, lost: list[int], now: float) -> None:
        out = self.by_ssrc.get(media_ssrc)
        if out is not None:
            self._repair(out, lost, now)

    def rtcp_keyframe_request(self, media_ssrc: int, now: float) -> None:
        out = self.by_ssrc.get(media_ssrc)
        relay = self._relay_of(out)
        if out is not None and relay is not None:
            self.plis += 1
            relay.track.request_keyframe(now, out.source)

    def rtcp_report(self, block: RtcpReceiverInfo, now: float) -> None:
        out = self.by_ssrc.get(block.ssrc)
        if out is not None:
            out.on_report(block.fraction_lost, block.packets_lost, block.lsr, block.dlsr, now)

    def _relay_of(self, out: Optional[RelayedOut]) -> Optional[TrackRelay]:
        if out is None:
            return None
        return next((r for r in self.relays.values() if r.outs.get(id(out.source)) is out), None)

    def _repair(self, out: RelayedOut, lost: list[int], now: float) -> None:
        self.nacks += len(lost)

        def find(seq: int) -> Optional[tuple["IngressPacket", bool]]:
            pkt = out.source.cached(seq)
            return None if pkt is None else (pkt, False)

        # the same SSRC and number again: the link carries the origin's numbering unchanged
        outcome = repair(lost, find, out.limiter, out.media_bps, now,
                         lambda seq, pkt: self.send(out, pkt.view.data, first=False))
        out.repaired += outcome.resent

    # --- periodic ------------------------------------------------------------------------------------------

    async def _run(self) -> None:
        n = 0
        last = time.monotonic()
        while not self.closed:  # ends with the session (close cancels it too)
            await asyncio.sleep(TICK_S)
            n += 1
            try:
                self.refresh()
                if n % MAP_EVERY == 0:
                    self._flush_map(force=True)
                elif self._map_dirty:
                    self._flush_map()
                if n % REPORT_EVERY == 0:
                    now = time.monotonic()
                    self._report(now, max(0.001, now - last))
                    last = now
            except Exception:
                log.exception("relay %s tick failed", self.id)

    def _report(self, now: float, interval: float) -> None:
        """Sender reports in the origin streams' timestamps (unchanged on the link), and the link's rates."""
        packet = b""
        for out in self.by_ssrc.values():
            out.rate_tick(interval)
            clock = out.source.rtp_time_at(now)
            sr = out.sender_report(clock[0], clock[1], now) if clock is not None else None
            if sr is not None:
                packet += sr
        if packet and self.tap is not None:
            self.tap.send_rtcp(packet)

    # --- end -----------------------------------------------------------------------------------------------

    def _detach(self) -> None:
        for relay in self.relays.values():
            relay.track.remove(relay)
        self.relays.clear()
        self.by_ssrc = {}
        self.room.relays.discard(self)
        if self._task is not None and self._task is not asyncio.current_task():
            self._task.cancel()

    def dump(self) -> dict:
        d = super().dump()
        d.update({
            "edge": self.edge, "wants": sorted(self.wants), "plis": self.plis, "nacks": self.nacks,
            "bad_messages": self.bad_messages,
            "streams": [{"ssrc": o.ssrc, "slot": str(r.feed.slot), "kind": o.kind,
                         "layer": layer_id(o.kind, o.source.rid), "packets": o.packets, "octets": o.octets,
                         "bitrate_bps": int(o.media_bps), "repaired": o.repaired, "test_dropped": o.test_dropped,
                         "fraction_lost": round(o.fraction_lost, 4)}
                        for r in self.relays.values() for o in r.outs.values()],
        })
        return d
