"""GET /api/ice-servers?room=R — TURN credentials for a room's participants, TURN REST style (coturn
`use-auth-secret`): username `<expiry unix time>:<identity>`, credential base64(HMAC-SHA1(secret, username)).
The TURN server checks the HMAC with the same shared secret and refuses the username once its expiry is past,
so nothing is stored anywhere and any node can answer.

Configured by `liveclass serve --turn-url URL [--turn-url URL…] --turn-secret S` (or LIVECLASS_TURN_URL, URLs
separated by commas, and LIVECLASS_TURN_SECRET). The request needs a valid token of the room (`Authorization:
Bearer` or `?token=`): 401 without one or with a bad one, 403 for a token of another room, 400 without `room`. Without TURN
configured the answer is `200 {"iceServers": [], "ttl": 0}`, so pages ask unconditionally and go on without.
`credential` is pure (the time is passed in); only the handler reads the clock.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import os
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Optional

from aiohttp import web

from signaling.http.http_errors import CORS_HEADERS
from signaling.http import access

DEFAULT_TTL_S = 12 * 3600   # as long as a page token: a lesson never outlives its TURN credential
MIN_SECRET_LEN = 16
URL_SCHEMES = ("turn:", "turns:", "stun:", "stuns:")


class TurnConfigError(ValueError):
    """A bad --turn-url / --turn-secret combination or value."""


@dataclass(frozen=True)
class TurnConfig:
    urls: tuple[str, ...]
    secret: str
    ttl_s: int = DEFAULT_TTL_S

    @classmethod
    def build(cls, urls: Iterable[str], secret: Optional[str], ttl_s: int = DEFAULT_TTL_S) -> Optional["TurnConfig"]:
        """Validate; None when neither URL nor secret is given. Raises TurnConfigError with a usable reason."""
        flat = tuple(u.strip() for item in urls for u in item.split(",") if u.strip())
        if not flat and not secret:
            return None
        if not flat:
            raise TurnConfigError("--turn-secret needs --turn-url (or LIVECLASS_TURN_URL)")
        if not secret:
            raise TurnConfigError("--turn-url needs --turn-secret (or LIVECLASS_TURN_SECRET)")
        for u in flat:
            if not u.startswith(URL_SCHEMES) or len(u) <= u.index(":") + 1 or any(c.isspace() for c in u):
                raise TurnConfigError(f"--turn-url must be a turn:, turns:, stun: or stuns: URL, not {u!r}")
        if len(secret) < MIN_SECRET_LEN:
            raise TurnConfigError(f"--turn-secret must be at least {MIN_SECRET_LEN} characters")
        if ttl_s <= 0:
            raise TurnConfigError("the TURN credential lifetime must be positive")
        return cls(flat, secret, ttl_s)


def credential(secret: str, identity: str, now: float, ttl_s: int) -> tuple[str, str]:
    """(username, password) for `identity`, valid until `now + ttl_s` (TURN REST / coturn use-auth-secret)."""
    username = f"{int(now) + int(ttl_s)}:{identity}"
    digest = hmac.new(secret.encode(), username.encode(), hashlib.sha1).digest()
    return username, base64.b64encode(digest).decode("ascii")


def ice_servers(config: Optional[TurnConfig], identity: str, now: float) -> dict[str, Any]:
    """The JSON body answered: RTCConfiguration-shaped `iceServers` plus the credential's lifetime."""
    if config is None:
        return {"iceServers": [], "ttl": 0}
    username, password = credential(config.secret, identity, now, config.ttl_s)
    return {"iceServers": [{"urls": list(config.urls), "username": username, "credential": password}],
            "ttl": config.ttl_s}


def config_from_options(urls: Optional[list[str]], secret: Optional[str],
                        env: Callable[[str], Optional[str]] = os.environ.get) -> Optional[TurnConfig]:
    """`liveclass serve` options, else LIVECLASS_TURN_URL (comma-separated) / LIVECLASS_TURN_SECRET."""
    env_urls = env("LIVECLASS_TURN_URL")
    return TurnConfig.build(urls or ([env_urls] if env_urls else []), secret or env("LIVECLASS_TURN_SECRET"))


TURN: web.AppKey[Optional[TurnConfig]] = web.AppKey("turn")  # setup: None without TURN


async def ice_servers_handler(request: web.Request) -> web.Response:
    grant = access.grant_of(request, query=True)
    room = request.query.get("room")
    if not room:
        raise web.HTTPBadRequest(text="name the room: /api/ice-servers?room=R", headers=CORS_HEADERS)
    access.require(grant.allows_room(room), "ice servers need a token of the room asked for (?room=)")
    body = ice_servers(request.app[TURN], grant.identity, time.time())
    return web.json_response(body, headers={**CORS_HEADERS, "Cache-Control": "no-store"})


def setup(app: web.Application, config: Optional[TurnConfig]) -> None:
    app[TURN] = config
    app.router.add_get("/api/ice-servers", ice_servers_handler)
