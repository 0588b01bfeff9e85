"""Cluster mode: each room's lesson state kept in Redis, so the node taking a room over restores it.

"State in memory by default, in Redis when configured": the room's node stays the authority (the lesson runs
from its memory) and writes a snapshot (room_snapshot.py) to `liveclass:roomstate:{room}` after changes:
the first change after a quiet spell at once, later ones coalesced, one write per room at most every
`interval_s`. Snapshots expire after `ttl_s` unless rewritten (every `ttl_s / 4` while the room lives) and are
deleted when the room is discarded here (nobody left). A write or delete happens only while the room's placement
names this node or nobody (a Lua check), so a node cut off from Redis that lost the room never overwrites the
new owner's state. Redis unreachable: the lesson goes on from memory and the rooms stay dirty; the writer
retries every `retry_s`. After a Redis restart (this node had to re-register) every room is rewritten.

A node taking over a room (the hub has no state for it) loads the snapshot before the first join; a missing,
unreadable or malformed one means the room starts empty, as it would without Redis.
"""
from __future__ import annotations

import asyncio
import logging
import time
from typing import Callable, Optional

from aiohttp import web
from redis.exceptions import RedisError

from signaling.cluster.placement import PREFIX, room_key
from signaling.cluster.cluster_registry import Registry
from signaling.live.room_hub import RoomHub
from signaling.lesson.room_snapshot import MAX_SNAPSHOT_CHARS, Snapshot, SnapshotError, capture, decode, encode
from signaling.lesson.room_state import Change

log = logging.getLogger(__name__)

SNAPSHOT_PREFIX = PREFIX + "roomstate:"

# KEYS[1] snapshot, KEYS[2] the room's placement; ARGV[1] this node, ARGV[2] text ('' deletes), ARGV[3] TTL ms
_WRITE = """
local owner = redis.call('GET', KEYS[2])
if owner and owner ~= ARGV[1] then return 0 end
if ARGV[2] == '' then redis.call('DEL', KEYS[1]) else redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3]) end
return 1
"""


def snapshot_key(room: str) -> str:
    return SNAPSHOT_PREFIX + room


class RoomStore:
    def __init__(self, hub: RoomHub, registry: Registry, interval_s: float = 0.15, ttl_s: float = 3600.0,
                 retry_s: float = 1.0, load_timeout_s: float = 1.0, clock: Callable[[], float] = time.time) -> None:
        self.hub = hub
        self.registry = registry
        self.redis = registry.redis  # its socket timeouts bound every call
        self.interval_s = interval_s
        self.ttl_s = ttl_s
        self.retry_s = retry_s
        self.load_timeout_s = load_timeout_s
        self.clock = clock
        self._write = self.redis.register_script(_WRITE)
        self._dirty: set[str] = set()
        self._written: dict[str, Snapshot] = {}  # last durable state written per room (skip identical writes)
        self._wake = asyncio.Event()
        self._task: Optional[asyncio.Task] = None
        self.writes = 0        # snapshots written or deleted (for tests and operators)
        self.failures = 0
        self.restored = 0
        self.last_error = ""

    # ---- what the hub and the registry call (never blocking: mark and wake) ---------------------------------

    def touch(self, room: str) -> None:
        self._dirty.add(room)
        self._wake.set()

    def on_change(self, room: str, change: Change) -> None:
        self.touch(room)

    def rewrite_all(self) -> None:
        """Redis lost our keys (restart) or the TTL needs refreshing: write every room again, changed or not."""
        self._written.clear()
        for room in list(self.hub.rooms):
            self.touch(room)

    # ---- the takeover: load before the first join -------------------------------------------------------------

    async def load(self, room: str) -> Optional[Snapshot]:
        try:
            text = await asyncio.wait_for(self.redis.get(snapshot_key(room)), self.load_timeout_s)
        except (RedisError, OSError, asyncio.TimeoutError) as exc:
            log.warning("room %s: lesson snapshot not loaded (%s); starting empty", room, exc or type(exc).__name__)
            return None
        if text is None:
            return None
        try:
            snap = decode(text, room, self.hub.limits)
        except SnapshotError as exc:
            log.warning("room %s: ignoring a malformed lesson snapshot in Redis: %s", room, exc)
            return None
        self.restored += 1
        self._written[room] = snap.durable()  # what Redis holds already
        log.info("room %s: lesson restored from its snapshot (%d participants, %d hands, %d chat, live=%s)",
                 room, len(snap.participants), len(snap.hands), len(snap.chat), snap.live)
        return snap

    # ---- the writer ---------------------------------------------------------------------------------------------

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        refresh_s = self.ttl_s / 4
        next_refresh = loop.time() + refresh_s
        while True:  # the node's lifetime; each round bounded by the Redis socket timeouts
            try:
                await asyncio.wait_for(self._wake.wait(), max(0.0, next_refresh - loop.time()))
            except asyncio.TimeoutError:
                pass
            if loop.time() >= next_refresh:  # by the clock, not by idleness: busy rooms must not starve quiet ones
                next_refresh = loop.time() + refresh_s
                self.rewrite_all()  # keep the TTL of every live room's snapshot
            self._wake.clear()
            try:
                ok = await self.flush()
            except Exception:  # a bug must not stop the writer for the node's lifetime; the next change retries
                log.exception("room snapshots not written")
                ok = False
            await asyncio.sleep(self.interval_s if ok else self.retry_s)  # coalesce the next changes
            if self._dirty:
                self._wake.set()

    async def flush(self) -> bool:
        """Write (or delete) every dirty room's snapshot in one round trip. False: Redis failed, kept dirty."""
        rooms, self._dirty = self._dirty, set()
        ops: list[tuple[str, Optional[Snapshot], str]] = []
        now = self.clock()
        for room in sorted(rooms):
            state = self.hub.state(room)
            if state is None:  # discarded here: nobody left
                ops.append((room, None, ""))
                continue
            snap = capture(state, now)
            if self._written.get(room) == snap.durable():
                continue  # only link reports or event numbers moved
            text = encode(snap)
            if len(text) > MAX_SNAPSHOT_CHARS:  # no node would restore it: keep the last one that fits
                log.warning("room %s: lesson snapshot of %d characters is over the limit; not written", room,
                            len(text))
                continue
            ops.append((room, snap, text))
        if not ops:
            return True
        try:
            pipe = self.redis.pipeline(transaction=False)
            ttl_ms = str(int(self.ttl_s * 1000))
            for room, _, text in ops:
                await self._write(keys=[snapshot_key(room), room_key(room)],  # queued: runs in execute()
                                  args=[self.registry.node_id, text, ttl_ms], client=pipe)
            results = await pipe.execute()
        except (RedisError, OSError) as exc:
            self._dirty |= rooms
            self.failures += 1
            if not self.last_error:
                log.warning("room snapshots not written (%s); retrying every %.1f s", exc, self.retry_s)
            self.last_error = str(exc) or type(exc).__name__
            return False
        if self.last_error:
            log.info("room snapshots written again")
            self.last_error = ""
        for (room, snap, _), result in zip(ops, results):
            if snap is None:
                self._written.pop(room, None)
            elif int(result) == 1:
                self._written[room] = snap.durable()
            else:
                log.debug("room %s: placed on another node; its snapshot is not ours to write", room)
        self.writes += len(ops)
        return True

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="room-store")

    async def stop(self, timeout_s: float = 1.0) -> None:
        """Shutdown: one last write of what changed (a restarted node, or the next one, resumes from it)."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self._dirty:
            try:
                await asyncio.wait_for(self.flush(), timeout_s)
            except asyncio.TimeoutError:
                pass


ROOM_STORE = web.AppKey("room_store", RoomStore)  # setup


def setup(app: web.Application, hub: RoomHub, registry: Registry) -> RoomStore:
    """Cluster mode only: snapshot the hub's rooms into Redis and restore them on takeover."""
    store = RoomStore(hub, registry)
    app[ROOM_STORE] = store
    hub.loader = store.load
    hub.on_change(store.on_change)
    hub.on_outcome(store.touch)
    registry.on_registered(store.rewrite_all)

    async def start(app: web.Application) -> None:
        store.start()

    async def stop(app: web.Application) -> None:
        await store.stop()

    app.on_startup.append(start)
    app.on_shutdown.insert(0, stop)  # before the registry closes its Redis client
    return store
