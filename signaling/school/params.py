"""Query and body parameters of the school's HTTP API: each bad one is a 400 with its reason."""
from __future__ import annotations

import calendar
import json
import re
import time
from typing import Any, Optional

from aiohttp import web

from signaling.http.request_body import read_body
from signaling.school.timetable import TimetableError, parse_time

MAX_BODY = 256 * 1024          # a course with 200 classrooms and 100 lessons fits many times
MAX_RANGE_S = 370 * 86400
ID_RE = re.compile(r"^[0-9a-f]{16}$")


def when(value: str, name: str, end: bool = False) -> float:
    """YYYY-MM-DD (the whole day, UTC), an ISO time with its offset, or epoch seconds."""
    v = value.strip()
    if len(v) == 10 and v[4] == "-" and v[7] == "-":
        try:
            t = calendar.timegm(time.strptime(v, "%Y-%m-%d"))
        except ValueError:
            raise web.HTTPBadRequest(text=f"{name} must be a date (YYYY-MM-DD), an ISO time or epoch seconds") from None
        return t + 86400 if end else t
    try:
        return parse_time(float(v) if re.fullmatch(r"-?\d+(\.\d+)?", v) else v, name)
    except TimetableError as exc:
        raise web.HTTPBadRequest(text=str(exc)) from None


def time_range(request: web.Request, default_s: float) -> tuple[float, float]:
    """`from` and `to` (`to` defaults to `from` + default_s, `from` to now); at most MAX_RANGE_S apart."""
    q = request.query
    t_from = when(q["from"], "from") if q.get("from") else time.time()
    t_to = when(q["to"], "to", end=True) if q.get("to") else t_from + default_s
    if t_to <= t_from:
        raise web.HTTPBadRequest(text="to must be after from")
    if t_to - t_from > MAX_RANGE_S:
        raise web.HTTPBadRequest(text=f"a range covers at most {MAX_RANGE_S // 86400} days")
    return t_from, t_to


def text(request: web.Request, name: str) -> str:
    v = request.query.get(name, "").strip()
    if len(v) > 200:
        raise web.HTTPBadRequest(text=f"{name} is too long")
    return v


def integer(request: web.Request, name: str, default: int, lo: int, hi: int) -> int:
    v = request.query.get(name, "")
    if not v:
        return default
    try:
        n = int(v)
    except ValueError:
        raise web.HTTPBadRequest(text=f"{name} must be an integer") from None
    if not lo <= n <= hi:
        raise web.HTTPBadRequest(text=f"{name} must be between {lo} and {hi}")
    return n


def lesson_id(request: web.Request, key: str = "id") -> str:
    v = request.match_info[key]
    if not ID_RE.match(v):
        raise web.HTTPNotFound(text="no such lesson")
    return v


async def json_body(request: web.Request) -> Any:
    raw = await read_body(request, MAX_BODY, "body")
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise web.HTTPBadRequest(text="body must be JSON") from None


def optional_room(request: web.Request) -> Optional[str]:
    v = request.query.get("room")
    return v if v else None
