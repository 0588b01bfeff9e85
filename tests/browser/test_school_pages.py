"""The timetable and report pages in real headless Chromium (Debian's /usr/bin/chromium through Playwright, never
`playwright install`), against `liveclass serve` after a short timetabled lesson of an aiortc teacher and two
classrooms: an admin sees the week with the lesson held, makes a course with the form, reads the lesson's
report (minutes, the absent teaching point, the quality chart), the start rate, the CSV link, in both languages."""
from __future__ import annotations

import asyncio
import datetime
import json
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import aiohttp
import pytest

from testkit.chromium import BrowserPool, browser_marks
from testkit.lesson_peers import Peers
from testkit.room_client import RoomClient
from testkit.school import Classroom, course_now
from testkit.server import ServerProcess
from tests.browser.test_page_languages import look

sync_api = pytest.importorskip("playwright.sync_api")
expect = sync_api.expect

pytestmark = browser_marks(150)
ROOM = "math-3"
# what the test entered, shown as it was: rooms, terminal identities, courses, people, places
DATA = frozenset({"math-3", "chinese-3", "cun-a", "cun-b", "cun-c", "cun-d", "古诗两首", "分数的初步认识", "数学", "语文",
                  "三年级", "李老师", "东山村教学点", "西岭村教学点", "南坡村教学点", "北岗村教学点", "东山村小学", "县实验小学",
                  "村小"})


@pytest.fixture(scope="module")
def playwright():
    with sync_api.sync_playwright() as p:
        yield p


@pytest.fixture
def pool(playwright, tmp_path):
    b = BrowserPool(playwright, tmp_path)
    yield b
    b.close_checked()


async def short_lesson(server: ServerProcess, clip) -> str:
    """A 4 s timetabled lesson: two of its three classrooms come. Its held lesson's id."""
    peers = Peers()
    async with aiohttp.ClientSession() as http:
        rooms = [Classroom(server, ROOM, "cun-a", "东山村教学点", http),
                 Classroom(server, ROOM, "cun-b", "西岭村教学点", http)]
        try:
            course = course_now(ROOM, [("cun-a", "东山村教学点"), ("cun-b", "西岭村教学点"), ("cun-c", "南坡村教学点")])
            async with http.post(f"{server.base_url}/api/courses", json=course,
                                 headers={"Authorization": f"Bearer {server.token('*', 'admin')}"}) as r:
                assert r.status == 201
            teacher = await RoomClient(http, server.base_url, ROOM, server.token(ROOM, "teacher")).connect()
            pub = await peers.publish(server, ROOM, clip)
            await pub.connected()
            for x in rooms:
                await x.join()
            await teacher.request("lesson_start")
            await asyncio.sleep(4.5)
            await teacher.request("lesson_end")
            await teacher.close()
        finally:
            for x in rooms:
                await x.close()
            await peers.stop()
    admin = server.token("*", "admin")
    with urllib.request.urlopen(f"{server.base_url}/api/lessons?from={int(time.time()) - 600}&token={admin}") as r:
        return json.load(r)["lessons"][0]["id"]


def test_the_timetable_and_report_pages(tmp_path, pool, clip):
    server = ServerProcess(log_path=tmp_path / "server.log")
    try:
        with ThreadPoolExecutor(1) as pool_thread:   # Playwright's sync API holds this thread's event loop
            lesson_id = pool_thread.submit(asyncio.run, short_lesson(server, clip)).result()
        admin = server.token("*", "admin")

        # the timetable, in Chinese: the week holds the lesson, held, with a link to its report
        page = pool.open(f"{server.base_url}/timetable.html?lang=zh-CN&token={admin}", "admin")
        page.wait_for_function("window.liveclass && window.liveclass.ready")
        expect(page.locator("h1")).to_have_text("课表管理")
        held = page.locator('.slot[data-held="yes"]')
        expect(held).to_have_count(1)
        expect(held).to_contain_text("分数的初步认识")
        expect(held.locator("a")).to_have_attribute("href", f"report.html?lesson={lesson_id}")
        assert "token=" not in page.url   # kept for the tab, not left in the address bar
        look(page, "zh-CN", "timetable-zh-CN", DATA)
        # a new course from the form
        page.fill("#f-title", "古诗两首")
        page.fill("#f-subject", "语文")
        page.fill("#f-grade", "三年级")
        page.fill("#f-room", "chinese-3")
        page.fill("#f-classrooms", "cun-a, 东山村教学点, 东山村小学\ncun-d, 北岗村教学点")
        page.fill(".l-date", str(datetime.date.today() + datetime.timedelta(days=1)))   # not due: no start rate yet
        page.fill(".l-start", "10:00")
        page.fill(".l-end", "10:40")
        page.click("#save")
        expect(page.locator("#status")).to_have_text("已保存课程“古诗两首”")
        expect(page.locator("#courses tr")).to_have_count(2)
        expect(page.locator("#courses")).to_contain_text("chinese-3")
        with urllib.request.urlopen(f"{server.base_url}/api/courses?token={admin}") as r:
            made = [c for c in json.load(r)["courses"] if c["room"] == "chinese-3"][0]
        assert [c["identity"] for c in made["classrooms"]] == ["cun-a", "cun-d"] and made["lessons"][0]["weekly"]
        assert made["lessons"][0]["end_epoch"] - made["lessons"][0]["start_epoch"] == 2400
        # the language switch, in place
        page.click('.lang-switch button[data-lang="en"]')
        expect(page.locator("h1")).to_have_text("Timetable")
        look(page, "en", "timetable-en", DATA)

        # the report of the lesson, in English
        page.goto(f"{server.base_url}/report.html?lang=en&lesson={lesson_id}")
        page.wait_for_function("window.liveclass && window.liveclass.ready")
        expect(page.locator("#lesson-summary")).to_contain_text("2 of 3 teaching points came (67%)")
        expect(page.locator("#lesson-summary")).to_contain_text("南坡村教学点")
        expect(page.locator('#classrooms tr[data-absent="yes"]')).to_have_count(1)
        minutes = page.locator('#classrooms tr[data-identity="cun-a"] td').nth(4).inner_text()
        assert 0.05 <= float(minutes) <= 0.1, minutes      # 4.5 s
        expect(page.locator("#chart svg")).to_have_attribute("data-lanes", "2")
        assert page.locator('#chart rect[data-state="360p"]').count() >= 2
        # the start rate: the two that came at 100 %, the absent one at 0 %
        expect(page.locator("#rate-body tr")).to_have_count(3)
        expect(page.locator("#rate-body")).to_contain_text("1/1 (100%)")
        expect(page.locator("#rate-body")).to_contain_text("0/1 (0%)")
        href = page.locator("#csv").get_attribute("href")
        with urllib.request.urlopen(server.base_url + href) as r:
            assert r.headers["Content-Type"].startswith("text/csv") and "cun-c" in r.read().decode("utf-8-sig")
        look(page, "en", "report-en", DATA)
        page.click('.lang-switch button[data-lang="zh-CN"]')
        expect(page.locator("#lesson-summary")).to_contain_text("应到 3 个教学点，实到 2 个，出勤率 67%")
        look(page, "zh-CN", "report-zh-CN", DATA)
    finally:
        server.stop()
