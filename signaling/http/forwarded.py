"""`liveclass serve --behind-proxy`: the node sits behind a TLS front (Caddy, nginx) that sets
`X-Forwarded-Proto` and `X-Forwarded-For`, so the scheme and client address a request came with are taken
from them instead of from the plain-HTTP connection the front opened.

Only with the option: without a front, anyone could claim any address or scheme. The rightmost
`X-Forwarded-For` entry is used — the one the front itself added — since entries further left come from the
client and prove nothing. Values that are not a scheme or an address are ignored (the connection's stand).
"""
from __future__ import annotations

import ipaddress
from typing import Optional

from aiohttp import web

SCHEMES = ("http", "https")


def forwarded_scheme(value: Optional[str]) -> Optional[str]:
    """The first X-Forwarded-Proto value when it is http or https (a chain of fronts lists the client's first)."""
    if not value:
        return None
    first = value.split(",")[0].strip().lower()
    return first if first in SCHEMES else None


def forwarded_client(value: Optional[str]) -> Optional[str]:
    """The rightmost X-Forwarded-For entry when it is an IP address (with a port or brackets stripped)."""
    if not value:
        return None
    last = value.split(",")[-1].strip()
    if last.startswith("["):             # [2001:db8::1]:1234
        last = last[1:].split("]")[0]
    elif last.count(":") == 1:           # 192.0.2.1:1234
        last = last.split(":")[0]
    try:
        return str(ipaddress.ip_address(last))
    except ValueError:
        return None


@web.middleware
async def behind_proxy_middleware(request: web.Request, handler):
    changes = {}
    scheme = forwarded_scheme(request.headers.get("X-Forwarded-Proto"))
    if scheme:
        changes["scheme"] = scheme
    client = forwarded_client(request.headers.get("X-Forwarded-For"))
    if client:
        changes["remote"] = client
    return await handler(request.clone(**changes) if changes else request)


def setup(app: web.Application) -> None:
    app.middlewares.insert(0, behind_proxy_middleware)  # before everything that looks at scheme or address
