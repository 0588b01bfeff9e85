"""The pages' OWN node killed under a running lesson: real headless Chromium (Debian's
/usr/bin/chromium through Playwright), a real redis-server and two real `liveclass serve --redis` node processes.

The teacher page and the classroom terminal page are both loaded from node a, and the room is placed on node a
(an empty cluster places on the smallest id). Node a is killed with SIGKILL: the pages' origin is gone with it.
The pages must move by themselves to node b, which they learnt from GET /api/cluster/nodes: the terminal decodes
the teacher's picture again within 5 s of the kill, every request (WHIP/WHEP, sessions, the room WebSocket) now
going cross-origin to node b, and both pages say in their status overlay that they use node b. The same with
the servers given in the page's address (`?servers=a,b`) instead of the node list.
(Node b proxies WHIP/WHEP: browsers drop Authorization when they follow a redirect to another origin.)
"""
from __future__ import annotations

import time
import urllib.parse
from pathlib import Path
from typing import Iterator

import pytest
import redis

from testkit.chromium import browser_marks, BrowserPool, wait_for
from testkit.redis_server import RedisServer
from testkit.server import ServerProcess

sync_api = pytest.importorskip("playwright.sync_api")

pytestmark = browser_marks(150)

ROOM = "own-node"
RECOVERY_LIMIT_S = 5.0

# the page's current session: how many sessions it has made, the frames decoded in this one, its server
PLAYING_SCRIPT = """
async () => {
  const lc = window.liveclass;
  const pc = lc && lc.pc;
  let frames = 0;
  if (pc && pc.connectionState !== "closed") {
    try {
      (await pc.getStats()).forEach((s) => { if (s.type === "inbound-rtp" && s.kind === "video") frames += s.framesDecoded || 0; });
    } catch (e) { /* closed meanwhile */ }
  }
  return { sessions: lc ? lc.sessions : 0, frames, state: lc ? lc.state : null, resource: lc ? lc.resource : null,
           server: lc ? lc.serverUrl : null };
}
"""


@pytest.fixture(scope="module")
def playwright():
    with sync_api.sync_playwright() as p:
        yield p


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[tuple[RedisServer, dict[str, ServerProcess]]]:
    r = RedisServer(log_dir=tmp_path)
    nodes: dict[str, ServerProcess] = {}
    try:
        for name in ("a", "b"):
            nodes[name] = ServerProcess(extra=("--redis", r.url, "--node-id", name, "--cluster-forward", "proxy"),
                                        log_path=tmp_path / f"node-{name}.log")
        db = redis.Redis.from_url(r.url, decode_responses=True)
        wait_for("both nodes registered", lambda: all(db.exists(f"liveclass:alive:{n}") for n in nodes), 10)
        yield r, nodes
    finally:
        for n in nodes.values():
            n.stop()
        r.stop()


def kill_and_wait_for_replay(node: ServerProcess, terminal, teacher, before: dict,
                             teacher_state_js: str = "window.liveclass.state") -> tuple[dict, float]:
    """SIGKILL `node`, then wait until the terminal decodes frames in a new session: (its state, seconds)."""
    node.proc.kill()
    killed = time.monotonic()
    node.proc.wait()

    def playing_again():
        p = terminal.evaluate(PLAYING_SCRIPT)
        return p if p["sessions"] > before["sessions"] and p["frames"] > 0 else None

    after = wait_for("the terminal decoding frames from a new session", playing_again, 20, 0.05,
                     detail=lambda: f"{terminal.evaluate(PLAYING_SCRIPT)}; teacher {teacher.evaluate(teacher_state_js)}")
    return after, time.monotonic() - killed


def page_url(node: ServerProcess, page: str, role: str, servers: tuple[ServerProcess, ...] = ()) -> str:
    q = {"room": ROOM, "token": node.token(ROOM, role)}
    if servers:
        q["servers"] = ",".join(s.base_url for s in servers)
    return f"{node.base_url}/{page}.html?" + urllib.parse.urlencode(q)


def label(node: ServerProcess, node_id: str, explicit: bool) -> str:
    """What the overlays show: host:port, and the node id when the page learnt it from the node list."""
    host = urllib.parse.urlsplit(node.base_url).netloc
    return host if explicit else f"{host} (node {node_id})"


@pytest.mark.parametrize("explicit", [False, True], ids=["node-list", "servers-param"])
def test_pages_loaded_from_the_killed_node_play_again_from_another_within_5_s(cluster, playwright, tmp_path,
                                                                               explicit) -> None:
    """node-list: the pages learn node b from GET /api/cluster/nodes; servers-param: `?servers=a,b` says it."""
    redis_server, nodes = cluster
    a, b = nodes["a"], nodes["b"]
    servers = (a, b) if explicit else ()
    db = redis.Redis.from_url(redis_server.url, decode_responses=True)
    with BrowserPool(playwright, tmp_path) as browsers:
        teacher = browsers.open(page_url(a, "teacher", "teacher", servers), "teacher")
        sync_api.expect(teacher.locator("#message")).to_contain_text("Camera ready", timeout=15_000)
        teacher.get_by_role("button", name="Go live").click()
        sync_api.expect(teacher.locator("#state")).to_have_text("Live", timeout=15_000)
        assert db.get(f"liveclass:room:{ROOM}") == "a", "the room should be placed on node a"
        # the page learnt its node's id from the node list: the overlay names it
        sync_api.expect(teacher.locator("#server-name")).to_have_text(f"Server {label(a, 'a', explicit)}",
                                                                     timeout=10_000)

        terminal = browsers.open(page_url(a, "terminal", "terminal", servers), "terminal")
        sync_api.expect(terminal.locator("#overlay")).to_be_hidden(timeout=15_000)
        before = wait_for("the terminal decoding frames", lambda: (lambda p: p if p["frames"] > 30 else None)(
            terminal.evaluate(PLAYING_SCRIPT)), 15)
        assert before["server"] == a.base_url
        sync_api.expect(terminal.locator("#lesson-status")).not_to_contain_text("Connecting", timeout=10_000)
        sync_api.expect(terminal.locator("#server-name")).to_have_text(label(a, "a", explicit), timeout=10_000)

        # SIGKILL: the pages' own origin is gone, nobody tells anyone
        after, recovered_s = kill_and_wait_for_replay(a, terminal, teacher, before,
                                                      "[window.liveclass.state, window.liveclass.serverUrl]")
        print(f"\n[{'?servers=' if explicit else 'node list'}] terminal loaded from the killed node decodes frames "
              f"again {recovered_s:.2f} s after kill -9, from {after['server']} "
              f"({after['sessions'] - before['sessions']} new session(s))")
        assert after["server"] == b.base_url and after["resource"].startswith(b.base_url + "/whep/")
        assert db.get(f"liveclass:room:{ROOM}") == "b", "the room should now be placed on node b"
        assert recovered_s < RECOVERY_LIMIT_S, f"the picture came back {recovered_s:.2f} s after the kill"

        # what people see: the classroom plays the lesson, the teacher is live again, both back in the room
        # (the room WebSocket, cross-origin to node b), and both say which server they use now
        sync_api.expect(terminal.locator("#overlay")).to_be_hidden(timeout=5_000)
        sync_api.expect(terminal.locator("#badge")).to_be_visible()
        sync_api.expect(teacher.locator("#state")).to_have_text("Live", timeout=5_000)
        assert teacher.evaluate("window.liveclass.resource").startswith(b.base_url + "/whip/")
        sync_api.expect(teacher.locator("#server-name")).to_have_text(f"Server {label(b, 'b', explicit)}")
        sync_api.expect(terminal.locator("#server-name")).to_have_text(label(b, "b", explicit))
        sync_api.expect(teacher.locator("#lesson-state")).to_have_text("Lesson not started", timeout=10_000)
        sync_api.expect(terminal.locator("#lesson-status")).not_to_contain_text("Connecting", timeout=10_000)
        assert teacher.evaluate("window.liveclass.lesson.connected") and terminal.evaluate(
            "window.liveclass.lesson.connected")
        gained = wait_for("more frames", lambda: (lambda p: p if p["frames"] > after["frames"] + 20 else None)(
            terminal.evaluate(PLAYING_SCRIPT)), 10)
        assert gained["sessions"] == after["sessions"], "the new session should hold"
        assert not browsers.errors, f"uncaught errors in the pages: {browsers.errors}"
