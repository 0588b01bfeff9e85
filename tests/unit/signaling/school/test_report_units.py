"""Reports from stored rows: an interrupted lesson's open visits end where it was last written; the start rate."""
from __future__ import annotations

import itertools

from signaling.school.report import STALE_S, CSV_COLUMNS, csv_rows, lesson_report, start_rate, week_of
from signaling.school.timetable import WEEK_S, occurrences, parse_course, parse_time

MON_8 = parse_time("2026-12-07T08:00:00+08:00", "t")


def course():
    n = itertools.count()
    return parse_course({"title": "Fractions", "room": "math-5", "school": "County No. 1",
                         "classrooms": [{"identity": "a", "name": "A"},
                                        {"identity": "b", "name": "B", "school": "B school"},
                                        {"identity": "c", "name": "C"}],
                         "lessons": [{"start": MON_8, "end": MON_8 + 2400, "weekly": True}]},
                        "c" * 16, lambda: f"{next(n):08x}")


def lesson(**kw):
    c = course()
    d = {"id": "1" * 16, "room": "math-5", "state": "live", "started_at": MON_8, "ended_at": None,
         "updated_at": MON_8 + 50, "course_id": c.id, "slot_id": c.lessons[0].id, "occurrence_start": MON_8,
         "title": "Fractions", "expected": [x.to_json() for x in c.classrooms], "recording_id": ""}
    d.update(kw)
    return d


ROWS = [{"identity": "a", "name": "A", "spans": [[MON_8, MON_8 + 10], [MON_8 + 20, None]],
         "quality": {"frozen_s": 1.0}},
        {"identity": "x", "name": "Guest", "spans": [[MON_8 + 5, MON_8 + 15]], "quality": {}}]


def test_an_interrupted_lesson_ends_where_it_was_last_written():
    r = lesson_report(lesson(state="interrupted", ended_at=MON_8 + 50), ROWS, now=MON_8 + 9999)
    a, x = r["classrooms"]
    assert (a["present_s"], a["reconnects"], a["expected"]) == (40.0, 1, True)
    assert a["visits"] == [{"joined": "2026-12-07T00:00:00Z", "left": "2026-12-07T00:00:50Z", "joined_s": 0.0,
                            "left_s": 50.0}]
    assert (x["expected"], x["present_s"]) == (False, 10.0)
    assert [z["identity"] for z in r["absent"]] == ["b", "c"]
    assert r["summary"] == {"expected": 3, "attended_expected": 1, "attended": 2, "attendance_rate": 0.333}
    live = lesson_report(lesson(), ROWS, now=MON_8 + 60)
    assert live["classrooms"][0]["present_s"] == 50.0 and live["ended_at"] is None and live["state"] == "live"
    # a live lesson nobody has written for STALE_S lost its node (in a cluster, no restart of its own says so)
    gone = lesson_report(lesson(), ROWS, now=MON_8 + 50 + STALE_S + 1)
    assert gone["state"] == "interrupted" and gone["classrooms"][0]["present_s"] == 40.0
    rows = csv_rows(r, 480)   # on Beijing's clock
    assert len(rows) == 4 and all(len(row) == len(CSV_COLUMNS) for row in rows)
    assert rows[0][0] == "2026-12-07" and rows[0][14:16] == ["2026-12-07T08:00:00+08:00", "2026-12-07T08:00:50+08:00"]
    assert rows[2][9:14] == ["b", "B", "B school", "yes", "no"]
    assert csv_rows(r)[0][14] == "2026-12-07T00:00:00Z"


def test_start_rate_per_teaching_point_and_week():
    c = course()
    found = occurrences([c], MON_8, MON_8 + 2 * WEEK_S)
    held = [{"course_id": c.id, "slot_id": c.lessons[0].id, "occurrence_start": MON_8, "attended": {"a", "b"}},
            {"course_id": c.id, "slot_id": c.lessons[0].id, "occurrence_start": MON_8 + WEEK_S, "attended": {"a"}},
            {"course_id": "", "attended": {"a"}}]
    r = start_rate(found, held, utc_offset_min=480)
    assert r["weeks"] == ["2026-W50", "2026-W51"] and (r["lessons_expected"], r["lessons_held"]) == (2, 2)
    by = {p["identity"]: p for p in r["classrooms"]}
    assert (by["a"]["rate"], by["b"]["rate"], by["c"]["rate"]) == (1.0, 0.5, 0.0)
    assert by["b"]["weeks"]["2026-W51"] == {"expected": 1, "started": 0, "rate": 0.0}
    assert [p["identity"] for p in start_rate(found, held, 480, school="B school")["classrooms"]] == ["b"]
    assert len(start_rate(found, held, 480, school="County No. 1")["classrooms"]) == 3


def test_weeks_are_on_the_school_s_clock():
    sunday_night_utc = parse_time("2026-12-06T20:00:00Z", "t")   # Monday 04:00 in Beijing
    assert week_of(sunday_night_utc) == "2026-W49" and week_of(sunday_night_utc, 480) == "2026-W50"
