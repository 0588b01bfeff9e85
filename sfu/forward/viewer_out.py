"""One viewer connection's way out, shared by its consumers: packets are paced (when a pacer is given), numbered
on the transport-wide sequence at the moment they leave (when the viewer gives transport-cc feedback: the
estimator needs real send times, and a retransmission is watched until the feedback says it arrived), and sent
on the connection's tap."""
from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Optional, Protocol

from sfu.forward.pacer import AUDIO, PROBE, Pacer
from sfu.forward.repair_watch import RepairWatch, Resent
from sfu.forward.transport_wide import TransportWideSequencer
from sfu.rtp.rtp_header import one_byte_extensions

if TYPE_CHECKING:
    from sfu.webrtc.aiortc_adapter import PacketTap


class Wire(Protocol):
    """Where packets finally go: the connection's tap (or a recording stand-in in unit tests)."""
    ready: bool

    def send_rtp(self, packet: bytes | bytearray) -> bool: ...

    def send_rtcp(self, packet: bytes) -> bool: ...


class ViewerOut:
    def __init__(self, wire: "Wire | PacketTap", transport: Optional[TransportWideSequencer] = None,
                 pacer: Optional[Pacer[bytearray]] = None) -> None:
        self.wire = wire
        self.transport = transport
        self.pacer = pacer
        self.ext_id = transport.ext_id if transport is not None else 0
        self.repairs: Optional[RepairWatch] = RepairWatch() if transport is not None else None
        self._timer: Optional[asyncio.TimerHandle] = None

    @property
    def ready(self) -> bool:
        return self.wire.ready

    def extensions(self, items: list[tuple[int, bytes]]) -> bytes:
        """A header extension block for `items`, with room for the transport-wide number when packets get one."""
        return self.transport.extensions(items) if self.transport is not None else one_byte_extensions(items)

    def send(self, packet: bytearray, now: float, cls: int = AUDIO, tag: object = None) -> bool:
        """Send now or queue it behind the pacer (True either way); False when the viewer cannot receive yet,
        or a probe found no room."""
        if not self.wire.ready:
            return False
        if self.pacer is None:
            return self._emit(packet, now, cls == PROBE, tag)
        refused = self.pacer.probes_refused
        if self.pacer.offer(now, cls, packet, len(packet), tag):
            return self._emit(packet, now, cls == PROBE, tag)
        if self.pacer.probes_refused != refused:
            return False   # a probe with no room left for it
        self._schedule(now)
        return True

    def send_rtcp(self, packet: bytes) -> bool:
        return self.wire.send_rtcp(packet)

    def drop_queued(self, tag: object) -> None:
        """A consumer left a layer: its queued video is of no use any more."""
        if self.pacer is not None:
            self.pacer.drop(tag)

    def set_rate(self, bps: float) -> None:
        if self.pacer is not None:
            self.pacer.set_rate(bps)

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _emit(self, packet: bytearray, now: float, probe: bool, tag: object = None) -> bool:
        if self.transport is not None:
            seq = self.transport.stamp(packet, now, probe)
            if type(tag) is Resent and self.repairs is not None:
                self.repairs.sent(seq, tag)
        return self.wire.send_rtp(packet)

    def _schedule(self, now: float) -> None:
        if self._timer is not None or self.pacer is None:
            return
        at = self.pacer.next_due(now)
        if at is not None:
            # the loop's clock is time.monotonic, as `now` is
            self._timer = asyncio.get_running_loop().call_at(at, self._drain)

    def _drain(self) -> None:
        self._timer = None
        if self.pacer is None:
            return
        now = time.monotonic()
        if not self.wire.ready:
            return
        for packet, probe, tag in self.pacer.due(now):
            self._emit(packet, now, probe, tag)
        self._schedule(now)
