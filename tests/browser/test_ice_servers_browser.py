"""The pages' peer connections get the TURN servers of /api/ice-servers: real headless Chromium
importing client_web/js/whip-client.js from a real `liveclass serve`, with and without TURN configured."""
from __future__ import annotations

from pathlib import Path

import pytest

from testkit.server import ServerProcess

sync_api = pytest.importorskip("playwright.sync_api")
from testkit.chromium import BrowserPool  # noqa: E402

TURN_SECRET = "north-turn-secret-0123456789"
NEGOTIATE = """async ([room, token]) => {
  const m = await import('/js/whip-client.js');
  const pc = m.newPeerConnection();
  pc.addTransceiver('video', { direction: 'recvonly' });
  let error = null;
  try { await m.negotiate(pc, m.endpointUrl('whep', room), token, { timeoutMs: 5000 }); }
  catch (e) { error = String(e); }
  const servers = pc.getConfiguration().iceServers;
  pc.close();
  return { servers, error };
}"""


def test_negotiate_adds_the_turn_servers_only_when_there_are_some(tmp_path: Path) -> None:
    turn = ServerProcess(extra=("--turn-url", "turn:127.0.0.1:3478?transport=udp", "--turn-secret", TURN_SECRET),
                         log_path=tmp_path / "turn.log")
    plain = ServerProcess(log_path=tmp_path / "plain.log")
    try:
        with sync_api.sync_playwright() as p, BrowserPool(p, tmp_path) as pool:
            page = pool.open(turn.base_url + "/healthz", "page")
            got = page.evaluate(NEGOTIATE, ["r1", turn.token("r1", "terminal", identity="school1")])
            (server,) = got["servers"]
            assert server["urls"] == ["turn:127.0.0.1:3478?transport=udp"], got
            assert server["username"].endswith(":school1") and server["credential"], got
            page.goto(plain.base_url + "/healthz")
            got = page.evaluate(NEGOTIATE, ["r1", plain.token("r1", "terminal")])
            assert got["servers"] == [], got   # none configured: as before
            assert not pool.errors, pool.errors
    finally:
        turn.stop()
        plain.stop()
