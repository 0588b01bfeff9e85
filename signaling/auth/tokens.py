"""Access tokens: HS256 JWTs with LiveKit-style grants. The algorithm is pinned; `none` fails."""
from __future__ import annotations

import os
import secrets
import time
import uuid
from dataclasses import dataclass, field
from typing import Iterable, Optional

import jwt

ALGORITHM = "HS256"
ROLES = ("teacher", "terminal", "student", "observer", "recorder", "admin")
ALL_SOURCES = ("camera", "microphone", "screen")

# what each role may do unless the token narrows it
ROLE_GRANTS: dict[str, tuple[bool, bool, tuple[str, ...]]] = {
    "teacher": (True, True, ALL_SOURCES),
    "terminal": (True, True, ("camera", "microphone")),
    "student": (False, True, ()),
    "observer": (False, True, ()),
    "recorder": (False, True, ()),
    "admin": (True, True, ALL_SOURCES),
}


class TokenError(Exception):
    """Missing, malformed, badly signed or expired token (HTTP 401)."""


class TokenExpired(TokenError):
    """A well-signed token past its `exp` (the room WebSocket tells this apart: a new token will do)."""


@dataclass(frozen=True)
class Grant:
    identity: str
    name: str
    room: str
    role: str
    can_publish: bool
    can_subscribe: bool
    sources: tuple[str, ...] = field(default_factory=tuple)
    expires: int = 0

    def allows_room(self, room: str) -> bool:
        return self.room == room or (self.role == "admin" and self.room == "*")

    def may_publish(self, source: str) -> bool:
        """Whether this grant lets its holder send `source` (camera, microphone or screen)."""
        return self.can_publish and source in self.sources

    def expired(self, now: float) -> bool:
        return now >= self.expires


def secret_from_env() -> Optional[str]:
    return os.environ.get("LIVECLASS_SECRET") or None


def new_secret() -> str:
    return secrets.token_urlsafe(32)


def mint(secret: str, room: str, role: str, ttl: int = 3600, name: str = "", identity: str = "",
         now: Optional[float] = None, sources: Optional[Iterable[str]] = None,
         can_publish: Optional[bool] = None, can_subscribe: Optional[bool] = None) -> str:
    """Sign a token for `role`. `sources`, `can_publish` and `can_subscribe` may narrow the role's rights, never widen them."""
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}; one of {', '.join(ROLES)}")
    if ttl <= 0:
        raise ValueError("ttl must be positive")
    if room == "*" and role != "admin":
        raise ValueError("only admin tokens may name every room ('*')")
    role_publish, role_subscribe, role_sources = ROLE_GRANTS[role]
    if sources is None:
        sources = role_sources
    else:
        sources = tuple(dict.fromkeys(sources))
        extra = [s for s in sources if s not in role_sources]
        if extra:
            allowed = ", ".join(role_sources) or "none"
            raise ValueError(f"role {role} may not publish {', '.join(extra)} (allowed: {allowed})")
    if can_publish and not role_publish:
        raise ValueError(f"role {role} may not publish")
    can_publish = role_publish if can_publish is None else can_publish
    can_subscribe = role_subscribe if can_subscribe is None else can_subscribe
    issued = int(time.time() if now is None else now)
    identity = identity or f"{role}-{uuid.uuid4().hex[:8]}"
    claims = {
        "sub": identity, "name": name or identity, "room": room, "role": role,
        "can_publish": can_publish, "can_subscribe": can_subscribe, "sources": list(sources),
        "iat": issued, "exp": issued + ttl,
    }
    return jwt.encode(claims, secret, algorithm=ALGORITHM)


def verify(secret: str, token: Optional[str]) -> Grant:
    if not token:
        raise TokenError("missing access token")
    try:
        claims = jwt.decode(token, secret, algorithms=[ALGORITHM],
                            options={"require": ["exp", "sub", "room", "role"]})
    except jwt.ExpiredSignatureError:
        raise TokenExpired("access token expired") from None
    except jwt.InvalidTokenError as exc:
        raise TokenError(f"invalid access token: {exc}") from None
    role = claims.get("role")
    if role not in ROLES:
        raise TokenError("invalid access token: unknown role")
    default_pub, default_sub, default_sources = ROLE_GRANTS[role]
    sources = claims.get("sources", list(default_sources))
    if not isinstance(sources, list) or not all(isinstance(s, str) for s in sources):
        raise TokenError("invalid access token: sources must be a list of names")
    room = claims["room"]
    if not isinstance(room, str) or not isinstance(claims["sub"], str):
        raise TokenError("invalid access token: room and sub must be strings")
    return Grant(identity=claims["sub"], name=str(claims.get("name", claims["sub"])), room=room, role=role,
                 can_publish=bool(claims.get("can_publish", default_pub)) and default_pub,
                 can_subscribe=bool(claims.get("can_subscribe", default_sub)),
                 sources=tuple(s for s in sources if s in default_sources), expires=int(claims["exp"]))


# --- node-to-node tokens (cascade) ------------------------------------------------------------------
# An edge node asks a room's origin for its media with a short-lived token signed with the cluster's shared
# secret. Its audience keeps it apart from access tokens both ways: `verify` refuses it (pyjwt rejects an
# unexpected `aud`), and `verify_relay` refuses an access token (no `aud`).
RELAY_AUDIENCE = "liveclass:relay"
RELAY_TTL = 60


def mint_relay(secret: str, room: str, node_id: str, ttl: int = RELAY_TTL, now: Optional[float] = None) -> str:
    issued = int(time.time() if now is None else now)
    return jwt.encode({"sub": node_id, "room": room, "role": "relay", "aud": RELAY_AUDIENCE,
                       "iat": issued, "exp": issued + ttl}, secret, algorithm=ALGORITHM)


def verify_relay(secret: str, token: Optional[str]) -> tuple[str, str]:
    """(edge node id, room) of a valid relay token; TokenError otherwise (its message says why)."""
    if not token:
        raise TokenError("missing relay token")
    try:
        claims = jwt.decode(token, secret, algorithms=[ALGORITHM], audience=RELAY_AUDIENCE,
                            options={"require": ["exp", "sub", "room", "aud"]})
    except jwt.ExpiredSignatureError:
        raise TokenExpired("relay token expired") from None
    except jwt.InvalidTokenError as exc:
        raise TokenError(f"invalid relay token: {exc}") from None
    if claims.get("role") != "relay" or not isinstance(claims["sub"], str):
        raise TokenError("invalid relay token: not a relay grant")
    if not isinstance(claims["room"], str):
        raise TokenError("invalid relay token: room must be a string")
    return claims["sub"], claims["room"]
