"""Access tokens and the `liveclass token` command."""
from __future__ import annotations

import os
import subprocess
import sys
import time

import jwt
import pytest

from signaling.tokens import ROLES, TokenError, mint, verify

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
