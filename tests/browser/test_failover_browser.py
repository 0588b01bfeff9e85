"""A cluster node killed under a running lesson, seen from the pages: real headless Chromium
(Debian's /usr/bin/chromium through Playwright), a real redis-server and two real `liveclass serve --redis`
node processes.

The teacher page and the classroom terminal page both connect to node b only (b proxies WHIP/WHEP: browsers
drop Authorization on a cross-origin redirect); the room is placed on node a (an empty cluster places on the
smallest id). Node a is killed with SIGKILL: nobody tells anyone. The pages must find the lesson again by
themselves: the terminal decodes the teacher's picture again within 5 s of the kill, the room is now on b, and
both pages show it as they did before.
"""
from __future__ import annotations

import urllib.parse

import pytest
import redis

from testkit.chromium import browser_marks, BrowserPool, wait_for
from testkit.server import ServerProcess
from tests.browser.test_page_failover_browser import (  # noqa: F401  (cluster, playwright: fixtures)
    PLAYING_SCRIPT, cluster, kill_and_wait_for_replay, playwright)

sync_api = pytest.importorskip("playwright.sync_api")

pytestmark = browser_marks(150)

ROOM = "failover"
RECOVERY_LIMIT_S = 5.0

def page_url(node: ServerProcess, page: str, role: str) -> str:
    return f"{node.base_url}/{page}.html?" + urllib.parse.urlencode({"room": ROOM, "token": node.token(ROOM, role)})


def test_pages_play_again_from_another_node_within_5_s_of_a_kill(cluster, playwright, tmp_path) -> None:
    redis_server, nodes = cluster
    a, b = nodes["a"], nodes["b"]
    db = redis.Redis.from_url(redis_server.url, decode_responses=True)
    with BrowserPool(playwright, tmp_path) as browsers:
        teacher = browsers.open(page_url(b, "teacher", "teacher"), "teacher")
        sync_api.expect(teacher.locator("#message")).to_contain_text("Camera ready", timeout=15_000)
        teacher.get_by_role("button", name="Go live").click()
        sync_api.expect(teacher.locator("#state")).to_have_text("Live", timeout=15_000)
        assert db.get(f"liveclass:room:{ROOM}") == "a", "the room should be placed on node a"

        terminal = browsers.open(page_url(b, "terminal", "terminal"), "terminal")
        sync_api.expect(terminal.locator("#overlay")).to_be_hidden(timeout=15_000)
        before = wait_for("the terminal decoding frames", lambda: (lambda p: p if p["frames"] > 30 else None)(
            terminal.evaluate(PLAYING_SCRIPT)), 15)
        sync_api.expect(terminal.locator("#lesson-status")).not_to_contain_text("Connecting", timeout=10_000)

        # SIGKILL: no goodbye to Redis, the pages or node b
        after, recovered_s = kill_and_wait_for_replay(a, terminal, teacher, before)
        print(f"\nterminal decodes frames again {recovered_s:.2f} s after kill -9 of the room's node "
              f"({after['sessions'] - before['sessions']} new session(s))")
        assert db.get(f"liveclass:room:{ROOM}") == "b", "the room should now be placed on node b"
        assert recovered_s < RECOVERY_LIMIT_S, f"the picture came back {recovered_s:.2f} s after the kill"

        # what people see: the classroom plays the lesson, the teacher is live, both are back in the room
        sync_api.expect(terminal.locator("#overlay")).to_be_hidden(timeout=5_000)
        sync_api.expect(terminal.locator("#badge")).to_be_visible()
        sync_api.expect(teacher.locator("#state")).to_have_text("Live", timeout=5_000)
        sync_api.expect(teacher.locator("#lesson-state")).to_have_text("Lesson not started", timeout=10_000)
        sync_api.expect(terminal.locator("#lesson-status")).not_to_contain_text("Connecting", timeout=10_000)
        gained = wait_for("more frames", lambda: (lambda p: p if p["frames"] > after["frames"] + 20 else None)(
            terminal.evaluate(PLAYING_SCRIPT)), 10)
        assert gained["sessions"] == after["sessions"], "the new session should hold"
        assert not browsers.errors, f"uncaught errors in the pages: {browsers.errors}"
