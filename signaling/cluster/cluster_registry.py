"""Cluster mode, the Redis part: this node's heartbeat (registration, load, claim of its live rooms) and room
placement. Every Redis error becomes ClusterUnavailable, with a reason; the heartbeat loop keeps retrying, so a
restarted Redis sees every node again within one heartbeat."""
from __future__ import annotations

import asyncio
import logging
import time
from typing import Callable, Iterable, Optional

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from signaling.cluster.placement import (NODES_KEY, ClusterConfig, NodeInfo, NoLiveNode, alive_key, node_key, placement_for,
                      room_key)

log = logging.getLogger(__name__)

# replace a room's placement only if it still names the node we saw dead (another node may have re-placed it)
_CAS = """
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3]) return 1 end
return 0
"""
# every heartbeat, for each room with something on this node: keep its placement alive (PX), or claim it when
# it has none (after a Redis restart; not while draining: it gave them up); never steal another node's room
_CLAIM = """
for _, key in ipairs(KEYS) do
  local owner = redis.call('GET', key)
  if owner == ARGV[1] then redis.call('PEXPIRE', key, ARGV[2])
  elseif not owner and ARGV[3] ~= '1' then redis.call('SET', key, ARGV[1], 'PX', ARGV[2]) end
end
return 0
"""
# give up placements that still name this node (draining: the next request places the room elsewhere)
_RELEASE = """
local n = 0
for _, key in ipairs(KEYS) do
  if redis.call('GET', key) == ARGV[1] then redis.call('DEL', key) n = n + 1 end
end
return n
"""
MAX_NODES_SCANNED = 1000
# how long a request-path lookup reuses the live-node list: every WHIP/WHEP/WS request asks, and a list a few
# hundred ms old is as good as a fresh one (nodes heartbeat every second and die after a 3 s TTL); placing a room
# on a node always reads it fresh
LOOKUP_CACHE_S = 0.3


class ClusterUnavailable(Exception):
    """Redis cannot be reached (or no node is live): the request cannot be placed now."""


class Registry:
    def __init__(self, config: ClusterConfig, load: Callable[[], tuple[int, int]],
                 local_rooms: Callable[[], Iterable[str]], clock: Callable[[], float] = time.time) -> None:
        self.config = config
        self.node_id = config.node_id
        self._load = load                # () -> (rooms, sessions) on this node
        self._local_rooms = local_rooms  # rooms with a lesson running here (re-claimed after a Redis restart)
        self._clock = clock
        t = config.redis_timeout_s
        self.redis = aioredis.from_url(config.redis_url, decode_responses=True, socket_timeout=t,
                                       socket_connect_timeout=t, retry_on_timeout=False)
        self._cas = self.redis.register_script(_CAS)
        self._claim = self.redis.register_script(_CLAIM)
        self._release = self.redis.register_script(_RELEASE)
        self.draining = False          # set by drain.py: this node takes no new rooms
        self._task: Optional[asyncio.Task] = None
        self.connected = False         # did the last heartbeat reach Redis
        self.heartbeats = 0
        self.last_error = ""
        self._registered: list[Callable[[], None]] = []
        self._live_cache: Optional[tuple[float, dict[str, NodeInfo]]] = None   # (monotonic time, live nodes)

    def on_registered(self, callback: Callable[[], None]) -> None:
        """`callback()` whenever this node (re-)enters the node set: at start, and after Redis lost its data
        (a restart): whoever keeps more in Redis (room_store.py) writes it again."""
        self._registered.append(callback)

    # -- heartbeat ------------------------------------------------------------------------------------------
    def me(self) -> NodeInfo:
        rooms, sessions = self._load()
        return NodeInfo(self.node_id, self.config.advertise_url, rooms, sessions, self._clock(), self.draining,
                        self.config.public_url)

    async def heartbeat_once(self) -> None:
        me = self.me()
        ttl_ms = int(self.config.ttl_s * 1000)
        pipe = self.redis.pipeline(transaction=False)
        pipe.sadd(NODES_KEY, self.node_id)
        pipe.hset(node_key(self.node_id), mapping=me.to_hash())
        pipe.set(alive_key(self.node_id), me.url, px=ttl_ms)
        added, *_ = await pipe.execute()
        keys = [room_key(room) for room in self._local_rooms()]
        if keys:
            await self._claim(keys=keys, args=[self.node_id, self._release_ms(), "1" if self.draining else "0"])
        if added:  # SADD added us: first heartbeat, or Redis came back empty (after the claim: rooms are ours)
            for callback in list(self._registered):
                try:
                    callback()
                except Exception:
                    log.exception("cluster: a re-registration callback failed")

    def _release_ms(self) -> int:
        return int(self.config.room_release_s * 1000)

    async def release_rooms(self, rooms: Iterable[str]) -> int:
        """Delete the placements of `rooms` that still name this node; how many there were."""
        keys = [room_key(room) for room in rooms]
        try:
            return int(await self._release(keys=keys, args=[self.node_id])) if keys else 0
        except (RedisError, OSError) as exc:
            raise ClusterUnavailable(f"Redis unreachable: {exc or type(exc).__name__}") from exc

    async def is_alive(self, node_id: str) -> bool:
        """Whether `node_id` is live now (its `alive` key exists); raises ClusterUnavailable."""
        try:
            return bool(await self.redis.exists(alive_key(node_id)))
        except (RedisError, OSError) as exc:
            raise ClusterUnavailable(f"Redis unreachable: {exc or type(exc).__name__}") from exc

    async def _loop(self) -> None:
        while True:  # runs for the node's lifetime; each round bounded by the Redis socket timeouts
            try:
                await self.heartbeat_once()
                if not self.connected:
                    log.info("cluster: node %s registered in Redis at %s", self.node_id, self.config.advertise_url)
                self.connected = True
                self.heartbeats += 1
            except (RedisError, OSError) as exc:
                if self.connected or not self.last_error:
                    log.warning("cluster: Redis unreachable (%s); retrying every %.1f s", exc,
                                self.config.heartbeat_s)
                self.connected = False
                self.last_error = str(exc) or type(exc).__name__
            await asyncio.sleep(self.config.heartbeat_s)

    def start(self) -> None:
        self._task = asyncio.ensure_future(self._loop())

    async def close(self) -> None:
        """Leave the cluster: this node's rooms are re-placed on the next request instead of after the TTL."""
        if self._task:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        try:
            pipe = self.redis.pipeline(transaction=False)
            pipe.delete(alive_key(self.node_id))
            pipe.srem(NODES_KEY, self.node_id)
            pipe.delete(node_key(self.node_id))
            await pipe.execute()
        except (RedisError, OSError):
            pass
        await self.redis.aclose()

    # -- placement ------------------------------------------------------------------------------------------
    async def live_nodes(self, max_age_s: float = 0.0) -> dict[str, NodeInfo]:
        """The live nodes; with `max_age_s`, a list read at most that long ago may be reused."""
        now = time.monotonic()
        if max_age_s > 0 and self._live_cache is not None and now - self._live_cache[0] <= max_age_s:
            return self._live_cache[1]
        live = await self._read_live_nodes()
        self._live_cache = (now, live)
        return live

    async def _read_live_nodes(self) -> dict[str, NodeInfo]:
        try:
            ids = sorted(await self.redis.smembers(NODES_KEY))[:MAX_NODES_SCANNED]
            pipe = self.redis.pipeline(transaction=False)
            for node_id in ids:
                pipe.exists(alive_key(node_id))
                pipe.hgetall(node_key(node_id))
            replies = await pipe.execute() if ids else []
        except (RedisError, OSError) as exc:
            raise ClusterUnavailable(f"Redis unreachable: {exc or type(exc).__name__}") from exc
        live: dict[str, NodeInfo] = {}
        for i, node_id in enumerate(ids):
            alive, h = replies[2 * i], replies[2 * i + 1]
            info = NodeInfo.from_hash(node_id, h) if alive else None
            if info is not None:
                live[node_id] = info
        return live

    async def owner(self, room: str) -> Optional[NodeInfo]:
        """The live node the room is placed on, or None (not placed, or its node is dead). Places nothing."""
        try:
            current = await self.redis.get(room_key(room))
        except (RedisError, OSError) as exc:
            raise ClusterUnavailable(f"Redis unreachable: {exc or type(exc).__name__}") from exc
        if current is None:
            return None
        return (await self.live_nodes(LOOKUP_CACHE_S)).get(current)

    async def place(self, room: str) -> NodeInfo:
        """The room's node: where it is if that node is live, else the least-loaded live node (written)."""
        key = room_key(room)
        for _ in range(2):  # a lost race is settled by reading what the winner wrote
            try:
                current = await self.redis.get(key)
            except (RedisError, OSError) as exc:
                raise ClusterUnavailable(f"Redis unreachable: {exc or type(exc).__name__}") from exc
            live = await self.live_nodes(LOOKUP_CACHE_S)
            if current not in live:  # a placement to (re)write: decide on what Redis says now
                live = await self.live_nodes()
            try:
                node, write = placement_for(current, live)
            except NoLiveNode as exc:
                raise ClusterUnavailable(f"{exc} (the heartbeat may still be reconnecting)") from exc
            if not write:
                return node
            try:
                if current is None:
                    won = await self.redis.set(key, node.node_id, nx=True, px=self._release_ms())
                else:
                    won = await self._cas(keys=[key], args=[current, node.node_id, self._release_ms()])
                if won:
                    await self.redis.hincrby(node_key(node.node_id), "rooms", 1)  # until its next heartbeat
                    log.info("cluster: room %s placed on %s%s", room, node.node_id,
                             f" (was on dead node {current})" if current else "")
                    return node
            except (RedisError, OSError) as exc:
                raise ClusterUnavailable(f"Redis unreachable: {exc or type(exc).__name__}") from exc
        raise ClusterUnavailable("room placement is contended; try again")
