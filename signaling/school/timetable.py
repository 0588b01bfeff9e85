"""Courses on the timetable (pure): a course (title, subject, grade, teacher, school, the master classroom's
room), its receiving classrooms and its lessons (start, end, weekly or once). What a client sends is checked here
(TimetableError: the 400's reason); occurrences in a range; which lesson a room is starting now. Time is an
argument (epoch seconds)."""
from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Callable, Iterable, Optional

MAX_TEXT = 200
MAX_ID = 64
MAX_CLASSROOMS = 200
MAX_LESSONS = 100
MAX_LESSON_S = 12 * 3600
WEEK_S = 7 * 86400
EARLY_S = 15 * 60        # a lesson started this long before its time is that lesson (teachers start early)
SLOT_ID_RE = re.compile(r"^[0-9a-f]{8}$")
COURSE_FIELDS = ("title", "subject", "grade", "teacher", "school", "room", "classrooms", "lessons")


class TimetableError(ValueError):
    """What a client sent cannot be a course (HTTP 400; the message says why)."""


@dataclass(frozen=True)
class Classroom:
    identity: str          # the terminal's token identity (sub): how the lesson knows it
    name: str
    school: str = ""

    def to_json(self) -> dict[str, Any]:
        return {"identity": self.identity, "name": self.name, "school": self.school}


@dataclass(frozen=True)
class Slot:
    """One lesson of a course: its first start and end, repeated every week while `weekly` (until `until`)."""
    id: str
    start: float
    end: float
    weekly: bool = False
    until: Optional[float] = None

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "start": iso(self.start), "end": iso(self.end), "weekly": self.weekly,
                "until": None if self.until is None else iso(self.until),
                "start_epoch": self.start, "end_epoch": self.end}

    def occurrences(self, t_from: float, t_to: float) -> Iterable[float]:
        """Start times of this slot's occurrences overlapping [t_from, t_to)."""
        if not self.weekly:
            if self.start < t_to and self.end > t_from:
                yield self.start
            return
        length = self.end - self.start
        k = max(0, int((t_from - self.end) // WEEK_S))
        while True:
            s = self.start + k * WEEK_S
            if s >= t_to or (self.until is not None and s > self.until):
                return
            if s + length > t_from:
                yield s
            k += 1


@dataclass(frozen=True)
class Course:
    id: str
    title: str
    subject: str
    grade: str
    teacher: str
    school: str
    room: str
    classrooms: tuple[Classroom, ...]
    lessons: tuple[Slot, ...]

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "title": self.title, "subject": self.subject, "grade": self.grade,
                "teacher": self.teacher, "school": self.school, "room": self.room,
                "classrooms": [c.to_json() for c in self.classrooms], "lessons": [s.to_json() for s in self.lessons]}

    def meta(self) -> dict[str, str]:
        """What a recording of its lessons carries into the library's catalogue."""
        return {"title": self.title, "subject": self.subject, "grade": self.grade, "teacher": self.teacher,
                "school": self.school}


@dataclass(frozen=True)
class Occurrence:
    course: Course
    slot: Slot
    start: float

    @property
    def end(self) -> float:
        return self.start + (self.slot.end - self.slot.start)

    def to_json(self) -> dict[str, Any]:
        c = self.course
        return {"course_id": c.id, "slot_id": self.slot.id, "title": c.title, "subject": c.subject,
                "grade": c.grade, "teacher": c.teacher, "school": c.school, "room": c.room,
                "start": iso(self.start), "end": iso(self.end), "start_epoch": self.start, "end_epoch": self.end,
                "classrooms": [x.to_json() for x in c.classrooms]}


def iso(t: float) -> str:
    return datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(value: Any, name: str) -> float:
    """An ISO 8601 time with its UTC offset (`2026-12-08T08:00:00+08:00`, `...Z`) or epoch seconds."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        t = float(value)
    elif isinstance(value, str) and value.strip():
        try:
            dt = datetime.fromisoformat(value.strip().replace("z", "Z"))
        except ValueError:
            raise TimetableError(f"{name} must be an ISO 8601 time such as 2026-12-08T08:00:00+08:00") from None
        if dt.tzinfo is None:
            raise TimetableError(f"{name} needs its UTC offset (e.g. +08:00 or Z): a school's clock is not ours")
        t = dt.timestamp()
    else:
        raise TimetableError(f"{name} must be an ISO 8601 time or epoch seconds")
    if t != t or not 0 <= t < 1e11:
        raise TimetableError(f"{name} is out of range")
    return t


def _text(body: dict, key: str, required: bool = False, limit: int = MAX_TEXT) -> str:
    v = body.get(key, "")
    if v is None:
        v = ""
    if isinstance(v, int) and not isinstance(v, bool):
        v = str(v)
    if not isinstance(v, str):
        raise TimetableError(f"{key} must be text")
    v = v.strip()
    if len(v) > limit or any(ord(c) < 32 for c in v):
        raise TimetableError(f"{key} must be at most {limit} printable characters")
    if required and not v:
        raise TimetableError(f"{key} is required")
    return v


def _classrooms(raw: Any) -> tuple[Classroom, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list) or len(raw) > MAX_CLASSROOMS:
        raise TimetableError(f"classrooms must be a list of at most {MAX_CLASSROOMS}")
    out: dict[str, Classroom] = {}
    for i, c in enumerate(raw):
        if not isinstance(c, dict):
            raise TimetableError(f"classrooms[{i}] must be an object with identity and name")
        identity = _text(c, "identity", True, MAX_ID)
        if identity in out:
            raise TimetableError(f"classroom {identity!r} is listed twice")
        out[identity] = Classroom(identity, _text(c, "name") or identity, _text(c, "school"))
    return tuple(out.values())


def _slots(raw: Any, new_id: Callable[[], str]) -> tuple[Slot, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list) or len(raw) > MAX_LESSONS:
        raise TimetableError(f"lessons must be a list of at most {MAX_LESSONS}")
    out: list[Slot] = []
    seen: set[str] = set()
    for i, s in enumerate(raw):
        if not isinstance(s, dict):
            raise TimetableError(f"lessons[{i}] must be an object with start and end")
        unknown = set(s) - {"id", "start", "end", "weekly", "until", "start_epoch", "end_epoch"}
        if unknown:
            raise TimetableError(f"lessons[{i}]: unknown field(s) {', '.join(sorted(unknown))}")
        sid = s.get("id")
        if sid is None or sid == "":
            sid = new_id()
        elif not isinstance(sid, str) or not SLOT_ID_RE.match(sid) or sid in seen:
            raise TimetableError(f"lessons[{i}].id must be 8 hex digits, unique (or left out for a new lesson)")
        seen.add(sid)
        start, end = parse_time(s.get("start"), f"lessons[{i}].start"), parse_time(s.get("end"), f"lessons[{i}].end")
        if not 0 < end - start <= MAX_LESSON_S:
            raise TimetableError(f"lessons[{i}] must end after it starts, within {MAX_LESSON_S // 3600} hours")
        weekly = s.get("weekly", False)
        if not isinstance(weekly, bool):
            raise TimetableError(f"lessons[{i}].weekly must be true or false")
        until = s.get("until")
        until_t = None if until in (None, "") else parse_time(until, f"lessons[{i}].until")
        if until_t is not None and (not weekly or until_t < start):
            raise TimetableError(f"lessons[{i}].until is for a weekly lesson, after its first start")
        out.append(Slot(sid, start, end, weekly, until_t))
    return tuple(out)


def parse_course(body: Any, course_id: str, new_slot_id: Callable[[], str]) -> Course:
    """A course from a client's JSON (`room` already checked as a room name by the caller). Lessons keep the
    ids they are sent with (held lessons refer to them); new ones get `new_slot_id()`."""
    if not isinstance(body, dict):
        raise TimetableError("body must be a JSON object")
    unknown = set(body) - set(COURSE_FIELDS) - {"id"}
    if unknown:
        raise TimetableError(f"unknown field(s): {', '.join(sorted(unknown))}")
    return Course(course_id, _text(body, "title", True), _text(body, "subject"), _text(body, "grade"),
                  _text(body, "teacher"), _text(body, "school"), _text(body, "room", True, MAX_ID),
                  _classrooms(body.get("classrooms")), _slots(body.get("lessons"), new_slot_id))


def course_from_json(doc: dict) -> Course:
    """A stored course (written by `Course.to_json`)."""
    return Course(doc["id"], doc["title"], doc["subject"], doc["grade"], doc["teacher"], doc["school"], doc["room"],
                  tuple(Classroom(c["identity"], c["name"], c.get("school", "")) for c in doc["classrooms"]),
                  tuple(Slot(s["id"], s["start_epoch"], s["end_epoch"], s["weekly"],
                             None if s.get("until") is None else parse_time(s["until"], "until"))
                        for s in doc["lessons"]))


def occurrences(courses: Iterable[Course], t_from: float, t_to: float) -> list[Occurrence]:
    """Every lesson of these courses overlapping [t_from, t_to), by start time."""
    out = [Occurrence(c, s, start) for c in courses for s in c.lessons for start in s.occurrences(t_from, t_to)]
    return sorted(out, key=lambda o: (o.start, o.course.id, o.slot.id))


def lesson_on(courses: Iterable[Course], room: str, now: float, early_s: float = EARLY_S) -> Optional[Occurrence]:
    """The timetabled lesson a teacher starting `room`'s lesson at `now` is giving: one of the room's lessons
    from `early_s` before its start to its end; the one starting nearest `now` if several."""
    found = [o for o in occurrences((c for c in courses if c.room == room), now - MAX_LESSON_S, now + early_s + 1)
             if o.start - early_s <= now < o.end]
    return min(found, key=lambda o: abs(o.start - now)) if found else None
