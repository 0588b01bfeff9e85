"""Requests one cluster node makes of another (a proxied WHIP/WHEP/WebSocket request, an edge asking its origin
for a relay link) carry a header that says so: the receiving node then serves the request itself, without
routing it again (no loops) and without the per-client limits (the node that took it from the client applied
them). The header is signed with the cluster's shared secret over the node, an expiry and the request line, so a
client cannot claim to be a node to slip past routing or limits; an unsigned or stale header is ignored.
Pure: the time is passed in."""
from __future__ import annotations

import hashlib
import hmac
import time
from typing import Optional

from aiohttp import web

HEADER = "X-Liveclass-Forwarded-By"
VALID_S = 60          # a forwarded request is made at once: a minute covers clock skew between nodes
MAX_HEADER_CHARS = 256


def _digest(secret: str, node_id: str, expiry: int, method: str, path_qs: str) -> str:
    text = f"{node_id};{expiry};{method.upper()} {path_qs}"
    return hmac.new(secret.encode(), text.encode(), hashlib.sha256).hexdigest()


def mark(secret: str, node_id: str, method: str, path_qs: str, now: float) -> str:
    """The header value for a request `method path_qs` this node sends to another node now."""
    expiry = int(now) + VALID_S
    return f"{node_id};{expiry};{_digest(secret, node_id, expiry, method, path_qs)}"


def sender(secret: str, value: Optional[str], method: str, path_qs: str, now: float) -> Optional[str]:
    """The node a request came from when its header is valid for this request and not expired; else None."""
    if not value or len(value) > MAX_HEADER_CHARS:
        return None
    parts = value.split(";")
    if len(parts) != 3 or not parts[1].isdigit():
        return None
    node_id, expiry, digest = parts[0], int(parts[1]), parts[2]
    if not node_id or expiry < now or expiry > now + 2 * VALID_S:
        return None
    if not hmac.compare_digest(digest, _digest(secret, node_id, expiry, method, path_qs)):
        return None
    return node_id


_CHECKED = web.RequestKey("peer_node_checked", bool)
_PEER_NODE = web.RequestKey("peer_node", str)


def from_peer(request: web.Request) -> Optional[str]:
    """For an aiohttp request: the cluster node that sent it, or None (a client, or a header that is not valid).
    Checked once per request (the admission middleware and the handler both ask)."""
    from signaling.http.app_keys import SECRET
    if request.get(_CHECKED):
        return request.get(_PEER_NODE)
    node = sender(request.app[SECRET], request.headers.get(HEADER), request.method, request.path_qs, time.time())
    request[_CHECKED] = True
    if node is not None:
        request[_PEER_NODE] = node
    return node
