"""What a publisher's ingest asks of the feed it publishes into (the room's Feed), as small Protocols: the
ingest never imports the room package above it."""
from __future__ import annotations

from typing import Mapping, Protocol, Sized

from sfu.ingest.inbound import InboundStream, IngressPacket


class TrackInput(Protocol):
    consumers: Sized   # who forwards it (a keyframe is asked of the publisher only while someone watches)

    def attach(self, stream: InboundStream, now: float) -> None:
        """A new stream (layer) of this kind arrived, or an old one restarted."""
        ...

    def forward(self, pkt: IngressPacket, source: InboundStream, now: float) -> None: ...


class IngestFeed(Protocol):
    label: str
    muted: bool   # a closed microphone: its audio is dropped at ingest
    tracks: Mapping[str, TrackInput]
