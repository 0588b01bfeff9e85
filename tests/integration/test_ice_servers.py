"""TURN REST credentials: the pure credential function against known vectors, the option checks, and
GET /api/ice-servers on real `liveclass serve` processes with and without TURN configured."""
from __future__ import annotations

import base64
import hashlib
import hmac
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import pytest

from signaling.auth.tokens import mint
from signaling.media.ice_servers import TurnConfig, TurnConfigError, config_from_options, credential, ice_servers
from testkit.server import REPO, ServerProcess

TURN_SECRET = "north-turn-secret-0123456789"


# ---- pure -------------------------------------------------------------------------------------------------------

def test_credential_matches_known_vectors() -> None:
    # expected values computed independently:
    #   printf '%s' "1700003600:school1" | openssl dgst -sha1 -hmac "north-turn-secret-0123456789" -binary | base64
    assert credential(TURN_SECRET, "school1", 1_700_000_000.9, 3600) == (
        "1700003600:school1", "vjD792oBEYnBY5hAgs3bvd9nJVE=")
    assert credential("t-secret-0123456789abcdef", "teacher", 1_700_000_000, 86400) == (
        "1700086400:teacher", "saNacHVRnzaP+aj3O+iz4mFhAjU=")


def test_credential_is_what_coturn_checks() -> None:
    """coturn use-auth-secret: password = base64(HMAC-SHA1(static-auth-secret, username)), expiry before ':'."""
    user, password = credential(TURN_SECRET, "id:with:colons", 100.0, 50)
    assert user.split(":", 1) == ["150", "id:with:colons"]
    assert base64.b64decode(password) == hmac.new(TURN_SECRET.encode(), user.encode(), hashlib.sha1).digest()


def test_ice_servers_body() -> None:
    cfg = TurnConfig.build(["turn:turn.example.org:3478?transport=udp,turn:turn.example.org:3478?transport=tcp"],
                           TURN_SECRET, ttl_s=600)
    body = ice_servers(cfg, "school1", 1000.0)
    assert body == {"iceServers": [{"urls": ["turn:turn.example.org:3478?transport=udp",
                                             "turn:turn.example.org:3478?transport=tcp"],
                                    "username": "1600:school1",
                                    "credential": credential(TURN_SECRET, "school1", 1000.0, 600)[1]}],
                    "ttl": 600}
    assert ice_servers(None, "school1", 1000.0) == {"iceServers": [], "ttl": 0}


@pytest.mark.parametrize("urls, secret, reason", [
    (["turn:h:3478"], None, "needs --turn-secret"),
    ([], TURN_SECRET, "needs --turn-url"),
    (["http://h:3478"], TURN_SECRET, "must be a turn:"),
    (["turn:"], TURN_SECRET, "must be a turn:"),
    (["turn:h:3478"], "short", "at least 16"),
])
def test_bad_turn_options_are_refused(urls, secret, reason) -> None:
    with pytest.raises(TurnConfigError, match=reason):
        TurnConfig.build(urls, secret)


def test_options_fall_back_to_environment() -> None:
    env = {"LIVECLASS_TURN_URL": "turn:a:3478, turns:a:5349", "LIVECLASS_TURN_SECRET": TURN_SECRET}
    assert config_from_options(None, None, env.get) == TurnConfig(("turn:a:3478", "turns:a:5349"), TURN_SECRET)
    assert config_from_options(["turn:b:3478"], None, env.get).urls == ("turn:b:3478",)
    assert config_from_options(None, None, {}.get) is None


# ---- real servers -----------------------------------------------------------------------------------------------

async def _get(url: str, **kw) -> tuple[int, dict, object]:
    async with aiohttp.ClientSession() as s:
        async with s.get(url, **kw) as r:
            body = await r.json() if r.content_type == "application/json" else await r.text()
            return r.status, dict(r.headers), body


async def test_endpoint_hands_out_working_credentials(tmp_path: Path) -> None:
    srv = ServerProcess(extra=("--turn-url", "turn:127.0.0.1:3478", "--turn-url", "turns:127.0.0.1:5349",
                               "--turn-secret", TURN_SECRET), log_path=tmp_path / "server.log")
    try:
        url = srv.base_url + "/api/ice-servers"
        token = srv.token("physics", "terminal", identity="school1")
        before = time.time()
        status, headers, body = await _get(url, params={"room": "physics"},
                                           headers={"Authorization": f"Bearer {token}"})
        assert status == 200 and headers["Cache-Control"] == "no-store"
        (server,) = body["iceServers"]
        assert server["urls"] == ["turn:127.0.0.1:3478", "turns:127.0.0.1:5349"] and body["ttl"] == 12 * 3600
        expiry, identity = server["username"].split(":", 1)
        assert identity == "school1" and before + body["ttl"] - 1 <= int(expiry) <= time.time() + body["ttl"]
        expected = base64.b64encode(hmac.new(TURN_SECRET.encode(), server["username"].encode(),
                                             hashlib.sha1).digest()).decode()
        assert server["credential"] == expected
        status, _, body = await _get(url, params={"room": "physics", "token": token})  # ?token= works too
        assert status == 200 and body["iceServers"][0]["username"].endswith(":school1")

        assert (await _get(url, params={"room": "physics"}))[0] == 401
        assert (await _get(url, params={"room": "physics", "token": "garbage"}))[0] == 401
        assert (await _get(url, params={"room": "physics"}, headers={"Authorization": "Bearer x.y.z"}))[0] == 401
        forged = mint("another-secret-0123456789abcdef01234", "physics", "terminal")  # signed with another secret
        assert (await _get(url, params={"room": "physics", "token": forged}))[0] == 401
        assert (await _get(url, params={"room": "maths", "token": token}))[0] == 403
        assert (await _get(url, params={"token": token}))[0] == 400
    finally:
        srv.stop()


async def test_without_turn_the_list_is_empty(server) -> None:
    url = server.base_url + "/api/ice-servers"
    status, _, body = await _get(url, params={"room": "r1", "token": server.token("r1", "teacher")})
    assert (status, body) == (200, {"iceServers": [], "ttl": 0})
    assert (await _get(url, params={"room": "r1"}))[0] == 401


async def test_turn_from_environment(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("LIVECLASS_TURN_URL", "turn:127.0.0.1:3478?transport=udp,turn:127.0.0.1:3478?transport=tcp")
    monkeypatch.setenv("LIVECLASS_TURN_SECRET", TURN_SECRET)
    srv = ServerProcess(log_path=tmp_path / "server.log")
    try:
        status, _, body = await _get(srv.base_url + "/api/ice-servers",
                                     params={"room": "r1", "token": srv.token("r1", "teacher", identity="t")})
        assert status == 200 and len(body["iceServers"][0]["urls"]) == 2
    finally:
        srv.stop()


def test_serve_refuses_turn_url_without_secret() -> None:
    out = subprocess.run([sys.executable, "-m", "signaling.cli", "serve", "--secret", "s" * 32,
                          "--turn-url", "turn:h:3478"], cwd=REPO, capture_output=True, text=True, timeout=30,
                         env={"PATH": "/usr/bin:/bin"})
    assert out.returncode == 2 and "--turn-url needs --turn-secret" in out.stderr
