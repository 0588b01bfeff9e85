"""The replay page in real headless Chromium, on the 20 s lesson recorded from an aiortc teacher: a student finds
it, plays it, seeks, jumps by chapter and comes back where they left off. And a lesson published by the teacher
page in Chromium (fake camera and microphone) is recorded and plays back.

Uses Debian's /usr/bin/chromium through Playwright (never `playwright install`)."""
from __future__ import annotations

import time
import urllib.parse

import av
import pytest

from testkit.chromium import browser_marks, BrowserPool, wait_for
from testkit.lessons import http_json, shared_lesson
from testkit.server import ServerProcess

sync_api = pytest.importorskip("playwright.sync_api")
expect = sync_api.expect

pytestmark = browser_marks(150)


@pytest.fixture(scope="module")
def playwright():
    with sync_api.sync_playwright() as p:
        yield p


@pytest.fixture
def pool(playwright, tmp_path):
    b = BrowserPool(playwright, tmp_path)
    yield b
    b.close_checked()


def video_state(page) -> dict:
    return page.evaluate("""() => { const v = document.querySelector('#video');
        return { t: v.currentTime, paused: v.paused, w: v.videoWidth, h: v.videoHeight, d: v.duration,
                 ready: v.readyState, seeking: v.seeking, error: v.error && v.error.code }; }""")


def screen_state(page) -> dict:
    return page.evaluate("""() => { const v = document.querySelector('#screen-video');
        return { t: v.currentTime, paused: v.paused, w: v.videoWidth, hidden: v.hidden,
                 error: v.error && v.error.code }; }""")


def test_a_student_finds_plays_seeks_and_resumes_the_recorded_lesson(tmp_path_factory, pool):
    lesson = shared_lesson(tmp_path_factory)
    server = ServerProcess(library=lesson.library, log_path=tmp_path_factory.mktemp("replay") / "server.log")
    admin = server.token("*", "admin")
    lid = lesson.lesson["id"]
    try:
        page = pool.open(f"{server.base_url}/replay.html", "student")
        expect(page.locator("#list-status")).to_have_text("1 lesson")
        card = page.locator(".lesson-card")
        expect(card.locator(".title")).to_have_text("Optics: lenses")
        expect(card.locator(".meta")).to_contain_text("Ada Teacher · Physics · Grade 7")
        expect(card.locator(".duration")).to_have_text("0:20")
        wait_for("the poster thumbnail", lambda: card.locator("img").evaluate("i => i.naturalWidth") > 0, 5)

        page.locator("#q").fill("nothing like this")
        page.locator("#search button").click()
        expect(page.locator("#list-status")).to_have_text("No lessons found.")
        page.locator("#q").fill("optics")
        page.locator("#subject").fill("physics")
        page.locator("#search button").click()
        expect(page.locator("#list-status")).to_have_text("1 lesson")

        page.locator(".lesson-card .open").click()
        expect(page.locator("#player")).to_be_visible()
        expect(page.locator("#lesson-title")).to_have_text("Optics: lenses")
        page.evaluate("document.querySelector('#video').play()")
        wait_for("playback", lambda: video_state(page)["t"] > 1.0, 10, detail=lambda: video_state(page))
        st = video_state(page)
        assert (st["w"], st["h"]) == (320, 180) and abs(st["d"] - lesson.lesson["duration_s"]) < 0.2, st

        # the seek bar: to 10 s, then it plays on through the teacher's absence
        page.evaluate("document.querySelector('#video').currentTime = 10")
        wait_for("the seek", lambda: not video_state(page)["seeking"], 5)
        assert abs(video_state(page)["t"] - 10.0) <= 1.0, video_state(page)
        # the screen share plays beside it, on the lesson's timeline
        offset = lesson.lesson["screen_offset_s"]
        expect(page.locator("#screen-video")).to_be_visible()
        wait_for("the screen share in step", lambda: (lambda s, v: s["w"] == 640 and not s["paused"]
                 and abs(s["t"] - (v["t"] - offset)) < 0.5)(screen_state(page), video_state(page)), 5,
                 detail=lambda: (screen_state(page), video_state(page)))
        wait_for("playing past the gap", lambda: video_state(page)["t"] > 14.5, 10, detail=lambda: video_state(page))

        # chapters: a list with thumbnails; clicking one seeks there
        chapters = page.locator("#chapters li")
        assert chapters.count() == len(lesson.lesson["chapters"]) >= 1
        expect(chapters.first.locator(".at")).to_have_text("0:00")
        wait_for("a chapter thumbnail", lambda: chapters.first.locator("img").evaluate("i => i.naturalWidth") > 0, 5)
        chapters.first.locator("button").click()
        wait_for("the chapter's start", lambda: video_state(page)["t"] < 2.0, 5, detail=lambda: video_state(page))
        expect(chapters.first).to_have_class("current")

        # leave at 12 s, come back: it resumes there
        page.evaluate("(() => { const v = document.querySelector('#video'); v.pause(); v.currentTime = 12; })()")
        wait_for("the seek", lambda: not video_state(page)["seeking"], 5)
        page.reload()
        expect(page.locator("#resume-note")).to_contain_text("Resumed where you left off (0:12)")
        wait_for("the resumed position", lambda: abs(video_state(page)["t"] - 12.0) < 0.5, 5,
                 detail=lambda: video_state(page))
        assert video_state(page)["error"] is None

        # what users typed is shown as text, never run as HTML
        status, _ = http_json("PATCH", f"{server.base_url}/api/library/{lid}", admin,
                              {"title": "<img src=x onerror=\"window.__xss=1\"><b>Optics</b>"})
        assert status == 200
        page.goto(f"{server.base_url}/replay.html")
        expect(page.locator(".lesson-card .title")).to_have_text("<img src=x onerror=\"window.__xss=1\"><b>Optics</b>")
        assert page.evaluate("window.__xss") is None and page.locator(".lesson-card .title b").count() == 0
        page.goto(f"{server.base_url}/replay.html?lesson=0000000000000000")
        expect(page.locator("#list-status")).to_contain_text("Cannot open the lesson: no such lesson")
    finally:
        http_json("PATCH", f"{server.base_url}/api/library/{lid}", admin, {"title": "Optics: lenses"})
        server.stop()


def test_a_lesson_published_from_the_teacher_page_is_recorded(tmp_path, pool):
    server = ServerProcess(log_path=tmp_path / "server.log")
    room = "browser-rec"
    try:
        teacher = server.token(room, "teacher", name="Chromium Teacher")
        query = urllib.parse.urlencode({"room": room, "token": teacher})
        page = pool.open(f"{server.base_url}/teacher.html?{query}", "teacher")
        expect(page.locator("#message")).to_contain_text("Camera ready", timeout=15_000)
        status, started = http_json("POST", f"{server.base_url}/api/rooms/{room}/recording", teacher,
                                    {"title": "From the browser"})
        assert status == 201, started
        page.get_by_role("button", name="Go live").click()
        expect(page.locator("#state")).to_have_text("Live", timeout=15_000)
        live_at = time.monotonic()
        time.sleep(8)
        page.get_by_role("button", name="Stop").click()
        expect(page.locator("#state")).to_have_text("Not live", timeout=10_000)
        live_for = time.monotonic() - live_at
        status, lesson = http_json("DELETE", f"{server.base_url}/api/rooms/{room}/recording", teacher)
        assert status == 200 and lesson["state"] == "ready", lesson
        media = server.library / "lessons" / lesson["id"] / "lesson.webm"
        with av.open(str(media)) as c:
            kinds = sorted(s.type for s in c.streams)
            duration = c.duration / 1e6
            first = {}
            for p in c.demux():
                if p.size and p.stream.type not in first:
                    first[p.stream.type] = float(p.pts * p.time_base)
        assert kinds == ["audio", "video"]
        # from the first keyframe after "Live" to the stop, give or take the connection and the last second
        assert live_for - 1.5 <= duration <= live_for + 0.5, (duration, live_for)
        assert abs(first["video"] - first["audio"]) <= 0.040, first
        with av.open(str(media)) as c:
            frames = [f for f in c.decode(video=0)]
        assert len(frames) >= 8 * 15 and frames[-1].width >= 320
        # ... and it plays in the replay page
        player = pool.open(f"{server.base_url}/replay.html?lesson={lesson['id']}", "student")
        expect(player.locator("#lesson-title")).to_have_text("From the browser")
        player.evaluate("document.querySelector('#video').play()")
        wait_for("playback", lambda: video_state(player)["t"] > 1.0 and video_state(player)["w"] > 0, 10,
                 detail=lambda: video_state(player))
    finally:
        server.stop()
