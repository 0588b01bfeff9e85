"""Simulcast from the teacher page to classroom terminals in real headless Chromium: the SFU negotiates the
three encodings, forwards each terminal the layer it may have, and switches without renegotiating.
Assertions are what the classroom sees: decoded picture size, frames still coming, the status overlay."""
from __future__ import annotations

import json
import time
import urllib.parse
import urllib.request

from testkit.chromium import browser_marks
from tests.browser.test_browser import (  # noqa: F401  (fixtures)
    TIMING_SCRIPT, browsers, go_live, open_teacher, page_url, playwright, room_stats, stats, wait_until,
)

pytestmark = browser_marks(120)


def open_terminal(browsers, server, room: str, name: str, **params):
    url = page_url(server, "terminal", room, "terminal")
    if params:
        url += "&" + urllib.parse.urlencode(params)
    return browsers.open(url, name, init_script=TIMING_SCRIPT)


def picture(page) -> tuple[int, int, int]:
    v = stats(page).get("in_video") or {}
    return v.get("frameWidth") or 0, v.get("frameHeight") or 0, v.get("framesDecoded") or 0


def video_layers(server, room: str) -> list[dict]:
    r = room_stats(server, room)
    return (r or {}).get("tracks", {}).get("video", {}).get("layers", [])


def test_simulcast_layers_reach_each_terminal_at_its_own_size(server, browsers):
    room = "simulcast"
    teacher = open_teacher(browsers, server, room)
    go_live(teacher)
    # the teacher page's three encodings all arrive and are told apart (RID), worst first
    layers = wait_until("three simulcast layers with known sizes",
                        lambda: (lambda ls: ls if len(ls) == 3 and all(x["height"] for x in ls) else None)(
                            video_layers(server, room)), 30, 0.5, detail=lambda: video_layers(server, room))
    heights = [x["height"] for x in layers]
    assert heights == sorted(heights) and heights[-1] == 720 and heights[0] <= 180, heights
    big = open_terminal(browsers, server, room, "big")
    small = open_terminal(browsers, server, room, "small", max="360", stats="1")
    wait_until("the uncapped terminal decoding 1280x720",
               lambda: picture(big)[:2] == (1280, 720), 30, 0.25, detail=lambda: stats(big))
    wait_until("the capped terminal decoding 640x360",
               lambda: picture(small)[:2] == (640, 360), 30, 0.25, detail=lambda: stats(small))
    # both keep playing (no freeze from the other's layer), and the overlay shows the server's choice
    f_big, f_small = picture(big)[2], picture(small)[2]
    time.sleep(2)
    assert picture(big)[2] - f_big >= 30 and picture(small)[2] - f_small >= 30
    overlay = wait_until("the status overlay", lambda: small.locator("#stats").text_content() or None, 10, 0.5)
    assert "640×360" in overlay and "layer 1" in overlay, overlay


def test_a_terminal_changes_its_cap_without_renegotiating(server, browsers):
    room = "recap"
    teacher = open_teacher(browsers, server, room)
    go_live(teacher)
    wait_until("three simulcast layers", lambda: len(video_layers(server, room)) == 3, 30, 0.5)
    term = open_terminal(browsers, server, room, "term")
    wait_until("1280x720 at the terminal", lambda: picture(term)[:2] == (1280, 720), 30, 0.25,
               detail=lambda: stats(term))
    resource = term.evaluate("window.liveclass.resource")
    sessions = term.evaluate("window.liveclass.sessions")
    req = urllib.request.Request(resource + "/layer", data=json.dumps({"max_height": 180}).encode(),
                                 method="POST", headers={"Authorization": f"Bearer {server.token(room, 'terminal')}",
                                                         "Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=5) as r:
        assert json.load(r) == {"max_height": 180}
    t0 = time.monotonic()
    frames_at_cap = picture(term)[2]
    wait_until("320x180 after the cap", lambda: picture(term)[:2] == (320, 180), 5, 0.05,
               detail=lambda: stats(term))
    switch_s = time.monotonic() - t0
    time.sleep(1)
    assert picture(term)[2] - frames_at_cap >= 20          # still playing across the switch
    assert term.evaluate("window.liveclass.sessions") == sessions  # same session: no renegotiation
    assert switch_s < 2.0, f"switch took {switch_s:.2f} s"
