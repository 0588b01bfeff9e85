"""Held lessons and their classrooms' attendance in the library's SQLite. The tracker writes a lesson's changed
rows every few seconds (UPSERT, one transaction), so a node killed mid-lesson leaves what it knew; its next
start marks such lessons `interrupted`, ending when their rows were last written."""
from __future__ import annotations

import json
import time
from typing import Any, Callable, Iterable, Optional

from recorder.store.school_db import SchoolDb

LESSON_STATES = ("live", "ended", "interrupted")
LESSON_FIELDS = ("room", "node", "course_id", "slot_id", "occurrence_start", "title", "subject", "grade",
                 "teacher", "school", "started_at", "ended_at", "state", "recording_id", "expected")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS held_lessons (
    id TEXT PRIMARY KEY,
    room TEXT NOT NULL,
    node TEXT NOT NULL DEFAULT '',
    course_id TEXT NOT NULL DEFAULT '',
    slot_id TEXT NOT NULL DEFAULT '',
    occurrence_start REAL,
    title TEXT NOT NULL DEFAULT '',
    subject TEXT NOT NULL DEFAULT '',
    grade TEXT NOT NULL DEFAULT '',
    teacher TEXT NOT NULL DEFAULT '',
    school TEXT NOT NULL DEFAULT '',
    started_at REAL NOT NULL,
    ended_at REAL,
    state TEXT NOT NULL,
    recording_id TEXT NOT NULL DEFAULT '',
    expected TEXT NOT NULL DEFAULT '[]',
    updated_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS held_lessons_started ON held_lessons (started_at);
CREATE TABLE IF NOT EXISTS attendance (
    lesson_id TEXT NOT NULL,
    identity TEXT NOT NULL,
    name TEXT NOT NULL DEFAULT '',
    spans TEXT NOT NULL DEFAULT '[]',
    present_s REAL NOT NULL DEFAULT 0,
    reconnects INTEGER NOT NULL DEFAULT 0,
    quality TEXT NOT NULL DEFAULT '{}',
    updated_at REAL NOT NULL,
    PRIMARY KEY (lesson_id, identity)
);
"""


def _lesson(row: Any) -> dict[str, Any]:
    d = dict(row)
    d["expected"] = json.loads(d["expected"] or "[]")
    return d


def _attendance(row: Any) -> dict[str, Any]:
    d = dict(row)
    d["spans"] = json.loads(d["spans"] or "[]")
    d["quality"] = json.loads(d["quality"] or "{}")
    return d


class AttendanceStore:
    def __init__(self, path: str, clock: Callable[[], float] = time.time) -> None:
        self.db = SchoolDb(path, _SCHEMA)
        self.clock = clock

    def open_lesson(self, lesson_id: str, fields: dict[str, Any]) -> None:
        values = {k: fields[k] for k in LESSON_FIELDS if k in fields}
        values["expected"] = json.dumps(values.get("expected") or [])
        cols = ["id", *values, "updated_at"]
        with self.db.transaction() as db:
            db.execute(f"INSERT INTO held_lessons ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})",
                       [lesson_id, *values.values(), self.clock()])

    def write(self, lesson_id: str, rows: Iterable[dict[str, Any]], **lesson: Any) -> None:
        """Upsert these classrooms' rows and touch the lesson (with `lesson`'s changes), in one transaction."""
        now = self.clock()
        bad = set(lesson) - set(LESSON_FIELDS)
        if bad:
            raise ValueError(f"unknown lesson field(s) {bad}")
        if "state" in lesson and lesson["state"] not in LESSON_STATES:
            raise ValueError("bad lesson state")
        with self.db.transaction() as db:
            for r in rows:
                db.execute("INSERT INTO attendance (lesson_id, identity, name, spans, present_s, reconnects, quality,"
                           " updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(lesson_id, identity) DO UPDATE"
                           " SET name = excluded.name, spans = excluded.spans, present_s = excluded.present_s,"
                           " reconnects = excluded.reconnects, quality = excluded.quality,"
                           " updated_at = excluded.updated_at",
                           (lesson_id, r["identity"], r["name"], json.dumps(r["spans"]), r["present_s"],
                            r["reconnects"], json.dumps(r["quality"]), now))
            sets = "".join(f", {k} = ?" for k in lesson)
            db.execute(f"UPDATE held_lessons SET updated_at = ?{sets} WHERE id = ?", [now, *lesson.values(), lesson_id])

    def lesson(self, lesson_id: str) -> Optional[dict[str, Any]]:
        rows = self.db.query("SELECT * FROM held_lessons WHERE id = ?", (lesson_id,))
        return _lesson(rows[0]) if rows else None

    def rows(self, lesson_id: str) -> list[dict[str, Any]]:
        return [_attendance(r) for r in self.db.query("SELECT * FROM attendance WHERE lesson_id = ? ORDER BY identity",
                                                      (lesson_id,))]

    def lessons(self, t_from: float, t_to: float, room: Optional[str] = None,
                limit: int = 10000) -> list[dict[str, Any]]:
        sql, args = "SELECT * FROM held_lessons WHERE started_at >= ? AND started_at < ?", [t_from, t_to]
        if room is not None:
            sql, args = sql + " AND room = ?", [*args, room]
        return [_lesson(r) for r in self.db.query(sql + " ORDER BY started_at, id LIMIT ?", [*args, limit])]

    def rows_of(self, lesson_ids: list[str]) -> dict[str, list[dict[str, Any]]]:
        """Many lessons' rows at once (a report over a range): lesson id -> its rows."""
        out: dict[str, list[dict[str, Any]]] = {i: [] for i in lesson_ids}
        for chunk in range(0, len(lesson_ids), 500):
            ids = lesson_ids[chunk:chunk + 500]
            for r in self.db.query(f"SELECT * FROM attendance WHERE lesson_id IN ({', '.join('?' * len(ids))}) "
                                   "ORDER BY identity", ids):
                out[r["lesson_id"]].append(_attendance(r))
        return out

    def attended(self, lesson_ids: list[str]) -> dict[str, set[str]]:
        """Lesson id -> the identities that were present at all."""
        out: dict[str, set[str]] = {i: set() for i in lesson_ids}
        for chunk in range(0, len(lesson_ids), 500):
            ids = lesson_ids[chunk:chunk + 500]
            for r in self.db.query(f"SELECT lesson_id, identity, spans FROM attendance WHERE lesson_id IN "
                                   f"({', '.join('?' * len(ids))})", ids):
                if json.loads(r["spans"] or "[]"):
                    out[r["lesson_id"]].add(r["identity"])
        return out

    def interrupt_unfinished(self, node: str) -> list[str]:
        """Lessons of `node` still `live` (their node died): `interrupted`, ended when last written."""
        with self.db.transaction() as db:
            ids = [r[0] for r in db.execute("SELECT id FROM held_lessons WHERE state = 'live' AND node = ?", (node,))]
            db.execute("UPDATE held_lessons SET state = 'interrupted', ended_at = updated_at "
                       "WHERE state = 'live' AND node = ?", (node,))
        return ids

    def close(self) -> None:
        self.db.close()
