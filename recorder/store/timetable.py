"""The timetable's courses in the library's SQLite: one row per course, its whole definition as JSON (the
course model and its checks are signaling/school/timetable.py)."""
from __future__ import annotations

import json
import time
from typing import Any, Callable, Optional

from recorder.store.school_db import SchoolDb

_SCHEMA = """
CREATE TABLE IF NOT EXISTS courses (
    id TEXT PRIMARY KEY,
    room TEXT NOT NULL,
    school TEXT NOT NULL DEFAULT '',
    doc TEXT NOT NULL,
    updated_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS courses_room ON courses (room);
"""


class TimetableStore:
    def __init__(self, path: str, clock: Callable[[], float] = time.time) -> None:
        self.db = SchoolDb(path, _SCHEMA)
        self.clock = clock

    def put(self, doc: dict[str, Any]) -> None:
        """Create or replace a course (`doc` has its id, room and school)."""
        with self.db.transaction() as db:
            db.execute("INSERT INTO courses (id, room, school, doc, updated_at) VALUES (?, ?, ?, ?, ?) "
                       "ON CONFLICT(id) DO UPDATE SET room = excluded.room, school = excluded.school, "
                       "doc = excluded.doc, updated_at = excluded.updated_at",
                       (doc["id"], doc["room"], doc.get("school", ""), json.dumps(doc), self.clock()))

    def get(self, course_id: str) -> Optional[dict[str, Any]]:
        rows = self.db.query("SELECT doc FROM courses WHERE id = ?", (course_id,))
        return json.loads(rows[0]["doc"]) if rows else None

    def delete(self, course_id: str) -> bool:
        with self.db.transaction() as db:
            return db.execute("DELETE FROM courses WHERE id = ?", (course_id,)).rowcount > 0

    def all(self, room: Optional[str] = None) -> list[dict[str, Any]]:
        rows = (self.db.query("SELECT doc FROM courses WHERE room = ? ORDER BY id", (room,)) if room is not None
                else self.db.query("SELECT doc FROM courses ORDER BY id"))
        return [json.loads(r["doc"]) for r in rows]

    def close(self) -> None:
        self.db.close()
