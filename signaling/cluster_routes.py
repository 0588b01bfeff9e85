"""Cluster mode on the HTTP side: any node answers WHIP, WHEP and the room WebSocket for any room.

A request for a room placed on another live node is answered with `307 Temporary Redirect` to that node's
advertise URL (`--cluster-forward redirect`, the default, as RFC 9725 allows), or forwarded to it and its answer
relayed (`--cluster-forward proxy`: for clients that drop `Authorization` on a cross-origin redirect, as browsers,
aiohttp and curl do). The room WebSocket is always redirected for now. The first WHIP/WHEP POST or WebSocket of
a room (with a valid token for it) places the room; session URLs (`/whip/{room}/{session}`...) only look it up.
Redis unreachable: rooms with a lesson running here are served here; anything else needing placement gets 503.
"""
from __future__ import annotations

import logging
import re
from typing import Optional

import aiohttp
from aiohttp import web

from .cluster import ClusterConfig, NodeInfo
from .cluster_registry import ClusterUnavailable, Registry
from .http_errors import CORS_HEADERS
from .media_endpoints import ROOM_RE, bearer
from .tokens import TokenError, verify

log = logging.getLogger(__name__)

REGISTRY_KEY = "cluster"
FORWARDED_HEADER = "X-Liveclass-Forwarded-By"  # a forwarded request is served where it lands (no loops)
ROUTED = re.compile(r"^/(whip|whep|ws)/([^/]+)(/.*)?$")
REQUEST_HEADERS = ("Authorization", "Content-Type", "Accept", "If-Match")
RESPONSE_HEADERS = ("Content-Type", "Location", "ETag", "Link", "Retry-After", "WWW-Authenticate", "Allow")
PROXY_TIMEOUT_S = 15.0
RETRY_AFTER_S = "2"


def local_rooms(app: web.Application) -> set[str]:
    rooms = set(app["sfu"].rooms)
    hub = app.get("rooms_ws")
    if hub is not None:
        rooms.update(hub.rooms)
    return rooms


def _load(app: web.Application) -> tuple[int, int]:
    return len(local_rooms(app)), app["sfu"].counts()["sessions"]


def _may_place(request: web.Request, room: str) -> bool:
    """Only a valid token for the room may place it (a stranger must not fill Redis with rooms)."""
    token = bearer(request) or request.query.get("token")
    try:
        return verify(request.app["secret"], token).allows_room(room)
    except TokenError:
        return False


async def _proxy(request: web.Request, node: NodeInfo, config: ClusterConfig) -> web.Response:
    headers = {h: request.headers[h] for h in REQUEST_HEADERS if h in request.headers}
    headers[FORWARDED_HEADER] = config.node_id
    session: aiohttp.ClientSession = request.app["cluster_http"]
    try:
        async with session.request(request.method, node.url + request.path_qs, data=await request.read(),
                                   headers=headers, allow_redirects=False,
                                   timeout=aiohttp.ClientTimeout(total=PROXY_TIMEOUT_S)) as r:
            body = await r.read()
            out = {**CORS_HEADERS, **{h: r.headers[h] for h in RESPONSE_HEADERS if h in r.headers}}
            return web.Response(status=r.status, body=body, headers=out)
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise web.HTTPBadGateway(text=f"the room's node {node.node_id} did not answer: {exc or type(exc).__name__}",
                                 headers={"Retry-After": RETRY_AFTER_S})


@web.middleware
async def cluster_middleware(request: web.Request, handler):
    m = ROUTED.match(request.path)
    if not m or request.method == "OPTIONS" or FORWARDED_HEADER in request.headers:
        return await handler(request)
    kind, room, rest = m.group(1), m.group(2), m.group(3)
    if not ROOM_RE.match(room):
        return await handler(request)  # its own 400
    registry: Registry = request.app[REGISTRY_KEY]
    places = rest is None and request.method in ("POST", "GET")
    try:
        if places and _may_place(request, room):
            node: Optional[NodeInfo] = await registry.place(room)
        else:
            node = await registry.owner(room)
    except ClusterUnavailable as exc:
        if not places or room in local_rooms(request.app):
            return await handler(request)  # a lesson running here keeps going; sessions here stay reachable
        raise web.HTTPServiceUnavailable(text=f"cannot place room {room} now: {exc}",
                                         headers={"Retry-After": RETRY_AFTER_S})
    if node is None or node.node_id == registry.node_id:
        return await handler(request)
    config = registry.config
    if config.forward == "proxy" and kind != "ws":
        return await _proxy(request, node, config)
    raise web.HTTPTemporaryRedirect(location=node.url + request.path_qs, headers=CORS_HEADERS)


def setup(app: web.Application, config: ClusterConfig) -> Registry:
    """Register this node in Redis (heartbeat from startup to shutdown) and route requests to rooms' nodes."""
    registry = Registry(config, lambda: _load(app), lambda: local_rooms(app))
    app[REGISTRY_KEY] = registry
    app.middlewares.append(cluster_middleware)

    async def start(app: web.Application) -> None:
        app["cluster_http"] = aiohttp.ClientSession()
        registry.start()

    async def stop(app: web.Application) -> None:
        await registry.close()
        await app["cluster_http"].close()

    app.on_startup.append(start)
    app.on_shutdown.append(stop)
    return registry
