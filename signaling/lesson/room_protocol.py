"""The room WebSocket's wire format: message schemas, validation, who may send what, error and close codes.

Pure: no I/O, no state. docs/room-protocol.md is the human-readable form of this module; keep them in step.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any, Callable, Union

from signaling.auth.tokens import ALL_SOURCES, ROLES, Grant

MAX_MESSAGE_BYTES = 16 * 1024   # larger text frames: error `too_large`, connection kept
HARD_MESSAGE_BYTES = 64 * 1024  # larger frames are not even read: aiohttp closes with 1009
MAX_CHAT_CHARS = 1000
MAX_ID_CHARS = 128              # identities and client message ids
MAX_REASON_CHARS = 200

Ref = Union[str, int, None]


class Code:
    """Error codes carried by `{"type": "error", "code": ...}`."""
    BAD_MESSAGE = "bad_message"          # not JSON, not an object, no type, a field of the wrong shape
    UNKNOWN_TYPE = "unknown_type"
    TOO_LARGE = "too_large"
    FORBIDDEN = "forbidden"              # beyond the sender's role or grant
    RATE_LIMITED = "rate_limited"
    TOKEN_EXPIRED = "token_expired"
    TOKEN_INVALID = "token_invalid"
    WRONG_ROOM = "wrong_room"
    NOT_FOUND = "not_found"              # target identity is not in the room
    INVALID_TARGET = "invalid_target"    # target exists but cannot be that (e.g. a teacher on stage)
    NOT_LIVE = "not_live"                # needs a started lesson
    NOT_AVAILABLE = "not_available"      # feature not configured on this server (recording)
    RECORDING_FAILED = "recording_failed"
    ROOM_FULL = "room_full"
    SERVER_FULL = "server_full"
    REMOVED = "removed"                  # removed by the teacher; this identity may not rejoin
    REPLACED = "replaced"                # the same identity connected again elsewhere
    SLOW_CONSUMER = "slow_consumer"
    BAD_REQUEST = "bad_request"          # handshake: bad room name
    INTERNAL = "internal"


class Close:
    """WebSocket close codes the server uses (1000-1011 standard, 4000-4999 ours)."""
    NORMAL = 1000        # after `leave`
    GOING_AWAY = 1001    # server shutting down: reconnect
    TOO_BIG = 1009       # frame over HARD_MESSAGE_BYTES (sent by aiohttp)
    BAD_REQUEST = 4000   # bad room name
    UNAUTHORIZED = 4001  # token missing, invalid or expired (also mid-lesson): get a new token, reconnect
    FORBIDDEN = 4003     # token for another room
    REMOVED = 4005       # removed by the teacher: do not reconnect with this identity
    REPLACED = 4006      # the same identity connected again: do not reconnect automatically
    RATE_LIMITED = 4008  # kept flooding after `rate_limited` errors
    FULL = 4009          # room or server at its participant/room limit: retry later
    SLOW_CONSUMER = 4010 # did not read its messages: reconnect


class ProtocolError(Exception):
    def __init__(self, code: str, message: str, ref: Ref = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.ref = ref

    def payload(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": "error", "code": self.code, "message": self.message}
        if self.ref is not None:
            out["ref"] = self.ref
        return out


@dataclass(frozen=True)
class ClientMessage:
    type: str
    fields: dict[str, Any] = field(default_factory=dict)
    ref: Ref = None  # the client's `id`, echoed in `ack`/`error`


# --- field validators: value -> cleaned value, or ValueError with a reason ------------------------------

Check = Callable[[Any], Any]


def _string(max_chars: int, strip: bool = False) -> Check:
    def check(v: Any) -> str:
        if not isinstance(v, str):
            raise ValueError("must be a string")
        if strip:
            v = v.strip()
        if not v:
            raise ValueError("must not be empty")
        if len(v) > max_chars:
            raise ValueError(f"longer than {max_chars} characters")
        return v
    return check


def _number(lo: float, hi: float) -> Check:
    def check(v: Any) -> float:
        # bool is an int in Python; true/false is not a measurement
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise ValueError("must be a number")
        if not lo <= v <= hi:
            raise ValueError(f"must be between {lo:g} and {hi:g}")
        return float(v)
    return check


def _sources(v: Any) -> tuple[str, ...]:
    if not isinstance(v, list) or not v or len(v) > len(ALL_SOURCES):
        raise ValueError(f"must be a non-empty list of {', '.join(ALL_SOURCES)}")
    for s in v:
        if s not in ALL_SOURCES:
            raise ValueError(f"unknown source {str(s)[:20]!r}; one of {', '.join(ALL_SOURCES)}")
    return tuple(dict.fromkeys(v))


IDENTITY = _string(MAX_ID_CHARS)

# type -> {field: (required, check)}; unknown extra fields are ignored (forward compatibility)
SCHEMAS: dict[str, dict[str, tuple[bool, Check]]] = {
    "ping": {},
    "leave": {},
    "hand_raise": {},
    "hand_lower": {"identity": (False, IDENTITY)},
    "stage_call": {"identity": (True, IDENTITY)},
    "stage_end": {},
    "mute": {"identity": (True, IDENTITY)},
    "unmute": {"identity": (True, IDENTITY)},
    "chat": {"text": (True, _string(MAX_CHAT_CHARS, strip=True))},
    "lesson_start": {},
    "lesson_end": {},
    "remove": {"identity": (True, IDENTITY), "reason": (False, _string(MAX_REASON_CHARS, strip=True))},
    "stats": {"loss": (False, _number(0, 1)), "rtt": (False, _number(0, 60_000)),
              "bitrate": (False, _number(0, 1e10)), "jitter": (False, _number(0, 60_000))},
    "publish": {"sources": (True, _sources)},
    "unpublish": {"sources": (False, _sources)},
    "recording_start": {},
    "recording_stop": {},
    "token_refresh": {"token": (True, _string(8 * 1024))},
}

_CONSOLE = frozenset({"teacher", "admin"})
_EVERYONE = frozenset(ROLES)

# who may send each type at all; finer rules (own vs another's hand, whom to mute) live in room_state
RIGHTS: dict[str, frozenset[str]] = {
    "ping": _EVERYONE, "leave": _EVERYONE, "stats": _EVERYONE, "token_refresh": _EVERYONE,
    "publish": _EVERYONE, "unpublish": _EVERYONE,  # checked against the grant's sources instead
    "chat": frozenset({"teacher", "admin", "terminal", "student"}),
    "hand_raise": frozenset({"terminal"}),
    "hand_lower": frozenset({"terminal", "teacher", "admin"}),
    "mute": frozenset({"terminal", "teacher", "admin"}),  # a terminal only itself
    "unmute": _CONSOLE, "stage_call": _CONSOLE, "stage_end": _CONSOLE,
    "lesson_start": _CONSOLE, "lesson_end": _CONSOLE, "remove": _CONSOLE,
    "recording_start": _CONSOLE, "recording_stop": _CONSOLE,
}
assert RIGHTS.keys() == SCHEMAS.keys()


def _ref_of(obj: dict[str, Any]) -> Ref:
    ref = obj.get("id")
    if ref is None:
        return None
    if isinstance(ref, bool) or not isinstance(ref, (str, int)):
        raise ProtocolError(Code.BAD_MESSAGE, "id must be a string or an integer")
    if isinstance(ref, str) and len(ref) > MAX_ID_CHARS:
        raise ProtocolError(Code.BAD_MESSAGE, f"id is longer than {MAX_ID_CHARS} characters")
    if isinstance(ref, int) and not -2**53 < ref < 2**53:
        raise ProtocolError(Code.BAD_MESSAGE, "id is out of range")
    return ref


def parse(raw: str) -> ClientMessage:
    """Decode and validate one text frame. Raises ProtocolError (too_large, bad_message, unknown_type)."""
    if len(raw) > MAX_MESSAGE_BYTES or len(raw.encode("utf-8", "surrogatepass")) > MAX_MESSAGE_BYTES:
        raise ProtocolError(Code.TOO_LARGE, f"messages are limited to {MAX_MESSAGE_BYTES} bytes")
    try:
        obj = json.loads(raw)
    except (ValueError, RecursionError):
        raise ProtocolError(Code.BAD_MESSAGE, "message is not valid JSON") from None
    if not isinstance(obj, dict):
        raise ProtocolError(Code.BAD_MESSAGE, "message must be a JSON object")
    ref = _ref_of(obj)
    kind = obj.get("type")
    if not isinstance(kind, str) or not kind:
        raise ProtocolError(Code.BAD_MESSAGE, "message needs a string field 'type'", ref)
    schema = SCHEMAS.get(kind)
    if schema is None:
        raise ProtocolError(Code.UNKNOWN_TYPE, f"unknown message type {kind[:40]!r}", ref)
    fields: dict[str, Any] = {}
    for name, (required, check) in schema.items():
        if name not in obj or obj[name] is None:
            if required:
                raise ProtocolError(Code.BAD_MESSAGE, f"{kind} needs field '{name}'", ref)
            continue
        try:
            fields[name] = check(obj[name])
        except ValueError as exc:
            raise ProtocolError(Code.BAD_MESSAGE, f"{kind}.{name} {exc}", ref) from None
    return ClientMessage(kind, fields, ref)


def check_rights(msg: ClientMessage, grant: Grant) -> None:
    """Refuse a type the sender's role may never send (ProtocolError `forbidden`)."""
    if grant.role not in RIGHTS[msg.type]:
        raise ProtocolError(Code.FORBIDDEN, f"role {grant.role} may not send {msg.type}", msg.ref)


def encode(payload: dict[str, Any]) -> str:
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False)


def error(code: str, message: str, ref: Ref = None) -> dict[str, Any]:
    return ProtocolError(code, message, ref).payload()
