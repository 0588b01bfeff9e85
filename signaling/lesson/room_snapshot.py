"""A room's durable lesson state as a JSON snapshot: capture, encode, decode + validate, restore.

In cluster mode the room's node keeps this snapshot in Redis (room_store.py) so that the node taking the room
over after a crash gives reconnecting pages their places back. What is durable: lesson live and since when, who
is on stage, whose microphone is closed, the hand queue in order, the chat history, the removed identities and
each participant's identity, name, role, grant and last-seen time (to resume). What is not: connections,
publications and link measurements (they belonged to the dead node's sockets and media sessions) and recording
(the recorder ran on the dead node).

Pure: no I/O, time comes in as an argument. A snapshot is untrusted input (anyone who can write Redis can write
one): `decode` checks every field's type and bound and raises SnapshotError for anything off; it never trusts
the snapshot's grants to widen what a role may do.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, replace
from typing import Any, Optional

from signaling.lesson.room_protocol import MAX_CHAT_CHARS
from signaling.lesson.room_state import MAX_NAME_CHARS, LessonState, Limits, Participant
from signaling.auth.tokens import ALL_SOURCES, ROLE_GRANTS, ROLES, Grant

VERSION = 1
MAX_SNAPSHOT_CHARS = 2 * 1024 * 1024  # 200 chats of 1000 characters, 300 participants, 1000 removed: < 1 MiB
MAX_REMOVED = 1000
MAX_ID_CHARS = 1024                   # tokens do not bound `sub`; the wire protocol's 128 is for targets only
MAX_SEQ = 2 ** 53                     # JSON numbers stay exact below this
MAX_TIME = 1e11                       # epoch seconds (year ~5138): anything above is garbage


class SnapshotError(ValueError):
    """A malformed, oversized or foreign snapshot (the reason says which field)."""


@dataclass(frozen=True)
class SavedParticipant:
    identity: str
    name: str
    role: str
    can_publish: bool
    can_subscribe: bool
    sources: tuple[str, ...]
    expires: int
    connected: bool
    since: float  # joined, resumed or dropped at (epoch s)


@dataclass(frozen=True)
class Snapshot:
    room: str
    seq: int
    live: bool
    live_since: Optional[float]
    on_stage: Optional[str]
    muted: tuple[str, ...]
    hands: tuple[str, ...]
    removed: tuple[str, ...]
    chat_seq: int
    chat: tuple[dict[str, Any], ...]
    participants: tuple[SavedParticipant, ...]
    at: float = 0.0  # when it was taken (informational; not compared)

    def durable(self) -> "Snapshot":
        """The part worth a write: `seq` moves with every link report and `at` with the clock."""
        return replace(self, seq=0, at=0.0)


# ---- capture and encode -------------------------------------------------------------------------------------

def capture(state: LessonState, now: float) -> Snapshot:
    people = tuple(SavedParticipant(p.identity, p.grant.name[:MAX_NAME_CHARS], p.role, p.grant.can_publish,
                                    p.grant.can_subscribe, tuple(p.grant.sources), int(p.grant.expires),
                                    p.connected, p.since)
                   for p in state.participants.values())
    return Snapshot(room=state.room, seq=state.seq, live=state.live, live_since=state.live_since,
                    on_stage=state.on_stage, muted=tuple(sorted(state.muted)), hands=tuple(state.hands),
                    removed=tuple(sorted(state.removed)[:MAX_REMOVED]), chat_seq=state.chat_seq,
                    chat=tuple(dict(c) for c in state.chat), participants=people, at=now)


def encode(snap: Snapshot) -> str:
    body = {
        "v": VERSION, "room": snap.room, "at": round(snap.at, 3), "seq": snap.seq, "live": snap.live,
        "live_since": snap.live_since, "on_stage": snap.on_stage, "muted": list(snap.muted),
        "hands": list(snap.hands), "removed": list(snap.removed), "chat_seq": snap.chat_seq,
        "chat": list(snap.chat),
        "participants": [{"identity": p.identity, "name": p.name, "role": p.role, "can_publish": p.can_publish,
                          "can_subscribe": p.can_subscribe, "sources": list(p.sources), "expires": p.expires,
                          "connected": p.connected, "since": round(p.since, 3)} for p in snap.participants],
    }
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False)


# ---- decode and validate ------------------------------------------------------------------------------------

def _field(obj: dict[str, Any], name: str, kind: type | tuple[type, ...], optional: bool = False) -> Any:
    v = obj.get(name)
    if v is None and optional:
        return None
    # bool is an int in Python: never accept true for a number or 1 for a flag
    if isinstance(v, bool) != (kind is bool) or not isinstance(v, kind):
        raise SnapshotError(f"{name}: expected {getattr(kind, '__name__', kind)}")
    return v


def _identity(v: Any, what: str) -> str:
    if not isinstance(v, str) or not v or len(v) > MAX_ID_CHARS:
        raise SnapshotError(f"{what}: an identity is a string of 1-{MAX_ID_CHARS} characters")
    return v


def _identities(obj: dict[str, Any], name: str, limit: int) -> tuple[str, ...]:
    v = _field(obj, name, list)
    if len(v) > limit:
        raise SnapshotError(f"{name}: more than {limit} entries")
    return tuple(dict.fromkeys(_identity(x, name) for x in v))  # no duplicates, order kept


def _int(obj: dict[str, Any], name: str, lo: int, hi: int) -> int:
    v = _field(obj, name, int)
    if not lo <= v <= hi:
        raise SnapshotError(f"{name}: out of range")
    return v


def _time(obj: dict[str, Any], name: str, optional: bool = False) -> Optional[float]:
    v = _field(obj, name, (int, float), optional)
    if v is None:
        return None
    if not math.isfinite(v) or not 0 <= v <= MAX_TIME:
        raise SnapshotError(f"{name}: not a time")
    return float(v)


def _participant(obj: Any) -> SavedParticipant:
    if not isinstance(obj, dict):
        raise SnapshotError("participants: each must be an object")
    role = _field(obj, "role", str)
    if role not in ROLES:
        raise SnapshotError("participants: unknown role")
    role_publish, _, role_sources = ROLE_GRANTS[role]
    sources = _field(obj, "sources", list)
    if len(sources) > len(ALL_SOURCES) or not all(isinstance(s, str) for s in sources):
        raise SnapshotError("participants: sources must be a short list of names")
    name = _field(obj, "name", str)
    if len(name) > 4 * MAX_NAME_CHARS:
        raise SnapshotError("participants: name too long")
    # a grant may narrow its role's rights, never widen them (as tokens.verify)
    return SavedParticipant(
        identity=_identity(obj.get("identity"), "participants"), name=name[:MAX_NAME_CHARS], role=role,
        can_publish=_field(obj, "can_publish", bool) and role_publish,
        can_subscribe=_field(obj, "can_subscribe", bool),
        sources=tuple(dict.fromkeys(s for s in sources if s in role_sources)),
        expires=_int(obj, "expires", 0, int(MAX_TIME)), connected=_field(obj, "connected", bool),
        since=_time(obj, "since") or 0.0)


def _chat_entry(obj: Any) -> dict[str, Any]:
    if not isinstance(obj, dict):
        raise SnapshotError("chat: each entry must be an object")
    role = _field(obj, "role", str)
    text, name = _field(obj, "text", str), _field(obj, "name", str)
    if role not in ROLES or not text or len(text) > MAX_CHAT_CHARS or len(name) > 4 * MAX_NAME_CHARS:
        raise SnapshotError("chat: bad role, text or name")
    return {"id": _int(obj, "id", 1, MAX_SEQ), "from": _identity(obj.get("from"), "chat"),
            "name": name[:MAX_NAME_CHARS], "role": role, "text": text, "ts": _int(obj, "ts", 0, int(MAX_TIME * 1000))}


def decode(text: Any, room: str, limits: Limits = Limits()) -> Snapshot:
    """The snapshot of `room` in `text`; SnapshotError for anything malformed, oversized or of another room.
    Cross-field rules are enforced too: hands, stage and microphones name participants, the stage is a
    connected-or-reconnecting terminal of a live lesson, nobody removed is still a participant."""
    if not isinstance(text, str) or len(text) > MAX_SNAPSHOT_CHARS:
        raise SnapshotError("not text, or over the size limit")
    try:
        obj = json.loads(text)
    except (ValueError, RecursionError):
        raise SnapshotError("not JSON") from None
    if not isinstance(obj, dict):
        raise SnapshotError("not a JSON object")
    if obj.get("v") != VERSION:
        raise SnapshotError(f"unknown version {str(obj.get('v'))[:20]!r}")
    if obj.get("room") != room:
        raise SnapshotError("snapshot of another room")
    raw_people = _field(obj, "participants", list)
    if len(raw_people) > limits.max_participants:
        raise SnapshotError("participants: over the room's limit")
    people: dict[str, SavedParticipant] = {}
    for raw in raw_people:
        p = _participant(raw)
        people.setdefault(p.identity, p)
    raw_chat = _field(obj, "chat", list)
    if len(raw_chat) > 10 * limits.chat_history + 10:
        raise SnapshotError("chat: far over the history limit")
    chat = tuple(_chat_entry(c) for c in raw_chat)[-limits.chat_history:] if limits.chat_history else ()
    removed = _identities(obj, "removed", MAX_REMOVED)
    if any(r in people for r in removed):
        raise SnapshotError("removed: a removed identity is still a participant")
    terminals = {i for i, p in people.items() if p.role == "terminal"}
    muted = _identities(obj, "muted", limits.max_participants)
    hands = _identities(obj, "hands", limits.max_participants)
    live = _field(obj, "live", bool)
    on_stage = obj.get("on_stage")
    if on_stage is not None:
        _identity(on_stage, "on_stage")
        if not live or on_stage not in terminals:
            raise SnapshotError("on_stage: not a terminal of a live lesson")
    if not set(muted) <= terminals or not set(hands) <= set(people) or on_stage in hands:
        raise SnapshotError("muted or hands name someone who is not a participant that may have them")
    return Snapshot(
        room=room, seq=_int(obj, "seq", 0, MAX_SEQ), live=live,
        live_since=_time(obj, "live_since", optional=True) if live else None, on_stage=on_stage,
        muted=muted, hands=hands, removed=removed,
        chat_seq=max(_int(obj, "chat_seq", 0, MAX_SEQ), max((c["id"] for c in chat), default=0)),
        chat=chat, participants=tuple(people.values()), at=_time(obj, "at") or 0.0)


# ---- restore ------------------------------------------------------------------------------------------------

def restore(snap: Snapshot, limits: Limits, now: float) -> LessonState:
    """A LessonState as the snapshot left it, everyone reconnecting. Participants connected when it was taken
    get a full resume grace from `now` (their node died under them); those already reconnecting keep the
    grace they had left. Their grants stand in until they reconnect with their own tokens."""
    state = LessonState(snap.room, limits)
    state.live, state.live_since = snap.live, snap.live_since
    state.on_stage = snap.on_stage
    state.seq, state.chat_seq = snap.seq, snap.chat_seq
    state.removed = set(snap.removed)
    state.chat.extend(dict(c) for c in snap.chat)
    for sp in snap.participants:
        grant = Grant(sp.identity, sp.name, snap.room, sp.role, sp.can_publish, sp.can_subscribe, sp.sources,
                      sp.expires)
        since = now if sp.connected else min(max(sp.since, now - limits.resume_grace), now)
        state.participants[sp.identity] = Participant(grant, since=since, connected=False)
    state.muted = set(snap.muted)
    state.hands = list(snap.hands)
    return state
