"""What a room's objects ask of the objects above them, as small Protocols (a lower object never imports the
upper one, and a relay link implements the same contract as a local session):
- a track hands packets to Forwarders: a viewer's consumer, or an origin's relay of every layer to an edge;
- a feed is published into by a FeedPublisher (a WHIP publisher session, or on an edge a relay link's
  stand-in), whose ingest the room's timer drives (IngestControl);
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Iterable, Optional, Protocol

if TYPE_CHECKING:
    from sfu.ingest.inbound import InboundStream, IngressPacket
    from sfu.webrtc.aiortc_adapter import PacketTap


class Forwarder(Protocol):
    def wanted_sources(self) -> Iterable["InboundStream"]:
        """The layers whose packets it needs now (the track routes only those to it)."""
        ...

    def layers_changed(self, now: float) -> None:
        """The track's layers came, went or were reordered."""
        ...

    def send(self, pkt: "IngressPacket", source: "InboundStream", payload: bytes, templates: dict,
             ast: bytes, now: float) -> None:
        """One packet of a wanted layer; `templates` is shared by the packet's forwarders (header reuse)."""
        ...


class IngestControl(Protocol):
    """A publisher's ingest as the room sees it."""

    def request_keyframe(self, stream: "InboundStream", now: float) -> None: ...

    def fast_tick(self, now: float) -> None:
        """Every ~50 ms: repeat unanswered NACKs, deferred keyframe requests."""
        ...

    def report_tick(self, now: float, interval: float) -> None:
        """Every second: layer rates, receiver reports and the estimate to the publisher."""
        ...

    def set_downstream_loss(self, audio_loss: float) -> None:
        """The lossiest listener's steady loss, for the publisher's audio encoder to plan in-band FEC for."""
        ...


class FeedPublisher(Protocol):
    id: str
    role: str
    owner: str
    closed: bool
    ingest: Optional[IngestControl]   # None until its offer is negotiated
    tap: Optional["PacketTap"]

    def dump(self) -> dict: ...

    async def close(self) -> None: ...

