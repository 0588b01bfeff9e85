"""Access tokens: HS256 JWTs with LiveKit-style grants (DESIGN.md §3). The algorithm is pinned; `none` fails."""
from __future__ import annotations

import os
import secrets
import time
import uuid
from dataclasses import dataclass, field
from typing import Optional

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


def secret_from_env() -> Optional[str]:
    return os.environ.get("LIVECLASS_SECRET") or None


def new_secret() -> str:
    return secrets.token_urlsafe(32)


def mint(secret: str, room: str, role: str, ttl: int = 3600, name: str = "", identity: str = "",
         now: Optional[float] = None) -> str:
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}; one of {', '.join(ROLES)}")
    if ttl <= 0:
        raise ValueError("ttl must be positive")
    can_publish, can_subscribe, sources = ROLE_GRANTS[role]
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
        raise TokenError("access token expired") from None
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
