"""The timetable's model: what a client may send, weekly occurrences, and which lesson a room starts now."""
from __future__ import annotations

import itertools

import pytest

from signaling.school.timetable import (EARLY_S, WEEK_S, TimetableError, course_from_json, lesson_on, occurrences,
                                        parse_course, parse_time)

MON_8 = parse_time("2026-12-07T08:00:00+08:00", "t")   # a Monday, 08:00 in Beijing


def ids():
    counter = itertools.count()
    return lambda: f"{next(counter):08x}"


def body(**kw):
    b = {"title": "数学 · 分数", "subject": "数学", "grade": "五年级", "teacher": "李老师", "school": "县一小",
         "room": "math-5", "classrooms": [{"identity": "cun-a", "name": "A 村教学点", "school": "A 村小"},
                                          {"identity": "cun-b", "name": "B 村教学点"}],
         "lessons": [{"start": "2026-12-07T08:00:00+08:00", "end": "2026-12-07T08:40:00+08:00", "weekly": True}]}
    b.update(kw)
    return b


def test_a_course_round_trips_through_its_stored_form():
    c = parse_course(body(), "c" * 16, ids())
    assert c.lessons[0].start == MON_8 and c.lessons[0].end == MON_8 + 2400 and c.lessons[0].id == "00000000"
    assert [x.identity for x in c.classrooms] == ["cun-a", "cun-b"] and c.classrooms[1].name == "B 村教学点"
    assert course_from_json(c.to_json()) == c
    again = parse_course(c.to_json(), c.id, ids())     # ids sent back are kept
    assert again.lessons[0].id == "00000000"


@pytest.mark.parametrize("change, reason", [
    ({"title": ""}, "title is required"),
    ({"title": 5.5}, "title must be text"),
    ({"colour": "red"}, "unknown field"),
    ({"lessons": [{"start": "2026-12-07T08:00:00", "end": "2026-12-07T09:00:00+08:00"}]}, "UTC offset"),
    ({"lessons": [{"start": "next monday", "end": "2026-12-07T09:00:00+08:00"}]}, "ISO 8601"),
    ({"lessons": [{"start": "2026-12-07T09:00:00+08:00", "end": "2026-12-07T08:00:00+08:00"}]}, "end after"),
    ({"lessons": [{"start": MON_8, "end": MON_8 + 13 * 3600}]}, "within 12 hours"),
    ({"lessons": [{"start": MON_8, "end": MON_8 + 60, "weekly": "yes"}]}, "true or false"),
    ({"lessons": [{"start": MON_8, "end": MON_8 + 60, "until": MON_8 + WEEK_S}]}, "weekly lesson"),
    ({"lessons": [{"id": "zz", "start": MON_8, "end": MON_8 + 60}]}, "8 hex"),
    ({"lessons": {"start": MON_8}}, "must be a list"),
    ({"classrooms": [{"identity": "a"}, {"identity": "a"}]}, "twice"),
    ({"classrooms": [{"name": "no identity"}]}, "identity is required"),
    ({"classrooms": ["a"]}, "must be an object"),
    ({"classrooms": [{"identity": "a\nb"}]}, "printable"),
])
def test_bad_courses_say_why(change, reason):
    with pytest.raises(TimetableError, match=reason):
        parse_course(body(**change), "c" * 16, ids())


def test_not_an_object():
    with pytest.raises(TimetableError, match="JSON object"):
        parse_course([1], "c" * 16, ids())


def test_weekly_occurrences_until_their_last_week():
    c = parse_course(body(lessons=[{"start": MON_8, "end": MON_8 + 2400, "weekly": True, "until": MON_8 + 2 * WEEK_S},
                                   {"start": MON_8 + 86400, "end": MON_8 + 86400 + 2400}]), "c" * 16, ids())
    got = [o.start for o in occurrences([c], MON_8 - WEEK_S, MON_8 + 10 * WEEK_S)]
    assert got == [MON_8, MON_8 + 86400, MON_8 + WEEK_S, MON_8 + 2 * WEEK_S]
    # a range that starts inside a lesson still has it; one that ends at its start does not
    assert [o.start for o in occurrences([c], MON_8 + WEEK_S + 60, MON_8 + WEEK_S + 61)] == [MON_8 + WEEK_S]
    assert occurrences([c], MON_8 - 100, MON_8) == []


def test_the_lesson_a_room_starts_now():
    c = parse_course(body(), "c" * 16, ids())
    week3 = MON_8 + 3 * WEEK_S
    assert lesson_on([c], "math-5", week3 - EARLY_S - 1) is None
    assert lesson_on([c], "math-5", week3 - EARLY_S).start == week3      # a teacher starting early
    assert lesson_on([c], "math-5", week3 + 2399).start == week3
    assert lesson_on([c], "math-5", week3 + 2400) is None                # over
    assert lesson_on([c], "other-room", week3) is None
    assert lesson_on([c], "math-5", MON_8 - WEEK_S) is None              # before its first week
