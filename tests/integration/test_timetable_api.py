"""The timetable and report API over the real app and a real library: token rules (401, 403, the teacher of
its own room), every bad input a 400 with its reason, the week's lessons, and the reports' empty cases."""
from __future__ import annotations

import csv
import io
import json
from typing import AsyncIterator, Optional

import aiohttp
import pytest

from signaling.app import create_app
from signaling.auth.tokens import mint
from signaling.media.library_api import RECORDER
from testkit.inprocess import serve_app

SECRET = "timetable-api-secret-0123456789abcdef"
MON_8 = "2026-12-07T08:00:00+08:00"

pytestmark = pytest.mark.timeout(60)


def course(room: str = "math-5", **kw) -> dict:
    c = {"title": "分数的初步认识", "subject": "数学", "grade": "三年级", "teacher": "李老师", "school": "县实验小学",
         "room": room, "classrooms": [{"identity": "cun-a", "name": "A 村教学点", "school": "A 村小学"},
                                      {"identity": "cun-b", "name": "B 村教学点", "school": "B 村小学"}],
         "lessons": [{"start": MON_8, "end": "2026-12-07T08:40:00+08:00", "weekly": True}]}
    c.update(kw)
    return c


class Api:
    def __init__(self, base: str, http: aiohttp.ClientSession) -> None:
        self.base, self.http = base, http

    async def call(self, method: str, path: str, token: Optional[str] = None, body=None, raw: Optional[bytes] = None):
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        async with self.http.request(method, self.base + path, headers=headers, data=data) as r:
            payload = await r.read()
            if r.content_type == "application/json":
                return r.status, json.loads(payload), r.headers
            return r.status, payload.decode("utf-8-sig"), r.headers


@pytest.fixture
async def api(tmp_path) -> AsyncIterator[Api]:
    app = create_app(SECRET, ["127.0.0.1"], library=str(tmp_path / "library"))
    app[RECORDER].analyze_enabled = False
    async with serve_app(app) as (base, http):
        yield Api(base, http)


def tok(role: str, room: str = "math-5") -> str:
    return mint(SECRET, room, role)


ADMIN = mint(SECRET, "*", "admin")


async def test_token_rules(api):
    assert (await api.call("POST", "/api/courses", body=course()))[0] == 401
    status, text, headers = await api.call("POST", "/api/courses", "not-a-token", course())
    assert status == 401 and headers["WWW-Authenticate"] == "Bearer"
    for role in ("terminal", "student", "observer"):
        status, text, _ = await api.call("POST", "/api/courses", tok(role), course())
        assert status == 403 and "teacher of the course's room" in text, role
    assert (await api.call("POST", "/api/courses", tok("teacher", "other-room"), course()))[0] == 403
    status, mine, headers = await api.call("POST", "/api/courses", tok("teacher"), course())
    assert status == 201 and headers["Location"] == f"/api/courses/{mine['id']}"
    status, theirs, _ = await api.call("POST", "/api/courses", ADMIN, course("physics-8", title="光的折射"))
    assert status == 201
    # a teacher sees and changes its room's courses only; an admin every one
    status, listed, _ = await api.call("GET", "/api/courses", tok("teacher"))
    assert [c["id"] for c in listed["courses"]] == [mine["id"]]
    assert len((await api.call("GET", "/api/courses", ADMIN))[1]["courses"]) == 2
    assert (await api.call("GET", f"/api/courses/{theirs['id']}", tok("teacher")))[0] == 403
    assert (await api.call("GET", f"/api/courses/{mine['id']}", tok("terminal")))[0] == 200   # reading: the room's
    assert (await api.call("PUT", f"/api/courses/{theirs['id']}", tok("teacher"), course()))[0] == 403
    assert (await api.call("PUT", f"/api/courses/{mine['id']}", tok("teacher"), course("physics-8")))[0] == 403
    assert (await api.call("DELETE", f"/api/courses/{mine['id']}", tok("terminal")))[0] == 403
    # an edit keeps the lesson's id (held lessons refer to it)
    edited = {**mine, "title": "分数（二）"}
    status, after, _ = await api.call("PUT", f"/api/courses/{mine['id']}", tok("teacher"), edited)
    assert status == 200 and after["title"] == "分数（二）" and after["lessons"][0]["id"] == mine["lessons"][0]["id"]
    assert (await api.call("DELETE", f"/api/courses/{mine['id']}", tok("teacher")))[0] == 204
    assert (await api.call("GET", f"/api/courses/{mine['id']}", ADMIN))[0] == 404
    # reports: admins, and a lesson's room's teacher
    assert (await api.call("GET", "/api/reports/attendance?from=2026-12-07&to=2026-12-13", tok("teacher")))[0] == 403
    assert (await api.call("GET", "/api/reports/start-rate", tok("teacher")))[0] == 403
    assert (await api.call("GET", "/api/lessons", tok("terminal")))[0] == 403
    assert (await api.call("GET", f"/api/lessons/{'0' * 16}/report", ADMIN))[0] == 404


@pytest.mark.parametrize("body, status, reason", [
    ({**course(), "room": "bad room!"}, 400, "room names"),
    ({**course(), "title": ""}, 400, "title is required"),
    ({**course(), "extra": 1}, 400, "unknown field"),
    ({**course(), "lessons": [{"start": "2026-12-07T08:00", "end": "2026-12-07T09:00"}]}, 400, "UTC offset"),
    ([1, 2], 400, "JSON object"),
])
async def test_bad_courses_are_400_with_the_reason(api, body, status, reason):
    got, text, _ = await api.call("POST", "/api/courses", ADMIN, body)
    assert got == status and reason in text


async def test_bad_bodies_and_queries(api):
    assert (await api.call("POST", "/api/courses", ADMIN, raw=b"{not json"))[0] == 400
    got, text, _ = await api.call("POST", "/api/courses", ADMIN, raw=b"x" * 300_000)
    assert got == 413
    assert (await api.call("PUT", "/api/courses/nope", ADMIN, course()))[0] == 404
    for query, reason in [("from=yesterday", "from must be"), ("from=2026-12-07&to=2026-12-01", "after from"),
                          ("from=2020-01-01&to=2026-01-01", "at most 370 days"), ("from=2026-13-40", "from must be")]:
        got, text, _ = await api.call("GET", f"/api/timetable?{query}", ADMIN)
        assert got == 400 and reason in text, (query, text)
    got, text, _ = await api.call("GET", "/api/reports/start-rate?utc_offset=abc", ADMIN)
    assert got == 400 and "integer" in text
    assert (await api.call("GET", "/api/lessons/..%2F..%2Fetc/report", ADMIN))[0] == 404


async def test_the_week_and_reports_of_a_timetable_nobody_taught(api):
    created = (await api.call("POST", "/api/courses", ADMIN, course()))[1]
    week = "from=2026-12-07T00:00:00%2B08:00&to=2026-12-21T00:00:00%2B08:00"
    status, tt, _ = await api.call("GET", f"/api/timetable?{week}", ADMIN)
    assert status == 200 and [x["start"] for x in tt["lessons"]] == ["2026-12-07T00:00:00Z", "2026-12-14T00:00:00Z"]
    assert tt["lessons"][0]["course_id"] == created["id"] and tt["lessons"][0]["held"] == []
    assert (await api.call("GET", f"/api/timetable?{week}&token={tok('terminal', 'elsewhere')}"))[1]["lessons"] == []
    # the CSV (admin's token as ?token=, a download link) lists the classrooms of lessons that are due and not held
    status, text, headers = await api.call("GET", f"/api/reports/attendance?{week}&token={ADMIN}")
    assert status == 200 and headers["Content-Type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(text)))
    due = [r for r in rows if r["lesson_state"] == "not_held"]
    assert {r["classroom"] for r in due} <= {"cun-a", "cun-b"} and all(r["attended"] == "no" for r in due)
    status, rate, _ = await api.call("GET", f"/api/reports/start-rate?{week}&utc_offset=480", ADMIN)
    assert status == 200 and rate["lessons_held"] == 0


def test_the_server_prints_the_timetable_page_with_an_admin_token(tmp_path):
    """What a user sees at start: a link to the timetable (and from it the reports) that works."""
    import re
    import urllib.request

    from testkit.server import ServerProcess
    server = ServerProcess(log_path=tmp_path / "server.log")
    try:
        link = re.search(r"Timetable and reports \(admin\): (\S+/timetable\.html\?token=(\S+))", server.log_tail())
        assert link, server.log_tail()
        with urllib.request.urlopen(link.group(1)) as r:
            assert r.status == 200 and b'data-i18n-ns="common timetable"' in r.read()
        req = urllib.request.Request(f"{server.base_url}/api/courses",
                                     headers={"Authorization": f"Bearer {link.group(2)}"})
        with urllib.request.urlopen(req) as r:
            assert r.status == 200 and json.load(r)["courses"] == []
    finally:
        server.stop()
