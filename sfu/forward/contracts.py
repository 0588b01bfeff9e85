"""What a Consumer asks of its owner (the track it forwards from), as mediasoup's Consumer::Listener: the
layers on offer, routing anew after a switch, a keyframe of a layer, and the wall clock for send times."""
from __future__ import annotations

from typing import TYPE_CHECKING, Callable, Optional, Protocol, Sequence

if TYPE_CHECKING:
    from sfu.ingest.inbound import InboundStream


class ConsumerOwner(Protocol):
    layers: Sequence["InboundStream"]   # worst first
    wall_clock: Callable[[], float]

    def reroute(self) -> None:
        """The layers this consumer wants changed: route the track's packets anew."""
        ...

    def request_keyframe(self, now: float, layer: Optional["InboundStream"] = None) -> None: ...
