"""The two-way lesson in real headless Chromium: the teacher page and three classroom terminal pages in one lesson,
through `liveclass serve`. One browser, one context per machine (teacher laptop, three classroom PCs).

Asserted as people see it: hands appear in the teacher's queue in the order raised; the classroom called on stage
plays (frames decoded) in the inset at the other two classrooms; muting it stops its audio packets arriving; chat
arrives as text; the teacher's slides reach the classrooms; the lesson's end stops every publisher and every page
says so. Uses Debian's /usr/bin/chromium through Playwright (never `playwright install`).
"""
from __future__ import annotations

import json
import time
import urllib.parse
import urllib.request
from typing import Any, Callable, Optional

import pytest

from testkit.chromium import browser_marks, BrowserContexts, headless_chromium, wait_for

sync_api = pytest.importorskip("playwright.sync_api")
expect = sync_api.expect

pytestmark = browser_marks(180)

ROOM = "classroom"

# packets and frames received by one of the page's WHEP players (window.liveclass[<name>])
PLAYER_STATS = """
async (name) => {
  const p = window.liveclass && window.liveclass[name];
  const pc = p && p.pc;
  const out = { audio: 0, video: 0, frames: 0, height: 0, state: p ? p.state : null, total: p ? p.totalFrames : 0 };
  if (!pc || pc.connectionState === "closed") return out;
  (await pc.getStats()).forEach((s) => {
    if (s.type !== "inbound-rtp") return;
    out[s.kind] += s.packetsReceived || 0;
    if (s.kind === "video") { out.frames += s.framesDecoded || 0; out.height = s.frameHeight || out.height; }
  });
  return out;
}
"""

TILES = """
() => [...window.liveclass.tiles.values()].map((t) => ({ identity: t.identity, frames: t.player.totalFrames,
                                                      state: t.player.state }))
"""


@pytest.fixture(scope="module")
def browser():
    yield from headless_chromium()


@pytest.fixture
def pages(browser, tmp_path):
    p = BrowserContexts(browser, tmp_path)
    yield p
    p.close_checked()
    server_errors = [r for r in p.responses if r[2] >= 500]
    assert not server_errors, server_errors


def url(server, page: str, token: str, **extra: str) -> str:
    return f"{server.base_url}/{page}.html?" + urllib.parse.urlencode({"room": ROOM, "token": token, **extra})


def room_stats(server) -> Optional[dict]:
    q = urllib.parse.urlencode({"room": ROOM, "token": server.token(ROOM, "admin")})
    with urllib.request.urlopen(f"{server.base_url}/api/stats?{q}", timeout=5) as r:
        rooms = json.load(r)["rooms"]
    return rooms[0] if rooms else None


def player(page, name: str) -> dict:
    return page.evaluate(PLAYER_STATS, name)


def rising(what: str, read: Callable[[], int], at_least: int, timeout: float, detail=lambda: "") -> None:
    start = read()
    wait_for(what, lambda: read() - start >= at_least, timeout, 0.2, detail)


def test_a_teacher_and_three_classrooms_in_one_lesson(server, pages, tmp_path):
    teacher_token = server.token(ROOM, "teacher", identity="ms-li", name="Ms Li")
    teacher = pages.open(url(server, "teacher", teacher_token), "teacher")
    terms = {}
    for i in (1, 2, 3):
        token = server.token(ROOM, "terminal", identity=f"t{i}", name=f"School {i}")
        # ?max=180: each classroom plays the teacher's smallest simulcast layer (2 CPU cores for 4 browsers)
        terms[i] = pages.open(url(server, "terminal", token, max="180"), f"t{i}")
    expect(teacher.locator("#message")).to_contain_text("Camera ready")
    for t in terms.values():
        expect(t.locator("#lesson-status")).to_have_text("The lesson has not started yet")
    expect(teacher.locator("#grid .tile")).to_have_count(3)
    expect(teacher.locator("#grid")).to_contain_text("School 2")

    # the teacher starts the lesson and goes live; every classroom sees the teacher and sends its camera back
    teacher.get_by_role("button", name="Start lesson").click()
    expect(teacher.locator("#lesson-state")).to_have_text("Lesson live")
    teacher.get_by_role("button", name="Go live").click()
    expect(teacher.locator("#state")).to_have_text("Live")
    for t in terms.values():
        expect(t.locator("#lesson-status")).to_have_text("Lesson live")
        expect(t.locator("#mic-state")).to_have_text("Microphone off")  # closed until called on stage
    for t in terms.values():
        expect(t.locator("#overlay")).to_be_hidden(timeout=20_000)  # the teacher's picture is playing
    wait_for("the teacher's grid decoding all three classrooms' cameras",
             lambda: all(x["frames"] >= 5 for x in teacher.evaluate(TILES)), 30, 0.3,
             detail=lambda: teacher.evaluate(TILES))
    # the SFU's measurement of each classroom's link reaches the teacher's roster
    expect(teacher.locator('.tile[data-identity="t1"] .tile-info')).to_contain_text("good link", timeout=15_000)
    expect(teacher.locator('.tile[data-identity="t1"] .tile-info')).to_contain_text("mic off")
    expect(teacher.locator('.tile[data-identity="t1"]').get_by_role("button", name="Unmute")).to_be_visible()

    # hands, in the order raised: classroom 3 with the remote's OK on the focused button, then classroom 1 with H
    terms[3].locator("#hand").focus()
    terms[3].keyboard.press("Enter")
    expect(teacher.locator("#hands li")).to_have_count(1)
    terms[1].locator("body").press("h")
    expect(teacher.locator("#hands li")).to_have_text(["School 3Call on stage", "School 1Call on stage"])
    expect(terms[3].locator("#hand")).to_have_text("Lower hand (1st in line)")
    expect(terms[1].locator("#hand")).to_have_attribute("aria-pressed", "true")

    # calling classroom 2 on stage: its picture appears in the inset at classrooms 1 and 3
    t0 = time.monotonic()
    teacher.locator('.tile[data-identity="t2"]').get_by_role("button", name="Call on stage").click()
    for i in (1, 3):
        expect(terms[i].locator("#stage-box")).to_be_visible()
        expect(terms[i].locator("#stage-name")).to_have_text("School 2")
    for i in (1, 3):
        rising(f"classroom 2's picture decoded at classroom {i}", lambda i=i: player(terms[i], "stagePlayer")["frames"],
               10, 20, detail=lambda i=i: player(terms[i], "stagePlayer"))
    stage_s = time.monotonic() - t0
    assert player(terms[1], "stagePlayer")["height"] == 180  # the classroom's small camera, not the teacher
    expect(terms[2].locator("#on-stage-banner")).to_be_visible()
    expect(terms[2].locator("#stage-box")).to_be_hidden()      # it does not play itself back
    expect(terms[2].locator("#mic-state")).to_have_text("Microphone on")
    expect(teacher.locator('.tile[data-identity="t2"]')).to_have_attribute("data-stage", "true")
    rising("classroom 2's sound at classroom 1", lambda: player(terms[1], "stagePlayer")["audio"], 50, 10)

    # mute: classroom 2's audio packets stop arriving anywhere; its picture goes on
    teacher.locator('.tile[data-identity="t2"]').get_by_role("button", name="Mute", exact=True).click()
    expect(terms[2].locator("#mic-state")).to_have_text("Microphone off")
    time.sleep(0.5)
    before = {i: player(terms[i], "stagePlayer") for i in (1, 3)}
    time.sleep(2.0)
    after = {i: player(terms[i], "stagePlayer") for i in (1, 3)}
    for i in (1, 3):
        assert after[i]["audio"] == before[i]["audio"], f"audio reached classroom {i} while muted: {before} {after}"
        assert after[i]["frames"] > before[i]["frames"], f"the picture stopped at classroom {i}: {before} {after}"
    teacher.locator('.tile[data-identity="t2"]').get_by_role("button", name="Unmute").click()
    rising("classroom 2's sound again", lambda: player(terms[3], "stagePlayer")["audio"], 50, 10)

    # chat: typed at classroom 1 (C opens it), shown everywhere as text, never as markup
    terms[1].locator("body").press("c")
    expect(terms[1].locator("#chat-input")).to_be_focused()
    terms[1].keyboard.type("We can hear you <b>now</b>")
    terms[1].keyboard.press("Enter")
    for page in (teacher, terms[3]):
        entry = page.locator("#chat-list li").last
        expect(entry).to_contain_text("School 1")
        expect(entry).to_contain_text("We can hear you <b>now</b>")
        assert entry.locator("b").count() == 0
    expect(terms[3].locator("#chat-unread")).to_have_text("1")

    # the teacher's slides: the classrooms show them full screen, the teacher moves to a corner
    teacher.get_by_role("button", name="Share screen").click()
    expect(teacher.locator("#share")).to_have_text("End screen share")
    expect(terms[1].locator("#screen")).to_be_visible(timeout=20_000)
    rising("slides decoded at classroom 1", lambda: player(terms[1], "screenPlayer")["frames"], 5, 15)
    assert terms[1].evaluate("document.body.classList.contains('slides')")
    terms[1].screenshot(path=str(tmp_path / "terminal1-stage-and-slides.png"))
    teacher.screenshot(path=str(tmp_path / "teacher-console.png"), full_page=True)

    # the lesson ends: every publisher is closed, every page says so, nothing plays any more
    teacher.get_by_role("button", name="End lesson").click()
    expect(teacher.locator("#lesson-state")).to_have_text("Lesson ended")
    expect(teacher.locator("#state")).to_have_text("Not live")
    expect(teacher.locator("#share")).to_have_text("Share screen")
    for t in terms.values():
        expect(t.locator("#lesson-status")).to_have_text("The lesson has ended")
        expect(t.locator("#overlay-title")).to_have_text("The lesson has ended")
        expect(t.locator("#badge")).to_be_hidden()
        expect(t.locator("#stage-box")).to_be_hidden()
        expect(t.locator("#screen")).to_be_hidden()
        expect(t.locator("#self-view")).to_be_hidden()
    wait_for("no publisher left on the server", lambda: (lambda r: r is not None and r["publisher"] is None
             and r["screen"]["publisher"] is None
             and all(f["publisher"] is None for f in r["classrooms"].values()))(room_stats(server)), 10)
    wait_for("the teacher's grid stopped", lambda: all(x["state"] == "stopped" for x in teacher.evaluate(TILES)), 5)
    terms[1].screenshot(path=str(tmp_path / "terminal1-ended.png"))
    print(f"\nstage picture decoded at classrooms 1 and 3 within {stage_s:.1f} s of the call")
