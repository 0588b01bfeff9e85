"""Malformed HTTP requests for every endpoint a client reaches (sessions, the library, recordings, stats, ICE
servers, the node list, draining, relay links, the room socket's handshake): odd methods, paths, query values,
headers, tokens and bodies. Deterministic for a seed; the valid parts (a real session id, a real lesson id,
valid tokens of several roles) are given, so that the mutants get past the first checks and reach the deeper
code."""
from __future__ import annotations

import json
import os
import random
from dataclasses import dataclass, field
from typing import Iterator, Optional
from urllib.parse import quote


@dataclass
class Known:
    """What is real on the server under test, for mutants to aim at."""
    room: str
    tokens: list[str]                                 # valid tokens (teacher, terminal, admin, ...)
    sessions: dict[str, str] = field(default_factory=dict)   # "whip"/"whep" -> a live session id
    lessons: list[str] = field(default_factory=list)   # lesson ids in the library


@dataclass
class Request:
    method: str
    path: str                                         # already encoded: sent as is
    headers: dict[str, str]
    body: Optional[bytes]


ODD_VALUES = ["", "-1", "0", "99999999999999999999", "1e308", "NaN", "null", "[]", "{}", "%00", "%ff%fe",
              "a" * 5000, "../../etc/passwd", "<script>", "' OR 1=1 --", "\u00e9\u4e2d", "2026-13-45", "true"]
ODD_IDS = ["", "x", "..", "%2e%2e", "a" * 300, "0", "-1", "%00", "lesson/../../x", "null", "\u4e2d\u6587"]


def _odd(rng: random.Random) -> str:
    v = rng.choice(ODD_VALUES)
    return quote(v, safe="%") if rng.random() < 0.8 else v.replace(" ", "%20")


def _token(rng: random.Random, known: Known) -> Optional[str]:
    choice = rng.randrange(6)
    if choice == 0:
        return None
    if choice == 1:
        return rng.choice(["", "x", "a.b.c", "Bearer", "e30.e30.", "eyJhbGciOiJub25lIn0.e30."])
    t = rng.choice(known.tokens)
    if choice == 2:
        return t[: rng.randrange(len(t))]
    if choice == 3:
        i = rng.randrange(len(t))
        return t[:i] + rng.choice("A-_.=") + t[i + 1:]
    return t


def _json_body(rng: random.Random) -> bytes:
    values = [None, True, 1, -1, 1e308, "x" * rng.choice((1, 100, 70000)), [], {}, [1, 2], {"a": {"b": []}}]
    keys = ["title", "teacher", "school", "subject", "grade", "max_height", "token", "type", "x" * 50]
    choice = rng.randrange(5)
    if choice == 0:
        return os.urandom(rng.choice((0, 1, 50, 3000)))
    if choice == 1:
        return b"{" * rng.choice((1, 100, 5000))
    if choice == 2:
        return json.dumps(rng.choice(values)).encode()
    return json.dumps({rng.choice(keys): rng.choice(values) for _ in range(rng.randrange(1, 6))}).encode()


def _targets(known: Known) -> list[tuple[str, str]]:
    r = known.room
    lesson = known.lessons[0] if known.lessons else "none"
    whip, whep = known.sessions.get("whip", "none"), known.sessions.get("whep", "none")
    return [
        ("GET", f"/whip/{r}/{whip}"), ("DELETE", f"/whip/{r}/{{id}}"), ("PATCH", f"/whip/{r}/{whip}"),
        ("GET", f"/whep/{r}/{whep}"), ("POST", f"/whep/{r}/{whep}/layer"), ("DELETE", f"/whep/{r}/{{id}}"),
        ("OPTIONS", f"/whep/{r}"), ("GET", f"/whep/{{room}}/{whep}"),
        ("GET", "/api/library?{q}"), ("GET", f"/api/library/{{id}}"), ("GET", f"/api/library/{lesson}"),
        ("GET", f"/api/library/{lesson}/media"), ("GET", f"/api/library/{{id}}/media"),
        ("GET", f"/api/library/{lesson}/screen"), ("GET", f"/api/library/{lesson}/thumbnail"),
        ("GET", f"/api/library/{lesson}/chapters/{{id}}/thumbnail"), ("PATCH", f"/api/library/{lesson}"),
        ("PATCH", "/api/library/{id}"), ("DELETE", "/api/library/{id}"),
        ("POST", f"/api/rooms/{r}/recording"), ("POST", "/api/rooms/{room}/recording"),
        ("DELETE", "/api/rooms/{room}/recording"),
        ("GET", "/api/stats?{q}"), ("GET", "/api/ice-servers?{q}"), ("GET", "/api/cluster/nodes?{q}"),
        ("POST", "/api/admin/drain?{q}"), ("GET", "/api/admin/drain"),
        ("POST", f"/relay/{r}"), ("POST", "/relay/{room}"), ("DELETE", f"/relay/{r}/{{id}}"),
        ("GET", f"/ws/{r}?{{q}}"), ("GET", "/ws/{room}?{q}"), ("GET", "/metrics?{q}"), ("GET", "/{id}"),
    ]


QUERY_KEYS = ["q", "teacher", "subject", "from", "to", "state", "limit", "offset", "room", "token", "grace",
              "source", "identity", "max"]


def mutate(known: Known, seed: int) -> Request:
    rng = random.Random(seed)
    method, template = rng.choice(_targets(known))
    if rng.random() < 0.05:
        method = rng.choice(["PUT", "TRACE", "PROPFIND", "GET", "POST"])
    query = "&".join(f"{rng.choice(QUERY_KEYS)}={_odd(rng)}" for _ in range(rng.randrange(0, 5)))
    path = (template.replace("{q}", query).replace("{id}", quote(rng.choice(ODD_IDS), safe="%"))
            .replace("{room}", quote(rng.choice([known.room, *ODD_IDS]), safe="%")))
    headers: dict[str, str] = {}
    token = _token(rng, known)
    if token is not None:
        headers["Authorization"] = rng.choice(["Bearer ", "bearer ", "Basic ", ""]) + token
    if rng.random() < 0.3:
        headers["Range"] = rng.choice(["bytes=0-", "bytes=-5", "bytes=9999999999-", "bytes=5-1", "bytes=a-b",
                                       "items=0-1", "bytes=0-1,3-4,7-9", "bytes=" + "0-1," * 200, ""])
    if rng.random() < 0.2:
        headers["Content-Type"] = rng.choice(["application/sdp", "application/json", "text/plain", "x/y;;", ""])
    if rng.random() < 0.05:
        headers["If-Match"] = rng.choice(['"x"', "*", "\"" * 50])
    body = _json_body(rng) if method in ("POST", "PATCH", "DELETE") and rng.random() < 0.8 else None
    return Request(method, path, headers, body)


def mutated_requests(known: Known, count: int, seed: int = 0) -> Iterator[tuple[int, Request]]:
    for i in range(count):
        yield i, mutate(known, seed * 1_000_003 + i)
