"""Access tokens and the `liveclass token` command."""
from __future__ import annotations

import os
import subprocess
import sys
import time

import jwt
import pytest

from signaling.auth.tokens import ROLES, TokenError, mint, verify

SECRET = "unit-secret-0123456789abcdef0123456789"


@pytest.mark.parametrize("role", ROLES)
def test_roundtrip_every_role(role):
    g = verify(SECRET, mint(SECRET, "math-101", role, ttl=60, name="Ms Li"))
    assert (g.room, g.role, g.name) == ("math-101", role, "Ms Li")
    assert g.can_subscribe
    assert g.can_publish == (role in ("teacher", "terminal", "admin"))


@pytest.mark.parametrize("make, message", [
    (lambda: None, "missing"),
    (lambda: "not.a.jwt", "invalid"),
    (lambda: mint("another-secret-0123456789abcdef0123", "r", "teacher"), "invalid"),
    (lambda: mint(SECRET, "r", "teacher", ttl=10, now=time.time() - 3600), "expired"),
    (lambda: jwt.encode({"sub": "x", "room": "r", "role": "teacher", "exp": time.time() + 60}, None,
                        algorithm="none"), "invalid"),
    (lambda: jwt.encode({"sub": "x", "room": "r", "role": "janitor", "exp": time.time() + 60}, SECRET,
                        algorithm="HS256"), "role"),
    (lambda: jwt.encode({"sub": "x", "room": "r", "role": "teacher"}, SECRET, algorithm="HS256"), "exp"),
])
def test_bad_tokens_are_refused(make, message):
    with pytest.raises(TokenError, match=message):
        verify(SECRET, make())


def test_token_cannot_widen_its_role():
    forged = jwt.encode({"sub": "s", "room": "r", "role": "student", "can_publish": True,
                         "sources": ["camera"], "exp": time.time() + 60}, SECRET, algorithm="HS256")
    g = verify(SECRET, forged)
    assert not g.can_publish and g.sources == ()


def test_cli_token_prints_a_verifiable_jwt():
    out = subprocess.run([sys.executable, "-m", "signaling.cli", "token", "--room", "r1", "--role", "terminal",
                          "--ttl", "120", "--name", "Village school"],
                         env={**os.environ, "LIVECLASS_SECRET": SECRET}, capture_output=True, text=True, check=True)
    g = verify(SECRET, out.stdout.strip())
    assert (g.room, g.role, g.name) == ("r1", "terminal", "Village school")
    assert 100 < g.expires - time.time() <= 120


def test_cli_token_without_secret_fails_clearly():
    env = {k: v for k, v in os.environ.items() if k != "LIVECLASS_SECRET"}
    out = subprocess.run([sys.executable, "-m", "signaling.cli", "token", "--room", "r1", "--role", "teacher"],
                         env=env, capture_output=True, text=True)
    assert out.returncode == 2 and "LIVECLASS_SECRET" in out.stderr


def test_tokens_may_narrow_a_role_but_never_widen_it():
    g = verify(SECRET, mint(SECRET, "r", "terminal", sources=["camera"]))
    assert g.may_publish("camera") and not g.may_publish("microphone") and not g.may_publish("screen")
    g = verify(SECRET, mint(SECRET, "r", "teacher", can_publish=False))
    assert not g.may_publish("camera") and g.can_subscribe
    assert not verify(SECRET, mint(SECRET, "r", "observer", can_subscribe=False)).can_subscribe
    with pytest.raises(ValueError, match="may not publish screen"):
        mint(SECRET, "r", "terminal", sources=["camera", "screen"])
    with pytest.raises(ValueError, match="may not publish"):
        mint(SECRET, "r", "student", can_publish=True)
    with pytest.raises(ValueError, match="admin"):
        mint(SECRET, "*", "teacher")
    assert verify(SECRET, mint(SECRET, "*", "admin")).allows_room("any-room")


def _cli_token(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "signaling.cli", "token", *args],
                          env={**os.environ, "LIVECLASS_SECRET": SECRET}, capture_output=True, text=True)


@pytest.mark.parametrize("args, publish, sources, subscribe", [
    (["--role", "terminal", "--sources", "camera"], True, ("camera",), True),
    (["--role", "teacher", "--sources", "camera,microphone"], True, ("camera", "microphone"), True),
    (["--role", "terminal", "--sources", ""], True, (), True),
    (["--role", "teacher", "--no-publish"], False, ("camera", "microphone", "screen"), True),
    (["--role", "observer", "--no-subscribe"], False, (), False),
])
def test_cli_token_grant_options(args, publish, sources, subscribe):
    out = _cli_token("--room", "r1", *args)
    assert out.returncode == 0, out.stderr
    g = verify(SECRET, out.stdout.strip())
    assert (g.can_publish, g.sources, g.can_subscribe) == (publish, sources, subscribe)


@pytest.mark.parametrize("args, message", [
    (["--room", "r1", "--role", "terminal", "--sources", "screen"], "may not publish screen"),
    (["--room", "r1", "--role", "student", "--sources", "camera"], "may not publish camera"),
    (["--room", "*", "--role", "teacher"], "admin"),
])
def test_cli_token_refuses_wider_grants(args, message):
    out = _cli_token(*args)
    assert out.returncode == 2 and message in out.stderr and not out.stdout
