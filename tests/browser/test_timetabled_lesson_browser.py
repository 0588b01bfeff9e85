"""A timetabled lesson given with the real pages in headless Chromium (Debian's /usr/bin/chromium through
Playwright, never `playwright install`): the teacher page and two of the course's three classroom terminal
pages; one classroom's PC drops out (its page closes) and comes back; the third never comes. The report, read
from the server afterwards, has each classroom's minutes against the test's own timeline, the absent one, the
resolution each was sent (the terminals ask for 180 lines), and the lesson was recorded with the course."""
from __future__ import annotations

import json
import time
import urllib.parse
import urllib.request

import pytest

from testkit.chromium import BrowserContexts, browser_marks, headless_chromium
from testkit.school import course_now
from testkit.server import ServerProcess

sync_api = pytest.importorskip("playwright.sync_api")
expect = sync_api.expect

pytestmark = browser_marks(150)
ROOM = "math-3"
TOLERANCE_S = 2.0   # a page's load and its WebSocket's open and close, seen from outside


@pytest.fixture(scope="module")
def browser():
    yield from headless_chromium()


@pytest.fixture
def pages(browser, tmp_path):
    p = BrowserContexts(browser, tmp_path)
    yield p
    p.close_checked()


def http_json(url: str, body: dict | None = None, token: str = "") -> dict:
    req = urllib.request.Request(url, data=None if body is None else json.dumps(body).encode(),
                                 headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.load(r)


def page_url(server: ServerProcess, page: str, token: str, **extra: str) -> str:
    return f"{server.base_url}/{page}.html?" + urllib.parse.urlencode({"room": ROOM, "token": token, "lang": "en",
                                                                       **extra})


def test_a_timetabled_lesson_with_the_teacher_page_and_terminal_pages(tmp_path, pages):
    server = ServerProcess(log_path=tmp_path / "server.log")
    try:
        admin = server.token("*", "admin")
        course = http_json(f"{server.base_url}/api/courses", course_now(
            ROOM, [("t1", "东山村教学点"), ("t2", "西岭村教学点"), ("t3", "南坡村教学点")]), admin)
        teacher = pages.open(page_url(server, "teacher", server.token(ROOM, "teacher", identity="li", name="李老师")),
                             "teacher")
        tokens = {i: server.token(ROOM, "terminal", identity=i, name=i) for i in ("t1", "t2")}
        terms = {i: pages.open(page_url(server, "terminal", tok, max="180"), i) for i, tok in tokens.items()}
        expect(teacher.locator("#grid .tile")).to_have_count(2)
        expect(teacher.locator("#lesson-start")).to_be_enabled()
        teacher.locator("#lesson-start").click()
        started = time.time()
        expect(teacher.locator("#console")).to_have_attribute("data-live", "true")
        expect(teacher.locator("#go-live")).to_be_enabled(timeout=20_000)
        teacher.locator("#go-live").click()
        for t in terms.values():
            expect(t.locator("body")).to_have_attribute("data-state", "live", timeout=25_000)   # the picture plays
        time.sleep(3)
        # classroom 2's PC drops out (its page and connections gone), and comes back 4 s later
        terms["t2"].context.close()
        dropped = time.time()
        time.sleep(4)
        back = time.time()
        terms["t2"] = pages.open(page_url(server, "terminal", tokens["t2"], max="180"), "t2-again")
        expect(terms["t2"].locator("body")).to_have_attribute("data-state", "live", timeout=25_000)
        time.sleep(4)
        teacher.locator("#lesson-end").click()
        ended = time.time()
        expect(teacher.locator("#console")).to_have_attribute("data-live", "false")

        deadline = time.time() + 15
        while True:
            lessons = http_json(f"{server.base_url}/api/lessons?from={int(started) - 60}", token=admin)["lessons"]
            if lessons and lessons[0]["state"] == "ended" and lessons[0]["recording_id"] or time.time() > deadline:
                break
            time.sleep(0.3)
        report = http_json(f"{server.base_url}{lessons[0]['report_url']}", token=admin)
        recording = http_json(f"{server.base_url}/api/library/{report['recording_id']}")
    finally:
        server.stop()

    by = {c["identity"]: c for c in report["classrooms"]}
    assert abs(report["duration_s"] - (ended - started)) < TOLERANCE_S
    assert abs(by["t1"]["present_s"] - (ended - started)) < TOLERANCE_S, by["t1"]
    t2_expected = (dropped - started) + (ended - back)
    assert abs(by["t2"]["present_s"] - t2_expected) < TOLERANCE_S, (by["t2"], t2_expected)
    assert by["t2"]["reconnects"] == 1 and len(by["t2"]["visits"]) == 1      # a reconnect, not a second visit
    assert [a["identity"] for a in report["absent"]] == ["t3"]
    # the SFU sent each terminal the layer it asked for (?max=180) most of the time it played
    for who in ("t1", "t2"):
        q = by[who]["quality"]
        assert q["time_at_resolution"].get("180p", 0) >= 0.5 * by[who]["present_s"] - 4, q
    assert by["t2"]["quality"]["media_restarts"] >= 1          # its new page played in a new session
    assert (recording["course_id"], recording["lesson_id"], recording["title"]) == (
        course["id"], report["id"], "分数的初步认识")
