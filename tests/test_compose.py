"""The production layout (issue 6): Debian's `docker-compose config` accepts docker-compose.yml with the
environment it documents, and refuses it, naming the variable, without. No Docker engine is needed."""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
ENV = {"LIVECLASS_SECRET": "s" * 32, "TURN_SECRET": "t" * 32, "PUBLIC_IP": "203.0.113.7",
       "PUBLIC_HOST": "class.example.org"}

pytestmark = pytest.mark.skipif(shutil.which("docker-compose") is None,
                                reason="needs Debian's docker-compose (scripts/test.sh installs it)")


def _config(env: dict[str, str]) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if k not in ENV}
    return subprocess.run(["docker-compose", "-f", str(REPO / "docker-compose.yml"), "config"],
                          capture_output=True, text=True, timeout=60, env={**clean, **env}, cwd=REPO)


def test_compose_file_is_accepted_with_its_environment():
    r = _config(ENV)
    assert r.returncode == 0, r.stderr
    out = r.stdout
    for service in ("redis:", "node1:", "node2:", "coturn:"):
        assert service in out
    assert "--static-auth-secret=" + ENV["TURN_SECRET"] in out and "--use-auth-secret" in out
    assert "LIVECLASS_REDIS_URL" in out and "http://class.example.org:8082" in out
    assert out.count("LIVECLASS_REGION: central") == 2, out   # one region unless NODE1/2_REGION say otherwise
    provincial = _config({**ENV, "NODE2_REGION": "province-west"})
    assert provincial.returncode == 0 and "LIVECLASS_REGION: province-west" in provincial.stdout
    # the nodes hand out credentials for this coturn, signed with the same secret
    assert out.count("LIVECLASS_TURN_SECRET: " + ENV["TURN_SECRET"]) == 2, out
    assert out.count("turn:class.example.org:3478?transport=udp,turn:class.example.org:3478?transport=tcp") == 2
    from signaling.ice_servers import config_from_options
    turn = config_from_options(None, None, {"LIVECLASS_TURN_URL": "turn:class.example.org:3478?transport=udp,"
                                                                  "turn:class.example.org:3478?transport=tcp",
                                            "LIVECLASS_TURN_SECRET": ENV["TURN_SECRET"]}.get)
    assert turn is not None and len(turn.urls) == 2  # what the nodes will parse


def test_compose_file_names_a_missing_turn_secret():
    r = _config({k: v for k, v in ENV.items() if k != "TURN_SECRET"})
    assert r.returncode != 0 and "TURN_SECRET" in r.stderr


def test_compose_file_names_a_missing_secret():
    r = _config({k: v for k, v in ENV.items() if k != "LIVECLASS_SECRET"})
    assert r.returncode != 0 and "LIVECLASS_SECRET" in r.stderr
