"""Cascade on the HTTP side: SFU-to-SFU links between a room's origin and edge nodes.

- `POST /relay/{room}` (origin): an edge node's SDP offer, `Authorization: Bearer <relay token>` (a short-lived
  JWT signed with the cluster's shared secret, audience `liveclass:relay`) → `201` with the answer and
  `Location: /relay/{room}/{session}`; `DELETE` that ends it. 401 without a valid relay token, 403 for a token
  of another room, 400 for a malformed offer, 409 when the room is placed on another node.
- WHEP routing (called by the cluster middleware): a viewer arriving at a node is served there as an edge when
  the room's origin is in another region or full, or redirected (cascade_policy.py). Serving as an edge opens
  (or reuses) the room's link first, so a dead or refusing origin is a 502/503 with the reason.
- Every heartbeat this node publishes its region and viewer count (`liveclass:cascade:{node}`, expiring like
  the `alive` key) for the other nodes' routing.
"""
from __future__ import annotations

import asyncio
import logging
import re
import time
from collections import deque
from typing import Optional

import aiohttp
from aiohttp import web
from aiohttp.typedefs import Middleware
from redis.exceptions import RedisError

from sfu.errors import SfuError
from sfu.node import SfuNode
from sfu.cascade.relay_in import RelayNotNeeded, RelayUnavailable, Signal

from signaling.cluster import peer_requests
from signaling.http.app_keys import LESSON_BUS, SECRET, SFU
from signaling.cascade.cascade_policy import (EDGE, FULL, LOCAL, REDIRECT, CascadeConfig, EdgeInfo, other_work,
                                              route_viewer)
from signaling.cluster.placement import PREFIX, NodeInfo
from signaling.cluster.cluster_registry import LOOKUP_CACHE_S, ClusterUnavailable, Registry
from signaling.cluster.cluster_routes import CASCADE, node_http_session
from signaling.http.http_errors import CORS_HEADERS, text_error
from signaling.http.access import ROOM_RE, room_of
from signaling.media.media_endpoints import read_offer
from signaling.auth.tokens import TokenError, mint_relay, verify_relay
from signaling.http import access

log = logging.getLogger(__name__)

SIGNAL_TIMEOUT_S = 10.0
WHEP_POST = re.compile(r"^/whep/([^/]+)$")
RETRY_AFTER_S = "2"
CHANGE_S = 0.1         # a change of this node's counts is published within this
PENDING_S = 2.0        # a viewer sent to a node shows in its count by then (it publishes within CHANGE_S)
PENDING_MAX = 10_000


def cascade_key(node_id: str) -> str:
    return f"{PREFIX}cascade:{node_id}"


class Cascade:
    def __init__(self, app: web.Application, registry: Registry, config: CascadeConfig) -> None:
        self.app = app
        self.registry = registry
        self.config = config
        self.node: SfuNode = app[SFU]
        self.http: Optional[aiohttp.ClientSession] = None
        self._task: Optional[asyncio.Task] = None
        self._sent: dict[str, deque[float]] = {}   # spread: when viewers were sent to each other node

    # --- this node's routing facts in Redis ----------------------------------------------------------------

    def me(self) -> EdgeInfo:
        c = self.node.counts()
        return EdgeInfo(self.registry.me(), self.config.region, c["viewers"], self.config.max_viewers,
                        other_work(c["publishers"], c["ladders"], c["relays_out"], c["relays_in"]),
                        frozenset(self.node.relays_in))

    def _pending(self, live: dict[str, EdgeInfo]) -> dict[str, int]:
        """Viewers this node sent to each other node since that node last published its count."""
        horizon = time.time() - PENDING_S
        out = {}
        for node_id, times in list(self._sent.items()):
            edge = live.get(node_id)
            since = max(horizon, edge.published_at if edge is not None else 0.0)
            while times and times[0] < since:
                times.popleft()
            if times:
                out[node_id] = len(times)
            else:
                del self._sent[node_id]
        return out

    async def _publish_loop(self) -> None:
        """Every heartbeat, and within CHANGE_S of a change: a burst of joins is spread by fresh counts."""
        ttl_ms = int(self.registry.config.ttl_s * 1000)
        published: Optional[dict[str, str]] = None
        due = 0.0
        while True:  # the node's lifetime; each round bounded by the Redis socket timeouts
            facts = self.me().to_hash()
            if facts != published or time.monotonic() >= due:
                try:
                    key = cascade_key(self.registry.node_id)
                    pipe = self.registry.redis.pipeline(transaction=False)
                    pipe.hset(key, mapping={**facts, "published_at": f"{time.time():.3f}"})
                    pipe.pexpire(key, ttl_ms)
                    await pipe.execute()
                    published = facts
                except (RedisError, OSError):
                    published = None  # the registry's heartbeat logs Redis trouble
                due = time.monotonic() + self.registry.config.heartbeat_s
            await asyncio.sleep(CHANGE_S)

    async def live_edges(self) -> dict[str, EdgeInfo]:
        live = await self.registry.live_nodes(LOOKUP_CACHE_S)
        ids = sorted(live)
        try:
            pipe = self.registry.redis.pipeline(transaction=False)
            for node_id in ids:
                pipe.hgetall(cascade_key(node_id))
            replies = await pipe.execute() if ids else []
        except (RedisError, OSError) as exc:
            raise ClusterUnavailable(f"Redis unreachable: {exc or type(exc).__name__}") from exc
        out = {node_id: EdgeInfo.from_hash(live[node_id], h or {}) for node_id, h in zip(ids, replies)}
        out[self.registry.node_id] = self.me()  # our own facts, fresh
        return out

    # --- viewers: served here, here as an edge, or elsewhere -----------------------------------------------

    async def viewer_node(self, request: web.Request, room: str, owner: Optional[NodeInfo]) -> Optional[NodeInfo]:
        """For the cluster middleware, a WHEP POST: the node to serve it (this one: the handler runs here)."""
        here = self.registry.me()
        if owner is None or not self.token_ok(request, room):
            return owner  # unplaced, or a request its handler refuses anyway
        try:
            live = await self.live_edges()
        except ClusterUnavailable:
            return owner  # the middleware's own rules (Redis down: a lesson running here goes on)
        owner_info = live.get(owner.node_id) or EdgeInfo(owner)
        route = route_viewer(live[here.node_id], owner_info, live, self.config.spread, room, self._pending(live))
        if route.action == LOCAL:
            return owner
        if route.action == FULL:
            raise web.HTTPServiceUnavailable(text=f"no room for another viewer of {room}: {route.reason}",
                                             headers={"Retry-After": RETRY_AFTER_S})
        if route.action == EDGE:
            await self.ensure_relay(room)
            log.info("viewer of %s served here as an edge (%s)", room, route.reason)
            return here
        if route.reason:
            log.info("viewer of %s sent to %s (%s)", room, route.node.node_id if route.node else "?", route.reason)
        if route.action == REDIRECT and route.node is not None:
            self._sent.setdefault(route.node.node_id, deque(maxlen=PENDING_MAX)).append(time.time())
        return route.node

    def token_ok(self, request: web.Request, room: str) -> bool:
        try:
            grant = access.verified(request)
        except TokenError:
            return False
        return grant.allows_room(room) and grant.can_subscribe

    async def ensure_relay(self, room: str) -> None:
        try:
            await self.node.ensure_relay(room, self._signal(room))
            bus = self.app.get(LESSON_BUS)
            if bus is not None:
                await bus.prime(room)
        except RelayNotNeeded:
            return  # placed here after all: served locally
        except RelayUnavailable as exc:
            raise _http_error(exc.status, f"cannot relay room {room} to this node: {exc}") from exc

    def _signal(self, room: str) -> Signal:
        async def signal(offer: str) -> tuple[str, str]:
            try:
                owner = await self.registry.owner(room)
            except ClusterUnavailable as exc:
                raise RelayUnavailable(str(exc), 503) from exc
            if owner is None:
                raise RelayUnavailable(f"room {room} is not placed on any live node", 503)
            if owner.node_id == self.registry.node_id:
                raise RelayNotNeeded(f"room {room} is placed on this node")
            assert self.http is not None
            path = f"/relay/{room}"
            headers = {"Content-Type": "application/sdp",
                       peer_requests.HEADER: peer_requests.mark(self.app[SECRET], self.registry.node_id, "POST", path,
                                                                time.time()),
                       "Authorization": f"Bearer {mint_relay(self.app[SECRET], room, self.registry.node_id)}"}
            try:
                async with self.http.post(owner.url + path, data=offer, headers=headers,
                                          timeout=aiohttp.ClientTimeout(total=SIGNAL_TIMEOUT_S)) as r:
                    text = await r.text()
                    if r.status != 201:
                        raise RelayUnavailable(f"origin {owner.node_id} refused the link: HTTP {r.status}: "
                                               f"{text.strip()[:200]}", 502)
                    return text, owner.node_id
            except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
                raise RelayUnavailable(f"origin {owner.node_id} at {owner.url} not reachable: "
                                       f"{exc or type(exc).__name__}", 502) from exc
        return signal

    # --- the origin's end: /relay/{room} ---------------------------------------------------------------------

    async def relay_create(self, request: web.Request) -> web.Response:
        room = room_of(request)
        edge = self._authorize(request, room)
        offer = await read_offer(request)
        try:
            owner = await self.registry.owner(room)
        except ClusterUnavailable:
            owner = None  # Redis down: a room running here keeps feeding its edges
        if owner is not None and owner.node_id != self.registry.node_id:
            return text_error(409, f"room {room} is placed on node {owner.node_id}, not here")
        try:
            session_id, answer = await self.node.relay(room, offer, edge)
        except SfuError as exc:
            return text_error(exc.status, str(exc))
        log.info("room %s: link %s to edge %s", room, session_id, edge)
        headers = {**CORS_HEADERS, "Location": f"/relay/{room}/{session_id}"}
        return web.Response(status=201, text=answer, content_type="application/sdp", headers=headers)

    async def relay_delete(self, request: web.Request) -> web.Response:
        room = room_of(request)
        self._authorize(request, room)
        try:
            await self.node.end(room, request.match_info["session"], "relay")
        except SfuError as exc:
            return text_error(exc.status, str(exc))
        return web.Response(status=200, headers=CORS_HEADERS)

    def _authorize(self, request: web.Request, room: str) -> str:
        try:
            edge, token_room = verify_relay(self.app[SECRET], access.bearer(request))
        except TokenError as exc:
            raise access.unauthorized(str(exc)) from None
        access.require(token_room == room, "relay token is for another room")
        return edge

    # --- lifecycle -------------------------------------------------------------------------------------------

    async def start(self) -> None:
        self.http = node_http_session(self.app)
        self._task = asyncio.ensure_future(self._publish_loop())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        try:
            await self.registry.redis.delete(cascade_key(self.registry.node_id))
        except (RedisError, OSError):
            pass
        if self.http is not None:
            await self.http.close()


def _http_error(status: int, reason: str) -> web.HTTPException:
    cls = web.HTTPServiceUnavailable if status == 503 else web.HTTPBadGateway
    return cls(text=reason, headers={"Retry-After": RETRY_AFTER_S})


def forwarded_viewer_middleware(cascade: Cascade) -> Middleware:
    """A WHEP POST proxied here by a full origin (`--cluster-forward proxy`) skips the cluster middleware: this
    node serves it as an edge, so the room's link must be open first."""
    @web.middleware
    async def middleware(request: web.Request, handler):
        if request.method == "POST" and peer_requests.from_peer(request):
            m = WHEP_POST.match(request.path)
            local = m is not None and m.group(1) in cascade.node.local_rooms()
            if m and not local and ROOM_RE.match(m.group(1)) and cascade.token_ok(request, m.group(1)):
                try:
                    owner = await cascade.registry.owner(m.group(1))
                except ClusterUnavailable:
                    owner = None
                if owner is not None and owner.node_id != cascade.registry.node_id:
                    await cascade.ensure_relay(m.group(1))
        return await handler(request)

    return middleware


def setup(app: web.Application, registry: Registry, config: CascadeConfig) -> Cascade:
    """Serve /relay/{room}, route viewers to edges, publish this node's region and viewer count."""
    cascade = Cascade(app, registry, config)
    app[CASCADE] = cascade  # the cluster middleware's viewer router
    app.middlewares.append(forwarded_viewer_middleware(cascade))
    app.router.add_post("/relay/{room}", cascade.relay_create)
    app.router.add_delete("/relay/{room}/{session}", cascade.relay_delete)

    async def start(app: web.Application) -> None:
        await cascade.start()

    async def stop(app: web.Application) -> None:
        await cascade.stop()

    app.on_startup.append(start)
    app.on_shutdown.insert(0, stop)  # before the SFU closes: links end while the HTTP client still works
    return cascade
