"""Real aiortc peers negotiated straight with an in-process `SfuNode` (no HTTP, no server process), on loopback:
a publisher of pre-encoded media that notes the keyframe requests it is sent, and a viewer that keeps the
packets off its transport (no decoding) and can send RTCP back. For the SFU's own tests: a session's media and
RTCP both ways, links between two nodes, the node's bookkeeping, each in a second or so."""
from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Awaitable, Callable, Optional

from aiortc import RTCPeerConnection, RTCSessionDescription

from sfu.node import SfuNode
from sfu.room.feed import MAIN, Slot
from sfu.rtp import rtcp_builder
from sfu.rtp.rtp_header import RtpView
from sfu.webrtc import aiortc_adapter as adapter
from testkit.peers import PreEncodedTrack

Negotiate = Callable[[str], Awaitable[tuple[str, str]]]   # offer -> (session id, answer)


async def until(cond: Callable[[], object], timeout: float, what: str, every: float = 0.02) -> float:
    """Seconds until the condition held (polled `every` seconds)."""
    start = time.monotonic()
    while not cond():
        assert time.monotonic() - start < timeout, f"not within {timeout} s: {what}"
        await asyncio.sleep(every)
    return time.monotonic() - start


def holes(packets: list[RtpView]) -> int:
    """Sequence numbers missing between the first packet and the last (arrival order aside)."""
    if not packets:
        return 0
    first = packets[0].seq
    offsets = {(v.seq - first + 0x8000) & 0xFFFF for v in packets}   # around the first, across the wrap
    return max(offsets) - min(offsets) + 1 - len(offsets)


async def connect(pc: RTCPeerConnection, negotiate: Negotiate) -> str:
    """Offer, have the node answer, apply the answer; the node's session id."""
    await pc.setLocalDescription(await pc.createOffer())
    session_id, answer = await negotiate(pc.localDescription.sdp)
    await pc.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))
    return session_id


def relay_signal(origin: SfuNode, room: str, edge: str = "edge", origin_name: str = "origin"):
    """An edge's way to its origin for `room` (what signaling's cascade links do over HTTP), in process."""
    async def signal(offer: str) -> tuple[str, str]:
        _, answer = await origin.relay(room, offer, edge)
        return answer, origin_name
    return signal


class NodePublisher:
    """Sends a clip's VP8 video and Opus audio as they are encoded (keyframe every second, whatever is asked)."""

    def __init__(self, clip: Path, kinds: tuple[str, ...] = ("video", "audio")) -> None:
        self.pc = adapter.new_peer_connection()
        for kind in kinds:
            self.pc.addTransceiver(PreEncodedTrack(clip, kind), direction="sendonly")
        self.keyframe_requests = 0        # PLI and FIR from the SFU
        self.session_id = ""
        self.answer = ""

    async def publish(self, node: SfuNode, room: str, slot: Slot = MAIN, owner: str = "") -> str:
        async def negotiate(offer: str) -> tuple[str, str]:
            session_id, self.answer = await node.publish(room, offer, slot, owner)
            return session_id, self.answer
        self.session_id = await connect(self.pc, negotiate)
        adapter.PacketTap(self.pc, lambda data, arrival: None, self._on_rtcp)  # bundled once the answer is set
        return self.session_id

    def _on_rtcp(self, data: bytes) -> None:
        self.keyframe_requests += sum(1 for p in rtcp_builder.parse(data) if rtcp_builder.is_keyframe_request(p))

    async def close(self) -> None:
        await self.pc.close()


class NodeViewer:
    """Receives audio and video; every packet is kept (`packets`), by kind through the negotiated payload types."""

    def __init__(self) -> None:
        self.pc = adapter.new_peer_connection()
        self.pc.addTransceiver("video", direction="recvonly")
        self.pc.addTransceiver("audio", direction="recvonly")
        self.packets: list[RtpView] = []
        self.kinds: dict[int, str] = {}        # payload type -> "video", "audio" or "rtx"
        self.reported: set[int] = set()        # the SSRCs sender reports came for (what lip sync is made from)
        self.tap: Optional[adapter.PacketTap] = None
        self.session_id = ""

    async def play(self, node: SfuNode, room: str, slot: Slot = MAIN, owner: str = "",
                   max_height: Optional[int] = None) -> str:
        return await self.negotiate(lambda offer: node.play(room, offer, max_height, slot, owner))

    async def negotiate(self, negotiate: Negotiate) -> str:
        self.session_id = await connect(self.pc, negotiate)
        for t in self.pc.getTransceivers():
            for c in adapter.negotiated_codecs(t):
                self.kinds[c.payloadType] = "rtx" if c.mimeType.lower().endswith("/rtx") else t.kind
        self.tap = adapter.PacketTap(self.pc, self._on_rtp, self._on_rtcp)
        return self.session_id

    async def connected(self) -> None:
        """Wait for ICE and DTLS: a publisher starting after this sends its first keyframe to this viewer too."""
        await until(lambda: self.tap is not None and self.tap.ready, 5, "the viewer's transport up")

    def _on_rtp(self, data: bytes, arrival: float) -> None:
        self.packets.append(RtpView(data))

    def _on_rtcp(self, data: bytes) -> None:
        self.reported.update(p.ssrc for p in rtcp_builder.parse(data) if isinstance(p, rtcp_builder.RtcpSrPacket))

    def of(self, kind: str) -> list[RtpView]:
        return [v for v in self.packets if self.kinds.get(v.payload_type) == kind]

    def send_rtcp(self, data: bytes) -> bool:
        assert self.tap is not None
        return self.tap.send_rtcp(data)

    async def close(self) -> None:
        await self.pc.close()


class NodePeers:
    """The peers one test makes, all closed by `close()`."""

    def __init__(self, clip: Path) -> None:
        self.clip = clip
        self.made: list[NodePublisher | NodeViewer] = []

    def publisher(self, kinds: tuple[str, ...] = ("video", "audio")) -> NodePublisher:
        p = NodePublisher(self.clip, kinds)
        self.made.append(p)
        return p

    def viewer(self) -> NodeViewer:
        v = NodeViewer()
        self.made.append(v)
        return v

    async def watching(self, node: SfuNode, room: str, viewer_owner: str = "",
                       teacher: str = "") -> tuple[NodePublisher, NodeViewer]:
        """A viewer of the room's teacher camera, connected, then the teacher publishing (so that the viewer's
        first keyframe is the teacher's first); both once video has reached the viewer."""
        viewer, pub = self.viewer(), self.publisher()
        await viewer.play(node, room, owner=viewer_owner)
        await viewer.connected()
        await pub.publish(node, room, owner=teacher)
        await until(lambda: viewer.of("video"), 5, "video at the viewer")
        return pub, viewer

    async def close(self) -> None:
        await asyncio.gather(*(p.close() for p in self.made))
