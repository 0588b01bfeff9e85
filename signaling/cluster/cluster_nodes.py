"""GET /api/cluster/nodes — the live nodes' public base URLs (`--public-url`, else the advertise URL), for pages that must survive the death of their own
node: a page loaded from node A asks once at start and every 30 s or so; when A stops answering it
moves its WHIP/WHEP, session, ICE-server and room WebSocket requests to the next node of the list.

Rights as /api/stats: an admin token, or a token of the room named by `?room=` (`Authorization: Bearer` or
`?token=`): 401 without a token or with a bad one, 403 for another room's token or no room. CORS as the WHIP/WHEP
endpoints (a page of another node asks after a failover; the preflight of a GET with `Authorization` is answered).

Answer: `{"self": "<this node's id>", "nodes": [{"id": "a", "url": "http://10.0.0.5:8081"}, ...], "ttl": 5}` —
this node first, then the other live nodes that take new rooms (a draining node is left out: it is going away),
ordered by id so every page of a room tries them in the same order. Without Redis (one process) and while Redis
cannot be reached, only this node (its URL as the request reached it when it has no advertise URL). The list is
kept in memory for a couple of seconds (every page of every classroom asks) and the browser may cache it for
`ttl` seconds.
"""
from __future__ import annotations

import time
from typing import Any, Callable, Optional

from aiohttp import web

from signaling.cluster.cluster_registry import ClusterUnavailable, Registry
from signaling.cluster.cluster_routes import REGISTRY
from signaling.http.http_errors import CORS_HEADERS
from signaling.http import access

PATH = "/api/cluster/nodes"
CACHE_S = 2.0          # how long this node reuses what Redis said (a burst of pages asks at once after a failure)
CLIENT_TTL_S = 5       # Cache-Control max-age for the browser
LOCAL_ID = "local"     # the node id shown in single-process mode


def _authorize(request: web.Request) -> None:
    access.admin_or_room_grant(request, request.query.get("room"), "the node list")


def node_list(self_id: str, self_url: str, live: Optional[dict[str, Any]]) -> list[dict[str, str]]:
    """This node first, then the live non-draining others by id. `live`: node id -> NodeInfo (None: unknown)."""
    out = [{"id": self_id, "url": self_url}]
    for node_id in sorted(live or {}):
        info = live[node_id]  # type: ignore[index]
        if node_id != self_id and not info.draining:
            out.append({"id": node_id, "url": info.client_url})
    return out


class NodeCache:
    """Redis' live nodes, reused for CACHE_S seconds; the last good answer is not kept past that (stale nodes)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._at = -1e9
        self._live: Optional[dict[str, Any]] = None

    async def live(self, registry: Registry) -> Optional[dict[str, Any]]:
        if self._live is not None and self._clock() - self._at < CACHE_S:
            return self._live
        try:
            self._live = await registry.live_nodes()
        except ClusterUnavailable:
            self._live = None  # only this node is known to answer now
        self._at = self._clock()
        return self._live


NODES_CACHE = web.AppKey("cluster_nodes_cache", NodeCache)  # setup


async def nodes_handler(request: web.Request) -> web.Response:
    _authorize(request)
    registry: Optional[Registry] = request.app.get(REGISTRY)  # the node runs with --redis
    if registry is None:  # one process: this node, as the page reached it
        nodes = node_list(LOCAL_ID, f"{request.scheme}://{request.host}", None)
        self_id = LOCAL_ID
    else:
        live = await request.app[NODES_CACHE].live(registry)
        self_id = registry.node_id
        nodes = node_list(self_id, registry.config.client_url, live)
    body = {"self": self_id, "nodes": nodes, "ttl": CLIENT_TTL_S}
    return web.json_response(body, headers={**CORS_HEADERS, "Cache-Control": f"private, max-age={CLIENT_TTL_S}"})


async def preflight(request: web.Request) -> web.Response:
    """CORS preflight of a GET with `Authorization` from another node's page (after it moved here)."""
    return web.Response(status=204, headers={**CORS_HEADERS, "Access-Control-Max-Age": "600"})


def setup(app: web.Application) -> None:
    """Routes: the node list, and the preflights pages need cross-origin (the node list, /api/ice-servers)."""
    app[NODES_CACHE] = NodeCache()
    app.router.add_get(PATH, nodes_handler)
    app.router.add_route("OPTIONS", PATH, preflight)
    app.router.add_route("OPTIONS", "/api/ice-servers", preflight)
