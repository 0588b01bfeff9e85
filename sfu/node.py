"""The SFU as signaling sees it: create publisher/viewer sessions from SDP offers, end them, follow the lesson,
report state."""
from __future__ import annotations

import asyncio
import logging
import time
from typing import Callable, Iterable, Optional, Sequence, TypeVar

from sfu.webrtc import aiortc_adapter as adapter
from sfu.errors import BadOffer, RoomBusy, SessionNotFound, SfuError
from sfu.room.feed import MAIN, LessonFacts, Slot
from sfu.webrtc.heap_relief import HeapRelief
from sfu.ladder.ladder_rung import Rung
from sfu.cascade.reach import Reach, local_reach
from sfu.cascade.relay_in import RelayIn, Signal
from sfu.cascade.relay_out import RelayOutSession
from sfu.room.room import Room
from sfu.webrtc.sessions import PublisherSession, Session, ViewerSession
from sfu.room.track import PacketSink
from sfu.ladder.track_ladder import DEFAULT_RUNGS

log = logging.getLogger(__name__)
S = TypeVar("S", bound=Session)

RELAY_LINGER_S = 2.0  # an edge keeps a room's link this long after its last viewer left (a page reloading)


class SfuNode:
    def __init__(self, media_hosts: Optional[Iterable[str]] = None, public_ip: Optional[str] = None,
                 ladder_rungs: Sequence[Rung] = DEFAULT_RUNGS, udp_port: Optional[int] = 0) -> None:
        """`ladder_rungs`: lower layers the SFU makes for a single-layer teacher camera or screen (none: off).
        `udp_port`: every peer connection shares one UDP socket per media address on this port (0: a free one);
        None: a socket per connection."""
        self.ladder_rungs = tuple(ladder_rungs)
        problems = adapter.self_test()
        if problems:
            raise RuntimeError("aiortc adapter self-test failed: " + "; ".join(problems))
        adapter.configure_host_addresses(media_hosts)
        self.port = None if udp_port is None else adapter.NodePort(udp_port)
        self.public_ip = public_ip
        self.rooms: dict[str, Room] = {}
        self.sessions: dict[str, Session] = {}
        self._closing: set[asyncio.Task] = set()
        # the lesson of a room as signaling knows it (stage, open microphones); None: no lesson, plain WHIP/WHEP
        self.lesson: Callable[[str], Optional[LessonFacts]] = lambda room_id: None
        # cascade: as an edge, one link per room from its origin node (relay_in.py)
        self.relays_in: dict[str, RelayIn] = {}
        self._relays_starting: dict[str, asyncio.Future] = {}
        self._lingering: dict[str, asyncio.TimerHandle] = {}
        self.relay_linger_s = RELAY_LINGER_S
        self.heap_relief = HeapRelief()  # a burst of closed sessions is collected and trimmed once it is over

    def _room(self, room_id: str) -> Room:
        room = self.rooms.get(room_id)
        if room is None:
            room = self.rooms[room_id] = Room(room_id, self.ladder_rungs)
            room.apply_lesson(self.lesson(room_id))
        return room

    def _opened(self, session: S) -> S:
        self.sessions[session.id] = session
        self.heap_relief.opened()
        return session

    def _closed(self, session: Session) -> None:
        self.sessions.pop(session.id, None)
        self.heap_relief.closed()
        session.room.prune()
        if session.role == "viewer":
            self._viewers_changed(session.room.id)
        self._drop_if_empty(session.room)

    def _drop_if_empty(self, room: Room) -> None:
        if room.empty and self.rooms.get(room.id) is room:
            del self.rooms[room.id]
            task = asyncio.get_running_loop().create_task(room.stop())
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)

    async def publish(self, room_id: str, offer: str, slot: Slot = MAIN, owner: str = "") -> tuple[str, str]:
        """Start a publisher of `slot` (the teacher's camera by default); returns (session id, SDP answer).
        The teacher's camera and screen take one publisher each (RoomBusy); a classroom that publishes again
        replaces its previous session (a terminal that reloaded its page)."""
        if room_id in self.relays_in:  # the room is placed on this node now: its media is published here
            await self.relays_in[room_id].close()
        room = self._room(room_id)
        feed = room.feed(slot)
        old = feed.publisher
        if old is not None and slot.source == "classroom":
            log.info("%s: publishing again; the previous session %s ends", feed.label, old.id)
            await old.close()
            room = self._room(room_id)  # closing may have emptied and dropped the room
            feed = room.feed(slot)
        if feed.publisher is not None:
            what = "a publisher" if slot.source == "camera" else f"a {slot} publisher"
            raise RoomBusy(f"room {room_id} already has {what}")
        session = self._opened(PublisherSession(room, feed, self._closed, owner))
        feed.set_publisher(session)  # reserve the slot during negotiation
        room.ensure_timer()
        return session.id, await self._negotiate(session, offer)

    async def play(self, room_id: str, offer: str, max_height: Optional[int] = None, slot: Slot = MAIN,
                   owner: str = "") -> tuple[str, str]:
        """Start a viewer of `slot` (the teacher's camera by default; at most `max_height` lines of picture if
        given); returns (session id, SDP answer)."""
        room = self._room(room_id)
        session = self._opened(ViewerSession(room, self._closed, max_height, slot, owner))
        room.viewers.add(session)
        room.ensure_timer()
        self._viewers_changed(room_id)
        return session.id, await self._negotiate(session, offer)

    # --- cascade: origin and edge ends of SFU-to-SFU links ------------------------------------------------

    async def relay(self, room_id: str, offer: str, edge: str) -> tuple[str, str]:
        """As the room's origin: open a link to edge node `edge` (its offer), carrying each layer once."""
        room = self._room(room_id)
        session = self._opened(RelayOutSession(room, self._closed, edge))
        room.relays.add(session)
        return session.id, await self._negotiate(session, offer)

    async def ensure_relay(self, room_id: str, signal: Signal) -> RelayIn:
        """As an edge: the room's link from its origin, opened now if there is none (RelayUnavailable when the
        origin cannot be asked: the viewer who needed it gets the reason)."""
        self._cancel_linger(room_id)
        relay = self.relays_in.get(room_id)
        if relay is not None and not relay.closed:
            return relay
        starting = self._relays_starting.get(room_id)
        if starting is None:
            relay = RelayIn(room_id, lambda: self._room(room_id), signal, lambda: self._viewer_slots(room_id))
            relay.on_closed = self._relay_closed
            relay.port = self.port
            starting = self._relays_starting[room_id] = asyncio.ensure_future(self._start_relay(relay))
        return await asyncio.shield(starting)

    async def _start_relay(self, relay: RelayIn) -> RelayIn:
        try:
            await relay.start()
            self.relays_in[relay.room_id] = relay
            return relay
        finally:
            self._relays_starting.pop(relay.room_id, None)

    def _viewer_slots(self, room_id: str) -> set[str]:
        room = self.rooms.get(room_id)
        return {str(v.slot) for v in room.viewers} if room is not None else set()

    def _viewers_changed(self, room_id: str) -> None:
        relay = self.relays_in.get(room_id)
        if relay is None:
            return
        relay.update_wants()
        room = self.rooms.get(room_id)
        if (room is None or not room.viewers) and room_id not in self._lingering:
            self._lingering[room_id] = asyncio.get_running_loop().call_later(
                self.relay_linger_s, self._linger_over, room_id)

    def _cancel_linger(self, room_id: str) -> None:
        handle = self._lingering.pop(room_id, None)
        if handle is not None:
            handle.cancel()

    def _linger_over(self, room_id: str) -> None:
        self._lingering.pop(room_id, None)
        room = self.rooms.get(room_id)
        relay = self.relays_in.get(room_id)
        if relay is not None and (room is None or not room.viewers):
            log.info("room %s: no viewer here any more; its link from %s ends", room_id, relay.origin)
            task = asyncio.get_running_loop().create_task(relay.close())
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)

    def _relay_closed(self, relay: RelayIn) -> None:
        if self.relays_in.get(relay.room_id) is relay:
            del self.relays_in[relay.room_id]
        room = self.rooms.get(relay.room_id)
        if room is not None:
            self._drop_if_empty(room)

    async def _negotiate(self, session: Session, offer: str) -> str:
        session.port = self.port
        try:
            answer = await session.negotiate(offer, self.public_ip)
        except BaseException as exc:
            ended_meanwhile = session.closed  # replaced, removed or the lesson ended while negotiating
            await session.close()
            if isinstance(exc, (SfuError, asyncio.CancelledError)) or not isinstance(exc, Exception):
                raise
            if ended_meanwhile:
                raise RoomBusy("the session was ended while it was being set up") from exc
            # aiortc accepted the offer but could not build on it (mismatched sections, codecs, transports):
            # the offer's fault, said in a line
            log.info("%s offer could not be negotiated: %s: %s", session.role, type(exc).__name__, exc)
            raise BadOffer(f"offer could not be negotiated: {exc or type(exc).__name__}") from exc
        if session.closed:
            raise RoomBusy("the session was ended while it was being set up")
        return answer

    def attach_sink(self, room_id: str, kind: str, sink: "PacketSink", source: str = "camera") -> None:
        """Give an in-process consumer (the recorder) the room's `kind` track of the teacher's `source` (camera:
        camera and microphone; screen: the screen share); keeps the room alive."""
        room = self._room(room_id)
        room.feed(self._teacher_slot(source)).tracks[kind].add_sink(sink, time.monotonic())
        room.ensure_timer()

    def detach_sink(self, room_id: str, kind: str, sink: "PacketSink", source: str = "camera") -> None:
        room = self.rooms.get(room_id)
        if room is None:
            return
        room.feed(self._teacher_slot(source)).tracks[kind].remove_sink(sink)
        self._drop_if_empty(room)

    def request_keyframe(self, room_id: str, kind: str, stream: object, source: str = "camera") -> None:
        """A sink lost its place in a stream (the recorder starting or repairing): ask for a keyframe of it."""
        room = self.rooms.get(room_id)
        if room is not None:
            room.feed(self._teacher_slot(source)).tracks[kind].request_keyframe(time.monotonic(), stream)

    @staticmethod
    def _teacher_slot(source: str) -> Slot:
        if source not in ("camera", "screen"):
            raise ValueError("source must be camera or screen")
        return Slot(source)

    # --- the lesson ---------------------------------------------------------------------------------------

    def apply_lesson(self, room_id: str, facts: Optional[LessonFacts]) -> None:
        """The lesson changed (stage, microphones; None: no lesson any more): follow it in this room's media."""
        room = self.rooms.get(room_id)
        if room is not None:
            room.apply_lesson(facts)

    async def end_publishing(self, room_id: str) -> int:
        """The lesson ended: close every publisher session of the room (teacher camera and screen, classrooms)."""
        room = self.rooms.get(room_id)
        if room is None:
            return 0
        ending = list(room.publishers())
        await asyncio.gather(*(s.close() for s in ending), return_exceptions=True)
        return len(ending)

    async def end_owner(self, room_id: str, identity: str) -> int:
        """Close every session `identity` opened in the room (it was removed from the lesson)."""
        ending = [s for s in self.sessions.values() if s.room.id == room_id and s.owner == identity]
        await asyncio.gather(*(s.close() for s in ending), return_exceptions=True)
        return len(ending)

    def camera_reach(self, room_id: str) -> dict[str, Reach]:
        """How the teacher's camera reaches each classroom of the room, by identity: its viewers here, and those
        the room's edges serve (as they last reported them over their links)."""
        room = self.rooms.get(room_id)
        if room is None:
            return {}
        now = time.monotonic()
        out: dict[str, Reach] = {}
        for link in room.relays:
            out.update(link.reach.fresh(now))
        out.update(local_reach(room.viewers))
        return out

    def camera_forwarded(self, room_id: str) -> Optional[int]:
        """Packets of the teacher's camera forwarded so far (None: no such room, or no publisher): moving when
        the camera is live."""
        room = self.rooms.get(room_id)
        if room is None or room.main.publisher is None:
            return None
        return room.main.tracks["video"].forwarded

    def viewer_links(self, room_id: str) -> dict[str, dict[str, Optional[float]]]:
        """Each identity's downlink as the SFU measures it on its main (teacher camera) session, here or on an
        edge: loss (0..1, from receiver reports), rtt (ms), bitrate (bit/s: the viewer's estimate, else what it
        was sent)."""
        return {owner: r.link() for owner, r in self.camera_reach(room_id).items() if r.packets}

    def session(self, room_id: str, session_id: str, role: str) -> Session:
        s = self.sessions.get(session_id)
        if s is None or s.room.id != room_id or s.role != role:
            raise SessionNotFound("no such session")
        return s

    async def end(self, room_id: str, session_id: str, role: str) -> None:
        await self.session(room_id, session_id, role).close()

    async def open_ports(self) -> dict[str, int]:
        """Bind the node's UDP socket now, so a port in use stops the start with a reason; address -> port."""
        return await self.port.open() if self.port is not None else {}

    async def close(self) -> None:
        for handle in self._lingering.values():
            handle.cancel()
        await asyncio.gather(*(r.close() for r in list(self.relays_in.values())), return_exceptions=True)
        await asyncio.gather(*(s.close() for s in list(self.sessions.values())), return_exceptions=True)
        for room in list(self.rooms.values()):
            await room.stop()
        self.rooms.clear()
        if self._closing:
            await asyncio.gather(*self._closing, return_exceptions=True)
        self.heap_relief.cancel()
        if self.port is not None:
            self.port.close()

    # --- what signaling asks of the media plane -------------------------------------------------------------

    def room_sessions(self, room_id: str) -> int:
        """Sessions in the room: its viewers and publishers."""
        room = self.rooms.get(room_id)
        return 0 if room is None else len(room.viewers) + sum(1 for _ in room.publishers())

    def playback_sessions(self, room_id: str, identity: str, slot: Slot) -> list[Session]:
        """`identity`'s open viewer sessions of `slot` in the room, oldest first."""
        return sorted((s for s in self.sessions.values() if s.role == "viewer" and s.room.id == room_id
                       and s.owner == identity and str(s.slot) == str(slot) and not s.closed),
                      key=lambda s: s.created)

    def has_session(self, session_id: str) -> bool:
        return session_id in self.sessions

    def local_rooms(self) -> set[str]:
        """Rooms this node is the origin of (an edge's relayed rooms are their origin's)."""
        return set(self.rooms) - set(self.relays_in)

    def is_edge_for(self, room_id: str) -> bool:
        """This node relays the room from its origin (a link in)."""
        return room_id in self.relays_in

    def busy_rooms(self) -> set[str]:
        """Rooms with someone publishing or a sink (the recorder) on a track."""
        return {room_id for room_id, room in self.rooms.items()
                if any(True for _ in room.publishers())
                or any(t.sinks for f in room.feeds() for t in f.tracks.values())}

    async def end_rooms(self, room_ids: set[str]) -> int:
        """Close every session of these rooms (a draining node handing its lessons over)."""
        ending = [s for s in list(self.sessions.values()) if s.room.id in room_ids]
        await asyncio.gather(*(s.close() for s in ending), return_exceptions=True)
        return len(ending)

    def forwarded_packets(self) -> int:
        return sum(t.forwarded for r in self.rooms.values() for t in r.tracks.values())

    def counts(self) -> dict:
        return {"room_count": len(self.rooms), "sessions": len(self.sessions),
                "publishers": sum(1 for s in self.sessions.values() if s.role == "publisher"),
                "viewers": sum(1 for s in self.sessions.values() if s.role == "viewer"),
                "relays_out": sum(1 for s in self.sessions.values() if s.role == "relay"),
                "relays_in": len(self.relays_in),
                "ladders": sum(1 for r in self.rooms.values() for f in r.feeds() for t in f.tracks.values()
                               if t.ladder is not None and t.ladder.encoding)}

    def dump(self, room_id: Optional[str] = None) -> dict:
        rooms = [r for r in self.rooms.values() if room_id is None or r.id == room_id]
        links = [r.dump() for r in self.relays_in.values() if room_id is None or r.room_id == room_id]
        return {"rooms": [r.dump() for r in rooms], "links_in": links, **self.counts()}
