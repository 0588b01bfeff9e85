"""Reports (pure): one lesson's attendance and quality per classroom, the bureau's CSV rows, and the start rate
(开课率) of each teaching point per week: the timetable's expected classrooms against those that came. Built
from the stored rows, so a live lesson, an ended one and one whose node died read the same way."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any, Iterable, Optional

from signaling.school.attendance import visits
from signaling.school.timetable import Occurrence, iso

CSV_COLUMNS = ("date", "lesson_id", "room", "course_id", "course", "subject", "grade", "teacher", "school",
               "classroom", "classroom_name", "classroom_school", "expected", "attended", "first_joined",
               "last_left", "present_min", "reconnects", "frozen_s", "no_video_s", "loss_avg", "rtt_avg_ms",
               "time_at_resolution", "lesson_state")


STALE_S = 30.0   # a live lesson is written every few seconds: one silent this long lost its node (a cluster's
                 # dead node: no restart of its own marks it interrupted)


def state_of(lesson: dict[str, Any], now: float) -> str:
    """The lesson's state as a report tells it: `live` only while its node still writes it."""
    if lesson["state"] == "live" and now - float(lesson["updated_at"]) > STALE_S:
        return "interrupted"
    return lesson["state"]


def _close(spans: list[list[Optional[float]]], end: float) -> list[list[float]]:
    return [[a, end if b is None else b] for a, b in spans if a is not None]


def lesson_end(lesson: dict[str, Any], now: float) -> float:
    """Where an unfinished lesson's open visits end: now while it is live, else its end (for a lesson whose
    node died: the last time its rows were written)."""
    if lesson.get("ended_at") is not None:
        return float(lesson["ended_at"])
    return now if state_of(lesson, now) == "live" else float(lesson["updated_at"])


def lesson_report(lesson: dict[str, Any], rows: Iterable[dict[str, Any]], now: float) -> dict[str, Any]:
    """`lesson`: the held lesson's stored row; `rows`: its classrooms' stored rows."""
    end = lesson_end(lesson, now)
    state = state_of(lesson, now)
    expected = {c["identity"]: c for c in lesson.get("expected") or []}
    classrooms, seen = [], set()
    for r in sorted(rows, key=lambda r: r["identity"]):
        spans = _close(r["spans"], end)
        present = sum(b - a for a, b in spans)
        merged = visits(spans)
        exp = expected.get(r["identity"])
        seen.add(r["identity"])
        classrooms.append({
            "identity": r["identity"], "name": (exp or {}).get("name") or r["name"],
            "school": (exp or {}).get("school", ""), "expected": exp is not None, "attended": bool(spans),
            "first_joined": iso(spans[0][0]) if spans else None, "last_left": iso(merged[-1][1]) if spans else None,
            "visits": [{"joined": iso(a), "left": iso(b), "joined_s": round(a - lesson["started_at"], 1),
                        "left_s": round(b - lesson["started_at"], 1)} for a, b in merged],
            "present_s": round(present, 1), "present_min": round(present / 60, 2),
            "reconnects": max(0, len(spans) - 1), "quality": r["quality"]})
    absent = [{"identity": i, "name": c.get("name") or i, "school": c.get("school", "")}
              for i, c in expected.items() if i not in seen]
    came = sum(1 for c in classrooms if c["expected"] and c["attended"])
    course = None
    if lesson.get("course_id"):
        course = {"id": lesson["course_id"], "slot_id": lesson.get("slot_id"), "title": lesson.get("title", ""),
                  "subject": lesson.get("subject", ""), "grade": lesson.get("grade", ""),
                  "teacher": lesson.get("teacher", ""), "school": lesson.get("school", ""),
                  "scheduled_start": iso(lesson["occurrence_start"]) if lesson.get("occurrence_start") else None}
    return {
        "id": lesson["id"], "room": lesson["room"], "state": state,
        "started_at": iso(lesson["started_at"]), "started_at_epoch": lesson["started_at"],
        "ended_at": iso(end) if state != "live" else None, "duration_s": round(end - lesson["started_at"], 1),
        "updated_at": iso(lesson["updated_at"]), "course": course, "recording_id": lesson.get("recording_id") or None,
        "classrooms": classrooms, "absent": absent,
        "summary": {"expected": len(expected), "attended_expected": came,
                    "attended": sum(1 for c in classrooms if c["attended"]),
                    "attendance_rate": round(came / len(expected), 3) if expected else None},
    }


def at_offset(iso_utc: Optional[str], utc_offset_min: int) -> str:
    """An ISO time (…Z) on a clock `utc_offset_min` minutes ahead of UTC, with its offset (a bureau's local time,
    still unambiguous); '' for None."""
    if not iso_utc:
        return ""
    if not utc_offset_min:
        return iso_utc
    t = datetime.fromisoformat(iso_utc.replace("Z", "+00:00"))
    return t.astimezone(timezone(timedelta(minutes=utc_offset_min))).isoformat(timespec="seconds")


def csv_rows(report: dict[str, Any], utc_offset_min: int = 0) -> list[list[Any]]:
    """One row per classroom of a lesson, absent expected ones included (CSV_COLUMNS); dates and times on the
    clock `utc_offset_min` minutes ahead of UTC."""
    course = report["course"] or {}
    base = [at_offset(report["started_at"], utc_offset_min)[:10], report["id"], report["room"], course.get("id", ""), course.get("title", ""),
            course.get("subject", ""), course.get("grade", ""), course.get("teacher", ""), course.get("school", "")]
    out = []
    for c in report["classrooms"]:
        q = c["quality"] or {}
        res = ";".join(f"{k}:{v:g}" for k, v in (q.get("time_at_resolution") or {}).items())
        out.append(base + [c["identity"], c["name"], c["school"], "yes" if c["expected"] else "no",
                           "yes" if c["attended"] else "no", at_offset(c["first_joined"], utc_offset_min),
                           at_offset(c["last_left"], utc_offset_min),
                           c["present_min"], c["reconnects"], q.get("frozen_s", ""), q.get("no_video_s", ""),
                           "" if q.get("loss_avg") is None else q["loss_avg"],
                           "" if q.get("rtt_avg_ms") is None else q["rtt_avg_ms"], res, report["state"]])
    for a in report["absent"]:
        out.append(base + [a["identity"], a["name"], a["school"], "yes", "no", "", "", 0, 0, "", "", "", "", "",
                           report["state"]])
    return out


def week_of(t: float, utc_offset_min: int = 0) -> str:
    """The ISO week (`2026-W50`) of an instant, on a clock `utc_offset_min` minutes ahead of UTC."""
    y, w, _ = (datetime.fromtimestamp(t, timezone.utc) + timedelta(minutes=utc_offset_min)).isocalendar()
    return f"{y}-W{w:02d}"


def start_rate(occurrences: Iterable[Occurrence], held: Iterable[dict[str, Any]], utc_offset_min: int = 0,
               school: str = "") -> dict[str, Any]:
    """Per teaching point (a course's receiving classroom) and week: timetabled lessons, those it came to, the
    rate. `held`: held lessons with `course_id`, `slot_id`, `occurrence_start` and `attended` (identities)."""
    came: dict[tuple[str, str, float], set[str]] = {}
    for h in held:
        if h.get("course_id"):
            key = (h["course_id"], h.get("slot_id") or "", float(h.get("occurrence_start") or 0))
            came.setdefault(key, set()).update(h.get("attended") or ())
    points: dict[str, dict[str, Any]] = {}
    weeks: set[str] = set()
    held_count = expected_count = 0
    for o in occurrences:
        attended = came.get((o.course.id, o.slot.id, float(o.start)))
        expected_count += 1
        held_count += attended is not None
        week = week_of(o.start, utc_offset_min)
        weeks.add(week)
        for c in o.course.classrooms:
            if school and school not in (c.school, o.course.school):
                continue
            p = points.setdefault(c.identity, {"identity": c.identity, "name": c.name, "school": c.school,
                                               "weeks": {}, "expected": 0, "started": 0})
            wk = p["weeks"].setdefault(week, {"expected": 0, "started": 0})
            started = attended is not None and c.identity in attended
            for d in (p, wk):
                d["expected"] += 1
                d["started"] += started
    for p in points.values():
        for d in (p, *p["weeks"].values()):
            d["rate"] = round(d["started"] / d["expected"], 3) if d["expected"] else None
    return {"weeks": sorted(weeks), "lessons_expected": expected_count, "lessons_held": held_count,
            "classrooms": sorted(points.values(), key=lambda p: (p["school"], p["identity"]))}
