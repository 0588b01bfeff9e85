"""The rooms of this node: each room's LessonState plus its local connections, and delivery of events to them.

Transport-neutral: a connection is anything with `grant`, `send(text)` and `close(code, error)` (both
non-blocking). A Redis-backed hub would keep this interface, forward client messages to the room's owner node
and fan events out by pub/sub to every node's local connections.
"""
from __future__ import annotations

import asyncio
import inspect
import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Awaitable, Callable, Optional, Protocol

from signaling.lesson.room_protocol import ClientMessage, Close, Code, ProtocolError, check_rights, encode, error
from signaling.lesson.room_state import Change, Disconnect, Event, LessonState, Limits, Outcome
from signaling.auth.tokens import Grant

if TYPE_CHECKING:
    from signaling.lesson.room_snapshot import Snapshot

log = logging.getLogger(__name__)


class Connection(Protocol):
    grant: Grant

    def send(self, text: str) -> None: ...

    def close(self, code: int, error: Optional[dict[str, Any]] = None) -> None: ...


class LessonRecorder(Protocol):
    """What the hub asks of the node's recorder (recorder.service.Recorder); a call may return an awaitable."""

    def start(self, room: str, grant: Optional[Grant]) -> object: ...

    def stop(self, room: str) -> object: ...


@dataclass
class Room:
    state: LessonState
    conns: dict[str, Connection] = field(default_factory=dict)
    timer: Optional[asyncio.TimerHandle] = None
    recorder_lock: asyncio.Lock = field(default_factory=asyncio.Lock)


class RoomHub:
    def __init__(self, limits: Limits = Limits(), max_rooms: int = 1000,
                 recorder: Optional[LessonRecorder] = None, clock: Callable[[], float] = time.time) -> None:
        self.limits = limits
        self.max_rooms = max_rooms
        self.recorder = recorder  # None: no recording on this node; library_api.setup sets the node's recorder
        self.clock = clock
        self.rooms: dict[str, Room] = {}
        self._listeners: list[Callable[[str, Change], None]] = []
        self._outcome_listeners: list[Callable[[str], None]] = []
        self._tasks: set[asyncio.Task] = set()
        # cluster mode (room_store.py): the room's saved lesson, read when this node takes a room over
        self.loader: Optional[Callable[[str], Awaitable[Optional["Snapshot"]]]] = None
        self._loading: dict[str, asyncio.Future] = {}

    # ---- for the media plane and operators ---------------------------------------------------------------

    def state(self, room: str) -> Optional[LessonState]:
        r = self.rooms.get(room)
        return r.state if r else None

    def on_change(self, callback: Callable[[str, Change], None]) -> Callable[[], None]:
        """`callback(room, change)` for every room, present and future; returns an unsubscribe."""
        self._listeners.append(callback)
        return lambda: self._listeners.remove(callback) if callback in self._listeners else None

    def on_outcome(self, callback: Callable[[str], None]) -> Callable[[], None]:
        """`callback(room)` after every delivered transition, including those that are not a `Change` (chat,
        hands): whoever mirrors the lesson elsewhere (room_store.py) learns that it moved."""
        self._outcome_listeners.append(callback)
        return lambda: self._outcome_listeners.remove(callback) if callback in self._outcome_listeners else None

    def set_link(self, room: str, identity: str, **stats: Optional[float]) -> None:
        """SFU-measured link quality (loss 0..1, rtt ms, bitrate bit/s, jitter ms) for the roster."""
        r = self.rooms.get(room)
        if r is not None:
            self._deliver(r, r.state.set_link(identity, self.clock(), "sfu", **stats))

    def recorder_changed(self, room: str, active: bool, reason: Optional[str] = None) -> None:
        """The recorder started or stopped other than through this hub (HTTP API, automatic recording, a full
        disk): everyone sees it; why it stopped early goes to the teacher and admins as a `recording_failed`
        error, and recording may be started again."""
        r = self.rooms.get(room)
        if r is None or r.state.recording == active:
            return
        events, _ = r.state.set_recording(active, None)
        if reason:
            events.append(Event(error(Code.RECORDING_FAILED, reason[:200]), roles=frozenset(("teacher", "admin"))))
        self._deliver(r, (events, []))

    # ---- connection lifecycle ----------------------------------------------------------------------------

    async def prepare(self, room: str) -> None:
        """Before a join: a room this node holds no state for is restored from its snapshot, if `loader` has
        one (cluster mode: this node is taking the room over). Concurrent first joins share one load."""
        if self.loader is None or room in self.rooms:
            return
        pending = self._loading.get(room)
        if pending is None:
            pending = self._loading[room] = asyncio.ensure_future(self._restore(room, self.loader))
            pending.add_done_callback(lambda _: self._loading.pop(room, None))
        await asyncio.shield(pending)

    async def _restore(self, room: str, loader: Callable[[str], Awaitable[Optional["Snapshot"]]]) -> None:
        from signaling.lesson.room_snapshot import restore  # only cluster mode needs it
        try:
            snap = await loader(room)
        except Exception:  # the loader logs Redis trouble itself; anything else must not refuse the join
            log.exception("room %s: loading its saved lesson failed", room)
            return
        if snap is None or room in self.rooms or len(self.rooms) >= self.max_rooms:
            return
        r = self.rooms[room] = self._new_room(room, restore(snap, self.limits, self.clock()))
        self._schedule_expiry(room, r)
        if r.state.live:  # the media plane, edges and automatic recording follow the lesson here now
            self._notify(room, Change("live", None, True))

    def join(self, room: str, conn: Connection) -> bool:
        """Admit `conn` (its grant already verified for this room). False: refused, and `conn` is closed."""
        r = self.rooms.get(room)
        if r is None:
            if len(self.rooms) >= self.max_rooms:
                conn.close(Close.FULL, error(Code.SERVER_FULL, "this server has too many rooms; try later"))
                return False
            r = self.rooms[room] = self._new_room(room)
        identity = conn.grant.identity
        events, errors = r.state.join(conn.grant, self.clock())
        if errors:
            code = Close.REMOVED if errors[0].code == Code.REMOVED else Close.FULL
            conn.close(code, errors[0].payload())
            self._discard_if_empty(room, r)
            return False
        old = r.conns.get(identity)
        if old is not None and old is not conn:
            old.close(Close.REPLACED, error(Code.REPLACED, "this identity connected again elsewhere"))
        r.conns[identity] = conn
        self._deliver(r, (events, []))
        return True

    def lost(self, room: str, conn: Connection) -> None:
        """`conn` ended without `leave` (network, expiry, flood): its participant may resume within the grace."""
        r = self.rooms.get(room)
        if r is None or r.conns.get(conn.grant.identity) is not conn:
            return  # replaced, removed or left: already accounted for
        del r.conns[conn.grant.identity]
        self._deliver(r, r.state.disconnect(conn.grant.identity, self.clock()))
        self._schedule_expiry(room, r)

    def refresh(self, room: str, grant: Grant) -> None:
        r = self.rooms.get(room)
        if r is not None:
            r.state.refresh_grant(grant)

    async def handle(self, room: str, conn: Connection, msg: ClientMessage) -> None:
        """One validated client message. Raises ProtocolError for the sender."""
        r = self.rooms.get(room)
        if r is None or r.conns.get(conn.grant.identity) is not conn:
            raise ProtocolError(Code.FORBIDDEN, "not in the room (any more)", msg.ref)
        if msg.type in ("recording_start", "recording_stop"):
            check_rights(msg, conn.grant)
            await self._recording(r, conn.grant, msg.type == "recording_start", msg.ref)
            return
        events, errors = r.state.apply(msg, conn.grant, self.clock())
        self._deliver(r, (events, []))
        if errors:
            raise errors[0]
        if msg.type == "lesson_end" and r.state.recording:
            await self._recording(r, conn.grant, False, msg.ref)
        if msg.type == "leave":
            self._discard_if_empty(room, r)

    async def close(self) -> None:
        """Server shutdown: tell every client to come back later."""
        for r in list(self.rooms.values()):
            if r.timer:
                r.timer.cancel()
            for c in list(r.conns.values()):
                c.close(Close.GOING_AWAY, None)
            r.conns.clear()

    # ---- internals ----------------------------------------------------------------------------------------

    def _new_room(self, room: str, state: Optional[LessonState] = None) -> Room:
        r = Room(LessonState(room, self.limits) if state is None else state)
        r.state.on_change(lambda change: self._notify(room, change))
        return r

    def _notify(self, room: str, change: Change) -> None:
        for listener in list(self._listeners):
            try:
                listener(room, change)
            except Exception:
                log.exception("room change listener failed on %s %s", room, change)

    def _deliver(self, r: Room, outcome: Outcome) -> None:
        if outcome[0]:
            for listener in list(self._outcome_listeners):
                try:
                    listener(r.state.room)
                except Exception:
                    log.exception("room outcome listener failed on %s", r.state.room)
        for ev in outcome[0]:
            if isinstance(ev, Disconnect):
                c = r.conns.pop(ev.identity, None)
                if c is not None:
                    c.close(ev.code, ev.error)
                continue
            text = encode(ev.payload)  # once, whatever the audience size
            for identity, c in list(r.conns.items()):
                if ev.reaches(identity, c.grant.role):
                    c.send(text)

    def _schedule_expiry(self, room: str, r: Room) -> None:
        if r.timer:
            r.timer.cancel()
            r.timer = None
        deadline = r.state.next_deadline()
        if deadline is not None:
            delay = max(0.0, deadline - self.clock()) + 0.01
            r.timer = asyncio.get_running_loop().call_later(delay, self._expire, room)

    def _expire(self, room: str) -> None:
        r = self.rooms.get(room)
        if r is None:
            return
        r.timer = None
        self._deliver(r, r.state.expire(self.clock()))
        self._schedule_expiry(room, r)
        self._discard_if_empty(room, r)

    def _discard_if_empty(self, room: str, r: Room) -> None:
        if r.state.participants or r.conns or self.rooms.get(room) is not r:
            return
        if r.timer:
            r.timer.cancel()
        if r.state.recording:  # nobody left to stop it
            task = asyncio.get_running_loop().create_task(self._stop_recorder_quietly(room))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        r.state.close(self.clock())
        del self.rooms[room]

    async def _recording(self, r: Room, grant: Grant, start: bool, ref: Any) -> None:
        if self.recorder is None:
            raise ProtocolError(Code.NOT_AVAILABLE, "recording is not available on this server", ref)
        async with r.recorder_lock:  # one start/stop at a time per room
            if r.state.recording == start:
                return
            try:
                await self._call_recorder("start" if start else "stop", r.state.room, grant)
            except Exception as exc:
                log.exception("recorder %s failed in %s", "start" if start else "stop", r.state.room)
                raise ProtocolError(Code.RECORDING_FAILED, f"recorder: {str(exc)[:200] or type(exc).__name__}",
                                    ref) from None
            self._deliver(r, r.state.set_recording(start, grant.identity))

    async def _stop_recorder_quietly(self, room: str) -> None:
        try:
            await self._call_recorder("stop", room, None)
        except Exception:
            log.exception("recorder stop failed in %s", room)

    async def _call_recorder(self, what: str, room: str, grant: Optional[Grant]) -> None:
        recorder = self.recorder
        if recorder is None:
            return
        result = recorder.start(room, grant) if what == "start" else recorder.stop(room)
        if inspect.isawaitable(result):
            await result
