"""Draining a cluster node: it takes no new rooms, lets its running lessons finish, then leaves.

`POST /api/admin/drain` (Bearer admin token; `?grace=SECONDS` optional) or SIGTERM starts it:
1. the node marks itself draining in Redis at once (its next heartbeat, sent now): placement skips it, while
   the rooms it already has stay on it;
2. a room that is not busy (a busy room has media sessions here or a live lesson) is let go at once, and each
   busy room as soon as it is not: its placement is given up (the next request places it on another node), then
   its room WebSockets are closed with 1001 (going away): the pages reconnect to the room's new node;
3. when no room is busy any more, or the grace period has ended, it gives up the remaining placements and shuts
   down like on SIGINT: the last sockets close with 1001, media sessions end and the pages start new ones.
Without cluster mode there is nowhere for the rooms to go: the endpoint answers 409 and SIGTERM stops the
server at once, as before.
"""
from __future__ import annotations

import asyncio
import logging
import os
import signal
import time
from typing import Optional

from aiohttp import web

from signaling.http.app_keys import SFU
from signaling.live.room_ws import HUB
from signaling.cluster.cluster_registry import ClusterUnavailable, Registry
from signaling.http import access

log = logging.getLogger(__name__)

DEFAULT_GRACE_S = 30.0
MAX_GRACE_S = 3600.0
POLL_S = 0.2
ANNOUNCE_TIMEOUT_S = 2.0


class Drainer:
    def __init__(self, app: web.Application, registry: Optional[Registry], grace_s: float = DEFAULT_GRACE_S) -> None:
        self.app = app
        self.registry = registry
        self.grace_s = grace_s
        self.started_at: Optional[float] = None
        self.task: Optional[asyncio.Task] = None
        self.reason = ""
        self.announced = asyncio.Event()  # Redis was told (or could not be): the 202 waits for it

    @property
    def draining(self) -> bool:
        return self.started_at is not None

    def busy_rooms(self) -> set[str]:
        """Rooms that still hold a lesson here: someone publishing (or being recorded) or a live lesson. Viewers
        alone do not hold a room: a classroom's terminal stays connected all day."""
        busy = self.app[SFU].busy_rooms()
        hub = self.app.get(HUB)
        if hub is not None:
            for room in list(hub.rooms):
                state = hub.state(room)
                if state is not None and state.live:
                    busy.add(room)
        return busy

    def start(self, reason: str, grace_s: Optional[float] = None) -> bool:
        """Begin draining (False if it already was: the first grace period holds)."""
        if self.draining:
            return False
        self.started_at = time.monotonic()
        self.reason = reason
        if grace_s is not None:
            self.grace_s = grace_s
        if self.registry is not None:
            self.registry.draining = True
        self.task = asyncio.get_running_loop().create_task(self._run(), name="drain")
        return True

    async def _run(self) -> None:
        log.warning("draining %s (%s): no new rooms; waiting up to %.0f s for %d busy room(s)", self._name(),
                    self.reason, self.grace_s, len(self.busy_rooms()))
        if self.registry is not None:
            try:  # tell the other nodes now, not at the next heartbeat
                await self.registry.heartbeat_once()
            except Exception as exc:  # Redis down: the heartbeat loop retries; placement falls back anyway
                log.warning("draining: could not tell Redis yet: %s", exc)
        self.announced.set()
        assert self.started_at is not None
        deadline = self.started_at + self.grace_s
        let_go: set[str] = set()
        while True:  # bounded by the grace period
            busy = self.busy_rooms()
            idle = self._local_rooms() - busy - let_go
            if idle:
                await self._let_go(idle)
                let_go |= idle
            if not busy or time.monotonic() >= deadline:
                break
            await asyncio.sleep(POLL_S)
        left = self.busy_rooms()
        await self._release(self._local_rooms())
        log.warning("%s drained after %.1f s (%s); shutting down", self._name(), time.monotonic() - self.started_at,
                    f"{len(left)} room(s) still busy at the end of the grace period" if left else "rooms empty")
        # the same clean shutdown as Ctrl-C: room sockets close with 1001, sessions end, the node leaves Redis
        os.kill(os.getpid(), signal.SIGINT)

    def _name(self) -> str:
        return f"node {self.registry.node_id}" if self.registry is not None else "server"

    def _local_rooms(self) -> set[str]:
        from signaling.cluster.cluster_routes import local_rooms
        return local_rooms(self.app)

    async def _release(self, rooms: set[str]) -> None:
        if self.registry is None or not rooms:
            return
        try:
            released = await self.registry.release_rooms(rooms)
            log.info("draining: released %d room placement(s)", released)
        except ClusterUnavailable as exc:
            log.warning("draining: could not release room placements (%s); they expire by themselves", exc)

    async def _let_go(self, rooms: set[str]) -> None:
        """Idle rooms: placement first (so a reconnecting page lands elsewhere), then 1001 to their sockets and
        the end of their viewers' sessions (the pages start new ones, on the room's new node)."""
        await self._release(rooms)
        log.info("draining: letting go of %s", ", ".join(sorted(rooms)))
        hub = self.app.get(HUB)
        if hub is not None:
            from signaling.lesson.room_protocol import Close
            for room in rooms:
                r = hub.rooms.get(room)
                for conn in list(r.conns.values()) if r is not None else ():
                    conn.close(Close.GOING_AWAY, None)
        await self.app[SFU].end_rooms(set(rooms))

    def status(self) -> dict:
        elapsed = 0.0 if self.started_at is None else time.monotonic() - self.started_at
        node = self.app[SFU]
        return {"node": self.registry.node_id if self.registry else None, "draining": self.draining,
                "grace_s": self.grace_s, "elapsed_s": round(elapsed, 3), "busy_rooms": sorted(self.busy_rooms()),
                "sessions": node.counts()["sessions"]}


DRAINER = web.AppKey("drainer", Drainer)  # setup


def _grace(request: web.Request, default: float) -> float:
    raw = request.query.get("grace")
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise web.HTTPBadRequest(text="grace must be a number of seconds") from None
    if not 0 <= value <= MAX_GRACE_S:
        raise web.HTTPBadRequest(text=f"grace must be between 0 and {MAX_GRACE_S:.0f} seconds")
    return value


async def drain(request: web.Request) -> web.Response:
    access.admin_grant(request, "drain a node")
    drainer: Drainer = request.app[DRAINER]
    if drainer.registry is None:
        raise web.HTTPConflict(text="draining needs cluster mode (--redis): without it there is no other node "
                                    "to take the rooms; stop the server instead")
    grace = _grace(request, drainer.grace_s)
    started = drainer.start("POST /api/admin/drain", grace)
    try:  # answer once the other nodes place no new room here (bounded: the Redis timeouts are short)
        await asyncio.wait_for(drainer.announced.wait(), ANNOUNCE_TIMEOUT_S)
    except asyncio.TimeoutError:
        pass
    return web.json_response({**drainer.status(), "started": started}, status=202)


async def drain_status(request: web.Request) -> web.Response:
    access.admin_grant(request, "see the drain state")
    return web.json_response(request.app[DRAINER].status())


def setup(app: web.Application, registry: Optional[Registry], grace_s: float = DEFAULT_GRACE_S) -> Drainer:
    """The drain endpoints; in cluster mode SIGTERM drains instead of stopping at once."""
    drainer = Drainer(app, registry, grace_s)
    app[DRAINER] = drainer
    app.router.add_post("/api/admin/drain", drain)
    app.router.add_get("/api/admin/drain", drain_status)

    async def on_startup(app: web.Application) -> None:
        if registry is None:
            return
        loop = asyncio.get_running_loop()
        try:  # replaces aiohttp's own SIGTERM handler, installed just before the startup hooks run
            loop.add_signal_handler(signal.SIGTERM, lambda: drainer.start("SIGTERM"))
        except (NotImplementedError, RuntimeError):
            pass  # not the main thread (tests running the app in-process): the endpoint still works

    async def on_shutdown(app: web.Application) -> None:
        if drainer.task is not None and not drainer.task.done():
            drainer.task.cancel()  # Ctrl-C during a drain: stop now

    app.on_startup.append(on_startup)
    app.on_shutdown.insert(0, on_shutdown)
    return drainer
