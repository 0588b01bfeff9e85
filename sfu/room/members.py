"""What a room holds besides its feeds, as Protocols: Viewers (WHEP sessions, whose consumers get the room
timer's ticks) and RelayLinks (links to edge nodes). The sessions above implement them; the room never
imports them."""
from __future__ import annotations

from typing import TYPE_CHECKING, Mapping, Optional, Protocol

from sfu.allocation.priority import YieldingConsumer
from sfu.forward.contracts import ConsumerOwner
from sfu.room.feed import Slot
from sfu.room.track import Track

if TYPE_CHECKING:
    from sfu.cascade.reach import RemoteReach
    from sfu.webrtc.aiortc_adapter import PacketTap


class ViewerConsumer(YieldingConsumer, Protocol):
    """One of a viewer's consumers, as the room's timer and the node's downlink report see it."""
    packets: int
    fraction_lost: float
    rtt: Optional[float]
    estimate_bps: Optional[int]
    loss_floor: float            # the viewer link's own steady loss
    owner: ConsumerOwner         # the track it forwards
    media_bps: float
    picture_height: Optional[int]   # the height of the layer it forwards (None: not known)

    def fast_tick(self, now: float, interval: float) -> None: ...

    def tick(self, now: float, wall: float, interval: float) -> None: ...


class Viewer(Protocol):
    id: str
    closed: bool
    slot: Slot
    owner: str     # the identity of the token that opened it ("" when not known)
    consumers: list[tuple[str, ViewerConsumer]]
    tap: Optional["PacketTap"]

    def repoint(self, tracks: Mapping[str, Track]) -> None:
        """Follow the slot to other tracks (the stage moved)."""
        ...

    def dump(self) -> dict: ...


class RelayLink(Protocol):
    """A link to an edge node: it keeps the room alive while it lasts, and hears how the room reaches the
    classrooms the edge serves."""
    reach: "RemoteReach"

    def dump(self) -> dict: ...
