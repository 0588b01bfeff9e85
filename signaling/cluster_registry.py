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

from .cluster import (NODES_KEY, ClusterConfig, NodeInfo, NoLiveNode, alive_key, node_key, placement_for,
                      room_key)

log = logging.getLogger(__name__)

# replace a room's placement only if it still names the node we saw dead (another node may have re-placed it)
_CAS = """
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('SET', KEYS[1], ARGV[2]) return 1 end
return 0
"""
MAX_NODES_SCANNED = 1000


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
        self._task: Optional[asyncio.Task] = None
        self.connected = False         # did the last heartbeat reach Redis
        self.heartbeats = 0
        self.last_error = ""

    # -- heartbeat ------------------------------------------------------------------------------------------
    def me(self) -> NodeInfo:
        rooms, sessions = self._load()
        return NodeInfo(self.node_id, self.config.advertise_url, rooms, sessions, self._clock())

    async def heartbeat_once(self) -> None:
        me = self.me()
        ttl_ms = int(self.config.ttl_s * 1000)
        pipe = self.redis.pipeline(transaction=False)
        pipe.sadd(NODES_KEY, self.node_id)
        pipe.hset(node_key(self.node_id), mapping=me.to_hash())
        pipe.set(alive_key(self.node_id), me.url, px=ttl_ms)
        for room in self._local_rooms():  # never steals: NX keeps another live node's placement
            pipe.set(room_key(room), self.node_id, nx=True)
        await pipe.execute()

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
    async def live_nodes(self) -> dict[str, NodeInfo]:
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
        return (await self.live_nodes()).get(current)

    async def place(self, room: str) -> NodeInfo:
        """The room's node: where it is if that node is live, else the least-loaded live node (written)."""
        key = room_key(room)
        for _ in range(2):  # a lost race is settled by reading what the winner wrote
            try:
                current = await self.redis.get(key)
            except (RedisError, OSError) as exc:
                raise ClusterUnavailable(f"Redis unreachable: {exc or type(exc).__name__}") from exc
            live = await self.live_nodes()
            try:
                node, write = placement_for(current, live)
            except NoLiveNode as exc:
                raise ClusterUnavailable(f"{exc} (the heartbeat may still be reconnecting)") from exc
            if not write:
                return node
            try:
                if current is None:
                    won = await self.redis.set(key, node.node_id, nx=True)
                else:
                    won = await self._cas(keys=[key], args=[current, node.node_id])
                if won:
                    await self.redis.hincrby(node_key(node.node_id), "rooms", 1)  # until its next heartbeat
                    log.info("cluster: room %s placed on %s%s", room, node.node_id,
                             f" (was on dead node {current})" if current else "")
                    return node
            except (RedisError, OSError) as exc:
                raise ClusterUnavailable(f"Redis unreachable: {exc or type(exc).__name__}") from exc
        raise ClusterUnavailable("room placement is contended; try again")
