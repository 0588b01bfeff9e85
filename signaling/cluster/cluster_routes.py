"""Cluster mode on the HTTP side: any node answers WHIP, WHEP and the room WebSocket for any room.

A request for a room placed on another live node is forwarded to that node and its answer relayed
(`--cluster-forward proxy`, the default: it works with every client, since browsers, aiohttp and curl drop
`Authorization` when they follow a redirect to another origin), or answered with `307 Temporary Redirect` to the
node's public URL (`--cluster-forward redirect`, as RFC 9725 allows: only for clients that send their credentials
again after a redirect; nodes that share one public URL behind a front proxy instead, since a redirect to the
same URL would loop). The room WebSocket is proxied in both modes, since browsers cannot follow a redirect of a
WebSocket handshake: this node opens a WebSocket to the room's node with the same path, query (token) and
`Authorization`, and relays frames both ways; when either side closes, the other is closed with the same code
(an abnormal end upstream, 1006 or none, becomes 1001 "going away": the page reconnects). A plain GET of
`/ws/{room}` (no WebSocket handshake) is still answered with the 307. The first WHIP/WHEP POST or WebSocket of
a room (with a valid token for it) places the room; session URLs (`/whip/{room}/{session}`...) only look it up.
Redis unreachable: rooms with a lesson running here are served here; anything else needing placement gets 503.
"""
from __future__ import annotations

import asyncio
import logging
import re
import time
from typing import Optional, Protocol

import aiohttp
from aiohttp import web

from signaling.cluster import peer_requests
from signaling.http.app_keys import CLIENT_SSL, SECRET, SFU
from signaling.cluster.placement import ClusterConfig, NodeInfo
from signaling.cluster.cluster_registry import ClusterUnavailable, Registry
from signaling.http.http_errors import CORS_HEADERS
from signaling.http.access import ROOM_RE
from signaling.auth.tokens import TokenError
from signaling.http import access
from signaling.live.room_ws import HUB

log = logging.getLogger(__name__)

# /api/rooms/{room}/recording too: the recorder taps the SFU of the room's node
ROUTED = re.compile(r"^/(whip|whep|ws|api/rooms)/([^/]+)(/.*)?$")
REQUEST_HEADERS = ("Authorization", "Content-Type", "Accept", "If-Match")
RESPONSE_HEADERS = ("Content-Type", "Location", "ETag", "Link", "Retry-After", "WWW-Authenticate", "Allow")
PROXY_TIMEOUT_S = 15.0
RETRY_AFTER_S = "2"
WS_CONNECT_TIMEOUT_S = 5.0
WS_HEARTBEAT_S = 20.0
WS_MAX_MSG_BYTES = 1 << 20   # what the room's node sends (rosters can be long); clients are limited upstream
ABNORMAL_CLOSE = (None, 1005, 1006, 1015)  # codes that cannot be sent in a close frame


class ViewerRouter(Protocol):
    """Where a viewer's WHEP POST is served when nodes relay rooms to each other (cascade/links.Cascade)."""

    async def viewer_node(self, request: web.Request, room: str, owner: Optional[NodeInfo]) -> Optional[NodeInfo]:
        """The node to serve it: `owner`, this node (as an edge of the room), or another node."""
        ...


REGISTRY = web.AppKey("cluster", Registry)                        # setup
CLUSTER_HTTP = web.AppKey("cluster_http", aiohttp.ClientSession)  # set at startup, for proxying
# the proxied room sockets of this node, closed (1001) at shutdown
CLUSTER_WS: web.AppKey[set[web.WebSocketResponse]] = web.AppKey("cluster_ws")
CASCADE: web.AppKey[ViewerRouter] = web.AppKey("cascade")         # cascade/links.setup


def local_rooms(app: web.Application) -> set[str]:
    rooms = app[SFU].local_rooms()  # a room relayed here as an edge is not ours
    hub = app.get(HUB)
    if hub is not None:
        rooms.update(hub.rooms)
    return rooms


def _load(app: web.Application) -> tuple[int, int]:
    return len(local_rooms(app)), app[SFU].counts()["sessions"]


def _may_place(request: web.Request, room: str) -> bool:
    """Only a valid token for the room may place it (a stranger must not fill Redis with rooms)."""
    try:
        return access.verified(request, query=True).allows_room(room)
    except TokenError:
        return False


async def _proxy(request: web.Request, node: NodeInfo, config: ClusterConfig) -> web.Response:
    headers = {h: request.headers[h] for h in REQUEST_HEADERS if h in request.headers}
    headers[peer_requests.HEADER] = peer_requests.mark(request.app[SECRET], config.node_id, request.method,
                                                       request.path_qs, time.time())
    # the client as this node saw it (after --behind-proxy): the room's node reads them with --behind-proxy
    headers["X-Forwarded-Proto"] = request.scheme
    if request.remote:
        headers["X-Forwarded-For"] = request.remote
    session: aiohttp.ClientSession = request.app[CLUSTER_HTTP]
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


def _close_code(code: Optional[int]) -> int:
    return 1001 if code in ABNORMAL_CLOSE else int(code)  # type: ignore[arg-type]


async def _pump(src, dst) -> Optional[int]:
    """Copy text and binary frames from src to dst until src ends (close, error or the connection lost).

    Returns the code of src's close frame when one came. It is read from the frame itself: aiohttp's client
    overwrites `close_code` with 1006 when its close reply cannot be sent (the peer already hung up)."""
    while True:
        msg = await src.receive()
        if msg.type is aiohttp.WSMsgType.CLOSE:
            return int(msg.data) if msg.data else None
        if msg.type in (aiohttp.WSMsgType.ERROR, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.CLOSING):
            return None
        if dst.closed:
            return None
        if msg.type is aiohttp.WSMsgType.TEXT:
            await dst.send_str(msg.data)
        elif msg.type is aiohttp.WSMsgType.BINARY:
            await dst.send_bytes(msg.data)


async def _proxy_ws(request: web.Request, node: NodeInfo, config: ClusterConfig) -> web.StreamResponse:
    """Relay a room WebSocket to the room's node; each side is closed when the other closes, same code."""
    headers = {peer_requests.HEADER: peer_requests.mark(request.app[SECRET], config.node_id, "GET", request.path_qs,
                                                        time.time())}
    if "Authorization" in request.headers:
        headers["Authorization"] = request.headers["Authorization"]
    session: aiohttp.ClientSession = request.app[CLUSTER_HTTP]
    url = node.url.replace("http", "ws", 1) + request.path_qs
    try:
        upstream = await asyncio.wait_for(session.ws_connect(
            url, headers=headers, heartbeat=WS_HEARTBEAT_S, max_msg_size=WS_MAX_MSG_BYTES,
            timeout=aiohttp.ClientWSTimeout(ws_receive=None, ws_close=2.0)), WS_CONNECT_TIMEOUT_S)
    except (aiohttp.ClientError, TimeoutError, asyncio.TimeoutError) as exc:
        raise web.HTTPBadGateway(text=f"the room's node {node.node_id} did not answer: {exc or type(exc).__name__}",
                                 headers={"Retry-After": RETRY_AFTER_S})
    down = web.WebSocketResponse(heartbeat=WS_HEARTBEAT_S, max_msg_size=WS_MAX_MSG_BYTES)
    sockets: set[web.WebSocketResponse] = request.app[CLUSTER_WS]
    try:
        await down.prepare(request)
    except Exception:
        await upstream.close()
        raise
    sockets.add(down)
    to_up = asyncio.ensure_future(_pump(down, upstream))
    to_down = asyncio.ensure_future(_pump(upstream, down))
    try:
        done, _ = await asyncio.wait({to_up, to_down}, return_when=asyncio.FIRST_COMPLETED)
        if to_down in done:   # the room's node closed (or was lost): close the client with its code
            code = to_down.result() if not to_down.exception() else None
            await down.close(code=_close_code(code or upstream.close_code), message=b"")
        else:                 # the client closed (or was lost): close upstream with its code
            code = to_up.result() if not to_up.exception() else None
            await upstream.close(code=_close_code(code or down.close_code))
    finally:
        sockets.discard(down)
        for t in (to_up, to_down):
            t.cancel()
        await asyncio.gather(to_up, to_down, return_exceptions=True)
        if not upstream.closed:
            await upstream.close(code=1001)
        if not down.closed:
            await down.close(code=1001)
    return down


@web.middleware
async def cluster_middleware(request: web.Request, handler):
    m = ROUTED.match(request.path)
    if not m or request.method == "OPTIONS" or peer_requests.from_peer(request):
        return await handler(request)
    kind, room, rest = m.group(1), m.group(2), m.group(3)
    if not ROOM_RE.match(room):
        return await handler(request)  # its own 400
    if rest is not None and request.app[SFU].has_session(rest.split("/")[1]):
        return await handler(request)  # a session of this node's (an edge's viewer of a room placed elsewhere)
    registry: Registry = request.app[REGISTRY]
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
    if kind == "whep" and rest is None and request.method == "POST" and CASCADE in request.app:
        node = await request.app[CASCADE].viewer_node(request, room, node)  # here as an edge? (cascade.py)
    if node is None or node.node_id == registry.node_id:
        return await handler(request)
    config = registry.config
    if kind == "ws" and rest is None and web.WebSocketResponse().can_prepare(request).ok:
        return await _proxy_ws(request, node, config)  # both modes: browsers cannot follow a WebSocket 307
    same_front = node.client_url == config.client_url   # both behind one public URL: a redirect would loop
    if (config.forward == "proxy" or same_front) and kind != "ws":
        return await _proxy(request, node, config)
    raise web.HTTPTemporaryRedirect(location=node.client_url + request.path_qs, headers=CORS_HEADERS)


def node_http_session(app: web.Application) -> aiohttp.ClientSession:
    """An HTTP client for requests to other nodes: their https is verified with the node's client context
    (the system's CAs, --tls-ca, this node's own certificate)."""
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=app.get(CLIENT_SSL) or True))


def setup(app: web.Application, config: ClusterConfig) -> Registry:
    """Register this node in Redis (heartbeat from startup to shutdown) and route requests to rooms' nodes."""
    registry = Registry(config, lambda: _load(app), lambda: local_rooms(app))
    app[REGISTRY] = registry
    app[CLUSTER_WS] = set()
    app.middlewares.append(cluster_middleware)

    async def start(app: web.Application) -> None:
        app[CLUSTER_HTTP] = node_http_session(app)
        registry.start()

    async def stop(app: web.Application) -> None:
        for ws in list(app[CLUSTER_WS]):  # proxied room sockets: going away, reconnect elsewhere
            await ws.close(code=1001, message=b"server shutting down")
        await registry.close()
        await app[CLUSTER_HTTP].close()

    app.on_startup.append(start)
    app.on_shutdown.append(stop)
    return registry
