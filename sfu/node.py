"""The SFU as signaling sees it: create publisher/viewer sessions from SDP offers, end them, report state."""
from __future__ import annotations

import asyncio
import logging
import time
from typing import Iterable, Optional

from . import aiortc_adapter as adapter
from .errors import BadOffer, RoomBusy, SessionNotFound
from .room import Room
from .sessions import PublisherSession, Session, ViewerSession
from .track import PacketSink

log = logging.getLogger(__name__)


class SfuNode:
    def __init__(self, media_hosts: Optional[Iterable[str]] = None, public_ip: Optional[str] = None) -> None:
        problems = adapter.self_test()
        if problems:
            raise RuntimeError("aiortc adapter self-test failed: " + "; ".join(problems))
        adapter.configure_host_addresses(media_hosts)
        self.public_ip = public_ip
        self.rooms: dict[str, Room] = {}
        self.sessions: dict[str, Session] = {}
        self._closing: set[asyncio.Task] = set()

    def _room(self, room_id: str) -> Room:
        room = self.rooms.get(room_id)
        if room is None:
            room = self.rooms[room_id] = Room(room_id)
        return room

    def _closed(self, session: Session) -> None:
        self.sessions.pop(session.id, None)
        self._drop_if_empty(session.room)

    def _drop_if_empty(self, room: Room) -> None:
        if room.empty and self.rooms.get(room.id) is room:
            del self.rooms[room.id]
            task = asyncio.get_running_loop().create_task(room.stop())
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)

    async def publish(self, room_id: str, offer: str) -> tuple[str, str]:
        """Start a publisher; returns (session id, SDP answer)."""
        room = self._room(room_id)
        if room.publisher is not None:
            raise RoomBusy(f"room {room_id} already has a publisher")
        session = PublisherSession(room, self._closed)
        room.set_publisher(session)  # reserve the slot during negotiation
        self.sessions[session.id] = session
        try:
            answer = await session.negotiate(offer, self.public_ip)
        except BaseException:
            await session.close()
            raise
        return session.id, answer

    async def play(self, room_id: str, offer: str, max_height: Optional[int] = None) -> tuple[str, str]:
        """Start a viewer (at most `max_height` lines of picture if given); returns (session id, SDP answer)."""
        room = self._room(room_id)
        session = ViewerSession(room, self._closed, max_height)
        room.viewers.add(session)
        room.ensure_timer()
        self.sessions[session.id] = session
        try:
            answer = await session.negotiate(offer, self.public_ip)
        except BaseException:
            await session.close()
            raise
        return session.id, answer

    def attach_sink(self, room_id: str, kind: str, sink: "PacketSink") -> None:
        """Give an in-process consumer (the recorder) the room's `kind` track; keeps the room alive."""
        room = self._room(room_id)
        room.tracks[kind].add_sink(sink, time.monotonic())
        room.ensure_timer()

    def detach_sink(self, room_id: str, kind: str, sink: "PacketSink") -> None:
        room = self.rooms.get(room_id)
        if room is None:
            return
        room.tracks[kind].remove_sink(sink)
        self._drop_if_empty(room)

    def session(self, room_id: str, session_id: str, role: str) -> Session:
        s = self.sessions.get(session_id)
        if s is None or s.room.id != room_id or s.role != role:
            raise SessionNotFound("no such session")
        return s

    async def end(self, room_id: str, session_id: str, role: str) -> None:
        await self.session(room_id, session_id, role).close()

    async def close(self) -> None:
        await asyncio.gather(*(s.close() for s in list(self.sessions.values())), return_exceptions=True)
        for room in list(self.rooms.values()):
            await room.stop()
        self.rooms.clear()
        if self._closing:
            await asyncio.gather(*self._closing, return_exceptions=True)

    def counts(self) -> dict:
        return {"room_count": len(self.rooms), "sessions": len(self.sessions),
                "publishers": sum(1 for s in self.sessions.values() if s.role == "publisher"),
                "viewers": sum(1 for s in self.sessions.values() if s.role == "viewer")}

    def dump(self, room_id: Optional[str] = None) -> dict:
        rooms = [r for r in self.rooms.values() if room_id is None or r.id == room_id]
        return {"rooms": [r.dump() for r in rooms], **self.counts()}
