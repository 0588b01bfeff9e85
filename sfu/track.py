"""A room's track (the teacher's camera or microphone) that outlives any one publisher connection.

Viewers subscribe to the track, not to a publisher: when the teacher reconnects, the new stream is attached
here and every consumer continues on its next keyframe without renegotiating.
"""
from __future__ import annotations

import logging
from typing import Callable, Optional, Protocol

from .consumer import Consumer
from .inbound import InboundStream, IngressPacket
from .rtp_header import abs_send_time

log = logging.getLogger(__name__)


class PacketSink(Protocol):
    """An in-process consumer of a track's packets as they arrive (the recorder): gets the original RTP,
    unmodified and shared, and must return quickly (no I/O on this path: queue and write elsewhere)."""

    def on_rtp(self, pkt: IngressPacket, source: InboundStream, now: float) -> None: ...


class Track:
    def __init__(self, kind: str, wall_clock: Callable[[], float]) -> None:
        self.kind = kind
        self.source: Optional[InboundStream] = None
        self.consumers: list[Consumer] = []
        self.sinks: list[PacketSink] = []
        self.wall_clock = wall_clock
        self.forwarded = 0
        self.on_keyframe_needed: Callable[[InboundStream, float], None] = lambda s, now: None

    def attach(self, source: Optional[InboundStream], now: float) -> None:
        self.source = source
        if source is not None and source.kind == "video" and self.consumers:
            self.request_keyframe(now)

    def request_keyframe(self, now: float) -> None:
        if self.source is not None:
            self.on_keyframe_needed(self.source, now)

    def add(self, consumer: Consumer, now: float) -> None:
        # No keyframe request yet: the viewer's transport is still connecting, and a keyframe sent now
        # would be lost. Its session asks once the transport is ready.
        self.consumers.append(consumer)

    def remove(self, consumer: Consumer) -> None:
        if consumer in self.consumers:
            self.consumers.remove(consumer)

    def add_sink(self, sink: PacketSink, now: float) -> None:
        self.sinks.append(sink)
        if self.kind == "video":
            self.request_keyframe(now)

    def remove_sink(self, sink: PacketSink) -> None:
        if sink in self.sinks:
            self.sinks.remove(sink)

    def forward(self, pkt: IngressPacket, source: InboundStream, now: float) -> None:
        if source is not self.source:
            return
        for sink in self.sinks:
            try:
                sink.on_rtp(pkt, source, now)
            except Exception:
                log.exception("packet sink failed; packet not recorded")
        if not self.consumers:
            return
        self.forwarded += 1
        view = pkt.view
        payload = view.data[view.payload_start:view.payload_end]
        ast = abs_send_time(self.wall_clock()) if self.kind == "video" else b""
        templates: dict = {}
        for c in self.consumers:
            c.send(pkt, source, payload, templates, ast, now)
