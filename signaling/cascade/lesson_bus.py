"""Lesson facts from a room's origin node to its edge nodes, through Redis pub/sub.

The room WebSocket lives on the origin (other nodes proxy it there), so only the origin knows who is on stage
and whose microphone is open. An edge needs both: its stage viewers follow the classroom on stage, and it
leaves out a closed microphone's audio as the origin does. The origin publishes the room's `LessonFacts` on
`liveclass:lesson:{room}` at every change that matters, repeats them every few seconds, and keeps the latest in
`liveclass:lesson-facts:{room}` (expiring) for an edge that starts relaying later. Every node listens to
`liveclass:lesson:*` and applies the facts of the rooms it relays as an edge. Redis unreachable: the listener
reconnects with a pause; edges keep the last facts they had.
"""
from __future__ import annotations

import asyncio
import json
import logging
from typing import NamedTuple, Optional

import redis.asyncio as aioredis
from aiohttp import web
from redis.exceptions import RedisError

from sfu.room.feed import LessonFacts
from sfu.node import SfuNode

from signaling.http.app_keys import LESSON_BUS, SFU
from signaling.cluster.placement import PREFIX
from signaling.cluster.cluster_registry import Registry
from signaling.live.room_media import FOLLOWED, lesson_facts
from signaling.live.room_ws import HUB
from signaling.http import lifetime

log = logging.getLogger(__name__)

CHANNEL_PREFIX = PREFIX + "lesson:"
FACTS_PREFIX = PREFIX + "lesson-facts:"
REPUBLISH_S = 2.0
FACTS_TTL_MS = 10_000
RECONNECT_S = 1.0
MAX_MESSAGE_CHARS = 256 * 1024
MAX_MICS = 1000


class LessonMessage(NamedTuple):
    room: str
    facts: Optional[LessonFacts]      # None: no lesson in the room
    removed: frozenset[str] = frozenset()  # identities the teacher removed: refused on edges too


def encode(room: str, facts: Optional[LessonFacts], origin: str, removed: frozenset[str] = frozenset()) -> str:
    body = None if facts is None else {"on_stage": facts.on_stage, "open_mics": sorted(facts.open_mics),
                                       "removed": sorted(removed)}
    return json.dumps({"room": room, "origin": origin, "lesson": body}, separators=(",", ":"))


def _identities(body: dict, key: str) -> frozenset[str]:
    values = body.get(key, [])
    if not isinstance(values, list) or len(values) > MAX_MICS or not all(isinstance(m, str) for m in values):
        raise ValueError(f"{key} must be a list of identities")
    return frozenset(values)


def decode(text: str) -> LessonMessage:
    """The room's facts (None for "no lesson") and removed identities; ValueError for anything malformed
    (Redis is writable by others)."""
    if not isinstance(text, str) or len(text) > MAX_MESSAGE_CHARS:
        raise ValueError("lesson message too long or not text")
    msg = json.loads(text)
    if not isinstance(msg, dict) or not isinstance(msg.get("room"), str):
        raise ValueError("lesson message names no room")
    body = msg.get("lesson")
    if body is None:
        return LessonMessage(msg["room"], None)
    if not isinstance(body, dict):
        raise ValueError("lesson must be an object or null")
    stage = body.get("on_stage")
    if stage is not None and not isinstance(stage, str):
        raise ValueError("on_stage must be an identity or null")
    facts = LessonFacts(on_stage=stage, open_mics=_identities(body, "open_mics"))
    return LessonMessage(msg["room"], facts, _identities(body, "removed"))


class LessonBus:
    def __init__(self, app: web.Application, registry: Registry) -> None:
        self.registry = registry
        self.node: SfuNode = app[SFU]
        self.hub = app.get(HUB)
        self.facts: dict[str, Optional[LessonFacts]] = {}  # rooms relayed here: the origin's latest facts
        self.removed: dict[str, frozenset[str]] = {}        # ... and the identities removed from their lessons
        self._ending: set[asyncio.Task] = set()
        self._pending: set[str] = set()
        self._flush_task: Optional[asyncio.Task] = None
        self._tasks: list[asyncio.Task] = []
        self.published = 0
        self.applied = 0
        local = self.node.lesson  # this node's own lessons come first (room_media's bridge)
        self.node.lesson = lambda room: local(room) or self.facts.get(room)
        if self.hub is not None:
            self.hub.on_change(self._on_change)

    # --- the origin's side -----------------------------------------------------------------------------------

    def _on_change(self, room: str, change) -> None:
        if change.kind == "closed" or change.kind in FOLLOWED:
            self._pending.add(room)
            if self._flush_task is None or self._flush_task.done():
                self._flush_task = asyncio.get_running_loop().create_task(self._flush())

    def _local(self, room: str) -> tuple[Optional[LessonFacts], frozenset[str]]:
        state = self.hub.state(room) if self.hub is not None else None
        return lesson_facts(state), frozenset(state.removed) if state is not None else frozenset()

    async def _flush(self) -> None:
        while self._pending:  # changes made while publishing go out in the next round
            rooms, self._pending = sorted(self._pending), set()
            await self._publish({room: self._local(room) for room in rooms})

    async def _publish(self, facts: dict[str, tuple[Optional[LessonFacts], frozenset[str]]]) -> None:
        if not facts:
            return
        try:
            pipe = self.registry.redis.pipeline(transaction=False)
            for room, (f, removed) in facts.items():
                text = encode(room, f, self.registry.node_id, removed)
                pipe.set(FACTS_PREFIX + room, text, px=FACTS_TTL_MS)
                pipe.publish(CHANNEL_PREFIX + room, text)
            await pipe.execute()
            self.published += len(facts)
        except (RedisError, OSError) as exc:
            log.debug("lesson facts not published: %s", exc)

    async def _republish(self) -> None:
        while True:  # the node's lifetime: late edges and a restarted Redis get the facts within REPUBLISH_S
            await asyncio.sleep(REPUBLISH_S)
            if self.hub is not None:
                await self._publish({room: self._local(room) for room in list(self.hub.rooms)
                                     if self.hub.state(room) is not None})
            for room in [r for r in self.facts if not self.node.is_edge_for(r)]:
                del self.facts[room]  # no longer relayed here
                self.removed.pop(room, None)

    # --- the edges' side -------------------------------------------------------------------------------------

    def apply(self, text: str) -> None:
        try:
            room, facts, removed = decode(text)
        except ValueError as exc:
            log.warning("ignoring a malformed lesson message: %s", exc)
            return
        if not self.node.is_edge_for(room) or (self.hub is not None and self.hub.state(room) is not None):
            return  # not relayed here, or the lesson is held here (this node is its origin)
        newly_removed = removed - self.removed.get(room, frozenset())
        self.removed[room] = removed
        for identity in sorted(newly_removed):  # its sessions on this edge end, as they did on the origin
            task = asyncio.get_running_loop().create_task(self.node.end_owner(room, identity))
            self._ending.add(task)
            task.add_done_callback(self._ending.discard)
        if room in self.facts and self.facts[room] == facts:
            return
        self.facts[room] = facts
        self.applied += 1
        self.node.apply_lesson(room, facts)

    def was_removed(self, room: str, identity: str) -> bool:
        """Whether the origin's lesson removed `identity`: an edge refuses it as the origin would."""
        return identity in self.removed.get(room, frozenset())

    async def prime(self, room: str) -> None:
        """A link just opened: the room's current facts now rather than at the origin's next repeat."""
        try:
            text = await self.registry.redis.get(FACTS_PREFIX + room)
        except (RedisError, OSError):
            return
        if text:
            self.apply(text)

    async def _listen(self) -> None:
        client = aioredis.from_url(self.registry.config.redis_url, decode_responses=True,
                                   socket_connect_timeout=self.registry.config.redis_timeout_s)
        try:
            while True:  # the node's lifetime; a lost connection is retried after RECONNECT_S
                pubsub = client.pubsub()
                try:
                    await pubsub.psubscribe(CHANNEL_PREFIX + "*")
                    while True:
                        msg = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
                        if msg is not None and msg.get("type") == "pmessage":
                            self.apply(msg["data"])
                except (RedisError, OSError) as exc:
                    log.debug("lesson bus: %s; reconnecting", exc)
                finally:
                    try:
                        await pubsub.aclose()
                    except (RedisError, OSError):
                        pass
                await asyncio.sleep(RECONNECT_S)
        finally:
            await client.aclose()

    def start(self) -> None:
        self._tasks = [asyncio.ensure_future(self._listen()), asyncio.ensure_future(self._republish())]

    async def stop(self) -> None:
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._flush_task is not None:
            await asyncio.gather(self._flush_task, return_exceptions=True)
        await asyncio.gather(*self._ending, return_exceptions=True)


def setup(app: web.Application, registry: Registry) -> LessonBus:
    bus = LessonBus(app, registry)
    app[LESSON_BUS] = bus
    lifetime.for_app_lifetime(app, bus.start, bus.stop)
    return bus
