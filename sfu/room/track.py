"""A room's track (the teacher's camera or microphone) that outlives any one publisher connection.

Viewers subscribe to the track, not to a publisher: when the teacher reconnects, the new streams are attached
here and every consumer continues on its next keyframe without renegotiating. A video track has one layer
per simulcast encoding (or one for a single-layer publisher), ordered worst to best; each consumer forwards
one of them and is routed only the packets of the layers it forwards or is switching to. A single-layer
publisher's track may get server-made lower layers (`ladder_rungs`, see track_ladder.py).
"""
from __future__ import annotations

import logging
import time
from typing import Callable, Optional, Protocol, Sequence

from sfu.ingest.inbound import InboundStream, IngressPacket
from sfu.ladder.ladder_rung import Rung
from sfu.rtp.rtp_header import abs_send_time
from sfu.ladder.track_ladder import TrackLadder
from sfu.room.contracts import Forwarder

log = logging.getLogger(__name__)


class PacketSink(Protocol):
    """An in-process consumer of a track's packets as they arrive (the recorder): gets the original RTP of
    the best layer, unmodified and shared, and must return quickly (no I/O on this path: queue and write
    elsewhere). A different `source` object means a new stream (reconnect or layer change)."""

    def on_rtp(self, pkt: IngressPacket, source: InboundStream, now: float) -> None: ...


class Track:
    def __init__(self, kind: str, wall_clock: Callable[[], float], ladder_rungs: Sequence[Rung] = ()) -> None:
        self.kind = kind
        self.ladder_rungs = tuple(ladder_rungs) if kind == "video" else ()
        self.ladder: Optional[TrackLadder] = None
        self.layers: list[InboundStream] = []   # worst first
        self.consumers: list[Forwarder] = []
        self.sinks: list[PacketSink] = []
        self.wall_clock = wall_clock
        self.forwarded = 0
        self.on_keyframe_needed: Callable[[InboundStream, float], None] = lambda s, now: None
        self._routes: dict[int, list[Forwarder]] = {}
        self._routes_dirty = True

    @property
    def source(self) -> Optional[InboundStream]:
        """The best layer (what a sink records, what a single-layer viewer gets)."""
        return self.layers[-1] if self.layers else None

    def attach(self, stream: InboundStream, now: float) -> None:
        """A publisher stream for this track: replaces the layer with the same simulcast id."""
        self.layers = [s for s in self.layers if s.rid != stream.rid and not s.on_demand]
        self.layers.append(stream)
        self._drop_ladder()
        if self.ladder_rungs and len(self.layers) == 1 and stream.rid is None:
            self.ladder = TrackLadder(stream, self.ladder_rungs, self.forward,
                                      lambda layer, now: self.on_keyframe_needed(layer, now))
            self.layers.extend(self.ladder.streams)
        self.order_layers()
        for c in self.consumers:
            c.layers_changed(now)
        self.reroute()

    def detach_all(self, now: float) -> None:
        self.layers = []
        self._drop_ladder()
        for c in self.consumers:
            c.layers_changed(now)
        self.reroute()

    def _drop_ladder(self) -> None:
        if self.ladder is not None:
            self.ladder.set_wanted(set(), 0.0)
            self.ladder.close_later()
            self.ladder = None

    def order_layers(self) -> None:
        """Worst to best: server-made rungs below the publisher's own layers; then by picture height once
        keyframes told it, else by bitrate."""
        self.layers.sort(key=lambda s: (not s.on_demand, s.height, s.rates[-1] if s.rates else 0.0))

    def request_keyframe(self, now: float, layer: Optional[InboundStream] = None) -> None:
        layer = layer or self.source
        if layer is None:
            return
        if layer.on_demand and self.ladder is not None:
            index = self.ladder.index_of(layer)
            if index is not None:
                self.ladder.request_keyframe(index)
            return
        self.on_keyframe_needed(layer, now)

    def tick(self, now: float) -> None:
        """Once a second, from the room's timer: keep the ladder decoding while anyone watches. A viewer's
        estimate cannot tell early who will need a rung (Chromium's REMB never exceeds 1.5x what arrives),
        and a cold ladder waits for the publisher's next keyframe: seconds of frozen picture with OBS or
        FFmpeg, which send one every few seconds and may ignore PLI. One decode per room buys a switch on
        the next frame (encoding still runs only for rungs in use)."""
        ladder = self.ladder
        if ladder is None:
            return
        ladder.set_warm(bool(self.consumers), now)
        ladder.tick(now)

    async def close(self) -> None:
        ladder, self.ladder = self.ladder, None
        if ladder is not None:
            await ladder.close()

    def add(self, consumer: Forwarder, now: float) -> None:
        # No keyframe request yet: the viewer's transport is still connecting, and a keyframe sent now
        # would be lost. Its session asks once the transport is ready.
        self.consumers.append(consumer)
        consumer.layers_changed(now)
        self.reroute()

    def remove(self, consumer: Forwarder) -> None:
        if consumer in self.consumers:
            self.consumers.remove(consumer)
            self.reroute()

    def add_sink(self, sink: PacketSink, now: float) -> None:
        self.sinks.append(sink)
        if self.kind == "video":
            self.request_keyframe(now)

    def remove_sink(self, sink: PacketSink) -> None:
        if sink in self.sinks:
            self.sinks.remove(sink)

    def reroute(self) -> None:
        """A consumer's current or target layer changed: rebuild the per-layer routes before the next packet."""
        self._routes_dirty = True

    def _rebuild_routes(self) -> None:
        routes: dict[int, list[Forwarder]] = {}
        for c in self.consumers:
            for s in c.wanted_sources():
                routes.setdefault(id(s), []).append(c)
        self._routes = routes
        self._routes_dirty = False
        if self.ladder is not None:
            self.ladder.set_wanted(set(routes), time.monotonic())

    def forward(self, pkt: IngressPacket, source: InboundStream, now: float) -> None:
        if self.sinks and self.layers and source is self.layers[-1]:
            for sink in self.sinks:
                try:
                    sink.on_rtp(pkt, source, now)
                except Exception:
                    log.exception("packet sink failed; packet not recorded")
        if self._routes_dirty:
            self._rebuild_routes()
        if self.ladder is not None and source is self.ladder.source:
            self.ladder.on_source_packet(pkt)
        consumers = self._routes.get(id(source))
        if not consumers:
            return
        self.forwarded += 1
        view = pkt.view
        payload = view.data[view.payload_start:view.payload_end]
        ast = abs_send_time(self.wall_clock()) if self.kind == "video" else b""
        templates: dict = {}
        for c in consumers:
            c.send(pkt, source, payload, templates, ast, now)
