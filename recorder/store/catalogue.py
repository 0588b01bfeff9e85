"""The resource library's catalogue: one SQLite table of lessons (stdlib sqlite3, WAL, one connection + lock)."""
from __future__ import annotations

import json
import sqlite3
import threading
import time
from dataclasses import dataclass
from typing import Any, Iterable, Optional

STATES = ("recording", "ready", "recovered", "failed")
TEXT_FIELDS = ("title", "room", "teacher", "school", "subject", "grade")
EDITABLE = ("title", "teacher", "school", "subject", "grade")
LINKS = ("course_id", "lesson_id")   # a timetabled lesson's recording: its course and the held lesson's report

_SCHEMA = """
CREATE TABLE IF NOT EXISTS lessons (
    id TEXT PRIMARY KEY,
    title TEXT NOT NULL DEFAULT '',
    room TEXT NOT NULL DEFAULT '',
    teacher TEXT NOT NULL DEFAULT '',
    school TEXT NOT NULL DEFAULT '',
    subject TEXT NOT NULL DEFAULT '',
    grade TEXT NOT NULL DEFAULT '',
    started_at REAL NOT NULL,
    duration_s REAL NOT NULL DEFAULT 0,
    tracks TEXT NOT NULL DEFAULT '[]',
    size INTEGER NOT NULL DEFAULT 0,
    state TEXT NOT NULL,
    media_file TEXT NOT NULL DEFAULT '',
    screen_file TEXT NOT NULL DEFAULT '',
    screen_offset_s REAL NOT NULL DEFAULT 0,
    thumbnail TEXT NOT NULL DEFAULT '',
    chapters TEXT NOT NULL DEFAULT '[]',
    error TEXT,
    updated_at REAL NOT NULL,
    node TEXT NOT NULL DEFAULT '',
    course_id TEXT NOT NULL DEFAULT '',
    lesson_id TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS lessons_started ON lessons (started_at);
CREATE INDEX IF NOT EXISTS lessons_state ON lessons (state);
"""
_JSON = ("tracks", "chapters")


@dataclass(frozen=True)
class Query:
    text: str = ""
    teacher: str = ""
    subject: str = ""
    date_from: Optional[float] = None   # started_at >= (epoch seconds)
    date_to: Optional[float] = None     # started_at < (epoch seconds)
    state: str = ""
    limit: int = 20
    offset: int = 0


def _like(value: str) -> str:
    return "%" + value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


class Catalogue:
    def __init__(self, path: str, clock=time.time) -> None:
        self.path = path
        self.clock = clock
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=5)
        self._db.row_factory = sqlite3.Row
        with self._lock:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(_SCHEMA)
            # catalogues made before cluster mode (node) and timetables (course_id, lesson_id): add the columns
            columns = {r[1] for r in self._db.execute("PRAGMA table_info(lessons)")}
            for column in ("node", *LINKS):
                if column in columns:
                    continue
                try:
                    self._db.execute(f"ALTER TABLE lessons ADD COLUMN {column} TEXT NOT NULL DEFAULT ''")
                except sqlite3.OperationalError as exc:  # another node of the cluster added it meanwhile
                    if "duplicate column" not in str(exc):
                        raise

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @staticmethod
    def _row(row: sqlite3.Row) -> dict[str, Any]:
        d = dict(row)
        for k in _JSON:
            try:
                d[k] = json.loads(d[k] or "[]")
            except ValueError:
                d[k] = []
        return d

    def add(self, lesson: dict[str, Any]) -> None:
        values = {**lesson, "updated_at": self.clock()}
        if values.get("state") not in STATES:
            raise ValueError(f"state must be one of {', '.join(STATES)}")
        for k in _JSON:
            if k in values:
                values[k] = json.dumps(values[k])
        cols = list(values)
        with self._lock:
            self._db.execute(f"INSERT INTO lessons ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})",
                             [values[c] for c in cols])

    def update(self, lesson_id: str, /, **fields: Any) -> Optional[dict[str, Any]]:   # fields may name lesson_id
        if "state" in fields and fields["state"] not in STATES:
            raise ValueError(f"state must be one of {', '.join(STATES)}")
        fields["updated_at"] = self.clock()
        for k in _JSON:
            if k in fields:
                fields[k] = json.dumps(fields[k])
        sets = ", ".join(f"{k} = ?" for k in fields)
        with self._lock:
            self._db.execute(f"UPDATE lessons SET {sets} WHERE id = ?", [*fields.values(), lesson_id])
        return self.get(lesson_id)

    def claim(self, lesson_id: str, from_node: str, to_node: str) -> bool:
        """Take over a lesson still `recording` under `from_node` (its recovery); False if another node did."""
        with self._lock:
            return self._db.execute("UPDATE lessons SET node = ?, updated_at = ? WHERE id = ? AND node = ? "
                                    "AND state = 'recording'",
                                    (to_node, self.clock(), lesson_id, from_node)).rowcount == 1

    def get(self, lesson_id: str) -> Optional[dict[str, Any]]:
        with self._lock:
            row = self._db.execute("SELECT * FROM lessons WHERE id = ?", (lesson_id,)).fetchone()
        return self._row(row) if row else None

    def delete(self, lesson_id: str) -> bool:
        with self._lock:
            return self._db.execute("DELETE FROM lessons WHERE id = ?", (lesson_id,)).rowcount > 0

    def in_state(self, states: Iterable[str]) -> list[dict[str, Any]]:
        states = list(states)
        with self._lock:
            rows = self._db.execute(f"SELECT * FROM lessons WHERE state IN ({', '.join('?' * len(states))})"
                                    " ORDER BY started_at", states).fetchall()
        return [self._row(r) for r in rows]

    def search(self, q: Query) -> tuple[list[dict[str, Any]], int]:
        """Lessons matching `q`, newest first, and how many match in all (for paging)."""
        where, args = [], []
        if q.text:
            where.append("(" + " OR ".join(f"{c} LIKE ? ESCAPE '\\'" for c in TEXT_FIELDS) + ")")
            args += [_like(q.text)] * len(TEXT_FIELDS)
        if q.teacher:
            where.append("teacher LIKE ? ESCAPE '\\'")
            args.append(_like(q.teacher))
        if q.subject:
            where.append("subject LIKE ? ESCAPE '\\'")
            args.append(_like(q.subject))
        if q.state:
            where.append("state = ?")
            args.append(q.state)
        if q.date_from is not None:
            where.append("started_at >= ?")
            args.append(q.date_from)
        if q.date_to is not None:
            where.append("started_at < ?")
            args.append(q.date_to)
        clause = (" WHERE " + " AND ".join(where)) if where else ""
        with self._lock:
            total = self._db.execute(f"SELECT COUNT(*) FROM lessons{clause}", args).fetchone()[0]
            rows = self._db.execute(f"SELECT * FROM lessons{clause} ORDER BY started_at DESC, id LIMIT ? OFFSET ?",
                                    [*args, q.limit, q.offset]).fetchall()
        return [self._row(r) for r in rows], total
