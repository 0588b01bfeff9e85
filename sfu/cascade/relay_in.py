"""The edge's end of an SFU-to-SFU link: one peer connection per room to the room's origin node, whose layers
feed this node's copy of the room as if a simulcast publisher of each slot were connected here.

Each relayed slot gets a `RelayedFeed` as its feed's publisher: a PublisherIngest on the link's streams, so the
edge does exactly what it does for a publisher (loss detection and NACKs over the link, coalesced PLIs,
receiver reports), and its own tracks, consumers and allocator choose a layer per viewer with no new code.
The link keeps itself up while the edge has viewers: an origin that goes silent (killed, restarted) is
dropped after a few seconds and asked again, with backoff; viewers keep their sessions and continue on the
next keyframe once the layers come back.
"""
from __future__ import annotations

import asyncio
import logging
import secrets
import time
from typing import TYPE_CHECKING, Awaitable, Callable, Optional

from aiortc import RTCSessionDescription

from sfu.webrtc import aiortc_adapter as adapter
from sfu.rtp import rtcp_dispatch
from sfu.rtp.rtcp_dispatch import RtcpReceiver
from sfu.errors import RoomBusy, SfuError
from sfu.room.feed import Feed
from sfu.ingest.inbound import InboundStream
from sfu.ingest.publisher import PublisherIngest
from sfu.cascade.reach import REACH_EVERY_S, encode_reach, local_reach
from sfu.cascade.relay_map import (RelayedStream, RelayMessageError, decode, encode_want, parse_slot, plan, streams_of)

if TYPE_CHECKING:
    from sfu.room.room import Room

log = logging.getLogger(__name__)

CHECK_S = 0.25
CONNECT_GRACE_S = 10.0    # ICE + DTLS + SCTP of a fresh link, on a busy node
SILENCE_S = 3.0           # the origin repeats its map every second: this long without a word, it is gone
BACKOFF_S = (0.25, 0.5, 1.0, 2.0, 3.0)
MAX_ATTEMPTS = 600        # about half an hour of retrying, then the link gives up (viewers stay connected)


class RelayUnavailable(SfuError):
    """The origin could not be asked for the room's media (HTTP 502, or the status given)."""
    status = 502

    def __init__(self, reason: str, status: int = 502) -> None:
        super().__init__(reason)
        self.status = status


class RelayNotNeeded(SfuError):
    """The room is placed on this node now: its media comes from a local publisher, not a link."""
    status = 409


# offer SDP -> (answer SDP, the origin's name for logs and stats); raises RelayUnavailable / RelayNotNeeded
Signal = Callable[[str], Awaitable[tuple[str, str]]]


class RelayedFeed:
    """The edge's stand-in for one slot's publisher: the link's streams of that slot."""

    role = "relay-in"

    def __init__(self, link: "RelayIn", feed: Feed) -> None:
        self.id = f"{link.id}:{feed.slot}"
        self.owner = ""
        self.link = link
        self.feed = feed
        self.slot = feed.slot
        self.tap = link.tap
        self.ingest = PublisherIngest(feed, {}, link.rtcp_ssrc)  # no payload map: an unknown SSRC is dropped
        self.ingest.tap = link.tap
        self.closed = False

    async def close(self) -> None:
        self.detach()

    def detach(self) -> None:
        self.closed = True
        if self.feed.publisher is self:
            self.feed.set_publisher(None)

    def dump(self) -> dict:
        return {"id": self.id, "role": self.role, "source": str(self.slot), "origin": self.link.origin,
                "state": self.link.state, **self.ingest.dump()}


class RelayIn(RtcpReceiver):
    def __init__(self, room_id: str, room: Callable[[], "Room"], signal: Signal,
                 wants: Callable[[], set[str]]) -> None:
        self.id = secrets.token_urlsafe(6)
        self.room_id = room_id
        self._room = room          # this node's room (created again if it was dropped)
        self._signal = signal
        self._wants = wants        # the slots this node's viewers of the room play
        self.origin = ""
        self.pc = None
        self.tap: Optional[adapter.PacketTap] = None
        self.port: Optional[adapter.NodePort] = None   # the node's one UDP port (None: a socket of its own)
        self.channel = None
        self.rtcp_ssrc = 0
        self.installed: dict[int, RelayedStream] = {}
        self.feeds: dict[str, RelayedFeed] = {}
        self.by_ssrc: dict[int, RelayedFeed] = {}
        self.wants_sent = ""
        self.closed = False
        self.connected_at = 0.0
        self.last_heard = 0.0
        self.connects = 0
        self.drops = 0
        self.bad_messages = 0
        self.last_error = ""
        self.reach_due = 0.0
        self._task: Optional[asyncio.Task] = None
        self.on_closed: Callable[["RelayIn"], None] = lambda relay: None

    @property
    def state(self) -> str:
        if self.closed:
            return "closed"
        return self.pc.connectionState if self.pc is not None else "retrying"

    # --- the link ------------------------------------------------------------------------------------------

    async def start(self) -> None:
        """The first attempt, answered to the viewer that needed it (RelayUnavailable: 502/503 with the reason);
        afterwards the link keeps itself up in the background."""
        await self._connect()
        self._task = asyncio.get_running_loop().create_task(self._keep(), name=f"relay-in-{self.room_id}")

    async def _connect(self) -> None:
        pc = adapter.new_peer_connection()
        pc.addTransceiver("video", direction="recvonly")
        pc.addTransceiver("audio", direction="recvonly")
        channel = pc.createDataChannel("relay")
        adapter.use_node_port(pc, self.port)
        try:
            await pc.setLocalDescription(await pc.createOffer())
            answer, origin = await self._signal(pc.localDescription.sdp)
            if self.closed:
                raise RelayUnavailable("the relay was closed while connecting", 503)
            await pc.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))
        except SfuError:
            await pc.close()
            raise
        except Exception as exc:
            await pc.close()
            raise RelayUnavailable(f"the origin's answer was unusable: {exc or type(exc).__name__}") from exc
        self.pc, self.channel, self.origin = pc, channel, origin
        self.rtcp_ssrc = adapter.sender_ssrcs(pc.getTransceivers()[0].sender)[0]
        self.tap = adapter.PacketTap(pc, self._on_rtp, self._on_rtcp)
        channel.on("message", self._on_message)
        channel.on("open", self.update_wants)
        self.connected_at = self.last_heard = time.monotonic()
        self.connects += 1
        log.info("relay %s: room %s linked to origin %s", self.id, self.room_id, origin)

    async def _keep(self) -> None:
        attempts = 0
        while not self.closed:
            await asyncio.sleep(CHECK_S)
            now = time.monotonic()
            if self.pc is not None and self._healthy(now):
                attempts = 0
                if now >= self.reach_due:
                    self.reach_due = now + REACH_EVERY_S
                    self.send_reach()
                continue
            if self.pc is not None:
                log.info("relay %s: room %s lost its origin %s (%s); asking again", self.id, self.room_id,
                         self.origin, self.pc.connectionState)
                await self._drop_link()
            if attempts >= MAX_ATTEMPTS:
                log.warning("relay %s: giving up on room %s after %d attempts", self.id, self.room_id, attempts)
                await self.close()
                return
            await asyncio.sleep(BACKOFF_S[min(attempts, len(BACKOFF_S) - 1)])
            attempts += 1
            if self.closed:
                return
            try:
                await self._connect()
            except RelayNotNeeded:
                log.info("relay %s: room %s is placed on this node now; the link ends", self.id, self.room_id)
                await self.close()
                return
            except SfuError as exc:
                self.last_error = str(exc)
                log.info("relay %s: room %s: %s", self.id, self.room_id, exc)
            except Exception:
                log.exception("relay %s: reconnecting failed", self.id)

    def _healthy(self, now: float) -> bool:
        state = self.pc.connectionState  # type: ignore[union-attr]
        if state in ("failed", "closed"):
            return False
        if state != "connected":
            return now - self.connected_at < CONNECT_GRACE_S
        return now - self.last_heard < SILENCE_S

    async def _drop_link(self) -> None:
        """Forget the link and its streams; viewers stay, waiting for layers (and a keyframe) to come back."""
        pc, self.pc, self.tap, self.channel = self.pc, None, None, None
        self.drops += 1
        for rf in self.feeds.values():
            rf.detach()
        self.feeds.clear()
        self.installed.clear()
        self.by_ssrc.clear()
        self.wants_sent = ""
        if pc is not None:
            try:
                await pc.close()
            except Exception:
                log.exception("relay %s: closing the peer connection failed", self.id)

    async def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self._task is not None and self._task is not asyncio.current_task():
            self._task.cancel()
        await self._drop_link()
        self.on_closed(self)

    # --- control messages ----------------------------------------------------------------------------------

    def update_wants(self) -> None:
        """Tell the origin which slots this node's viewers play (the teacher's camera always)."""
        text = encode_want(self._wants() | {"camera"})
        channel = self.channel
        if text == self.wants_sent or channel is None or channel.readyState != "open":
            return
        try:
            channel.send(text)
            self.wants_sent = text
        except Exception:
            log.debug("relay %s: wants not sent", self.id, exc_info=True)

    def send_reach(self) -> None:
        """Tell the origin how the teacher's camera reaches this node's classrooms (its reports and roster)."""
        channel = self.channel
        if channel is None or channel.readyState != "open":
            return
        try:
            for text in encode_reach(local_reach(self._room().viewers).values()):
                channel.send(text)
        except Exception:
            log.debug("relay %s: reach not sent", self.id, exc_info=True)

    def _on_message(self, message) -> None:
        self.last_heard = time.monotonic()
        try:
            msg = decode(message if isinstance(message, str) else "")
            if msg["type"] == "streams":
                self.apply(streams_of(msg), self.last_heard)
        except RelayMessageError as exc:
            self.bad_messages += 1
            log.warning("relay %s: bad control message from %s: %s", self.id, self.origin, exc)
        self.update_wants()

    def apply(self, snapshot: list[RelayedStream], now: float) -> None:
        """Install the origin's current streams in this node's room (see relay_map.plan)."""
        room = self._room()
        for change in plan(self.installed, snapshot):
            rf = self._relayed_feed(room, change.slot)
            for ssrc in change.removed:
                self.installed.pop(ssrc, None)
                owner = self.by_ssrc.pop(ssrc, None)
                if owner is not None:
                    owner.ingest.forget(ssrc)
            if rf is None:
                continue
            if change.rebuild:  # a layer is gone for good: the tracks hold only the streams still relayed
                for kind, track in rf.feed.tracks.items():
                    track.detach_all(now)
                    for stream in rf.ingest.streams.values():
                        if stream.kind == kind:
                            track.attach(stream, now)
            for s in change.added:
                stream = InboundStream(s.kind, s.codec, s.clock_rate, s.ssrc, s.payload_type, s.layer)
                stream.width, stream.height = s.width, s.height  # ordered right before its first keyframe
                rf.ingest.adopt(stream, now)
                self.installed[s.ssrc] = s
                self.by_ssrc[s.ssrc] = rf
            if not rf.ingest.streams:
                rf.detach()
                del self.feeds[change.slot]

    def _relayed_feed(self, room: "Room", slot_text: str) -> Optional[RelayedFeed]:
        try:
            feed = room.feed(parse_slot(slot_text))
        except (RelayMessageError, RoomBusy, ValueError) as exc:
            log.warning("relay %s: slot %s not relayed here: %s", self.id, slot_text, exc)
            return None
        rf = self.feeds.get(slot_text)
        if rf is not None and rf.feed is feed and feed.publisher is rf:
            return rf
        if rf is not None:
            rf.detach()
        if feed.publisher is not None:  # a publisher of this node's own (the room moved here): it wins
            self.feeds.pop(slot_text, None)
            return None
        rf = self.feeds[slot_text] = RelayedFeed(self, feed)
        feed.set_publisher(rf)
        room.ensure_timer()
        return rf

    # --- packets -------------------------------------------------------------------------------------------

    def _on_rtp(self, data: bytes, now: float) -> None:
        if len(data) < 12:
            return
        rf = self.by_ssrc.get(int.from_bytes(data[8:12], "big"))
        if rf is not None:
            self.last_heard = now
            rf.ingest.on_rtp(data, now)

    def _on_rtcp(self, data: bytes) -> None:
        now = time.monotonic()
        self.last_heard = now
        rtcp_dispatch.dispatch(data, self, now)

    def rtcp_sender_report(self, ssrc: int, ntp_timestamp: int, rtp_timestamp: int, now: float) -> None:
        rf = self.by_ssrc.get(ssrc)
        if rf is not None:
            rf.ingest.rtcp_sender_report(ssrc, ntp_timestamp, rtp_timestamp, now)

    def dump(self) -> dict:
        return {"id": self.id, "room": self.room_id, "origin": self.origin, "state": self.state,
                "connects": self.connects, "drops": self.drops, "last_error": self.last_error,
                "bad_messages": self.bad_messages, "streams": len(self.installed),
                "feeds": [rf.dump() for rf in self.feeds.values()]}
