"""The one path from a request to what it may do, for every HTTP and WebSocket entry.

The token comes from `Authorization: Bearer` (or `?token=` where a page cannot set headers: a WebSocket
handshake, a link, an image), is verified into a grant, and the grant is held against what is asked. Refusals
are the same everywhere: 401 with `WWW-Authenticate: Bearer` and the reason for a missing, bad or expired
token; 403 with the reason for a token that does not allow what is asked; 400 for a bad room name. (The error
middleware adds CORS headers to every error answer.) The room WebSocket maps the same failures to its close codes.
"""
from __future__ import annotations

import re
from typing import Optional

from aiohttp import web

from signaling.auth.tokens import Grant, TokenError, verify

from .app_keys import SECRET

ROOM_RE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
BAD_ROOM = "room names are 1-64 letters, digits, '.', '_' or '-'"


def bearer(request: web.Request) -> Optional[str]:
    auth = request.headers.get("Authorization", "")
    if auth.lower().startswith("bearer "):
        return auth[7:].strip() or None
    return None


def token_of(request: web.Request, query: bool = False) -> Optional[str]:
    """The request's token: the Authorization header, else (where allowed) `?token=`."""
    return bearer(request) or (request.query.get("token") if query else None)


def verified(request: web.Request, query: bool = False) -> Grant:
    """The request's grant; raises TokenError (TokenExpired for an expired token)."""
    return verify(request.app[SECRET], token_of(request, query))


def grant_of(request: web.Request, query: bool = False) -> Grant:
    """The request's grant, or the 401."""
    try:
        return verified(request, query)
    except TokenError as exc:
        raise web.HTTPUnauthorized(text=str(exc), headers={"WWW-Authenticate": "Bearer"}) from None


def unauthorized(reason: str) -> web.HTTPUnauthorized:
    return web.HTTPUnauthorized(text=reason, headers={"WWW-Authenticate": "Bearer"})


def require(allowed: bool, reason: str) -> None:
    """The 403 of a valid token that does not allow what is asked."""
    if not allowed:
        raise web.HTTPForbidden(text=reason)


def room_grant(request: web.Request, room: str, query: bool = False) -> Grant:
    """A grant for this room, or the 401/403."""
    grant = grant_of(request, query)
    require(grant.allows_room(room), "token is for another room")
    return grant


def admin_or_room_grant(request: web.Request, room: Optional[str], what: str, query: bool = True) -> Grant:
    """An admin's grant, or one of the room named (`?room=`); `what` says what needs it in the 403."""
    grant = grant_of(request, query)
    require(grant.role == "admin" or (room is not None and grant.allows_room(room)),
            f"{what} need an admin token or a token of the room asked for (?room=)")
    return grant


def admin_grant(request: web.Request, what: str) -> Grant:
    grant = grant_of(request)
    require(grant.role == "admin", f"only an admin may {what}")
    return grant


def valid_room(room: str) -> str:
    if not ROOM_RE.match(room):
        raise web.HTTPBadRequest(text=BAD_ROOM)
    return room


def room_of(request: web.Request) -> str:
    """The `{room}` of the path, or the 400."""
    return valid_room(request.match_info["room"])
