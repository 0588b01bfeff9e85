"""The production layout: Debian's `docker-compose config` accepts docker-compose.yml with the environment it
documents (and names a missing variable); the services are wired as documented (nodes only behind the TLS front,
TURN over UDP, TCP and TLS handed to pages); Debian's Caddy accepts deploy/Caddyfile with the layout's
environment; and Debian's coturn starts with the layout's own entrypoint and options and answers TURN over TLS
with the certificate it was given. No Docker engine is needed."""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import time
from pathlib import Path

import pytest

from testkit.certs import LocalCA
from testkit.netns import LinkNamespace, call_in, unavailable_reason

yaml = pytest.importorskip("yaml")

REPO = Path(__file__).resolve().parents[2]
ENV = {"LIVECLASS_SECRET": "s" * 32, "TURN_SECRET": "t" * 32, "PUBLIC_IP": "203.0.113.7",
       "PUBLIC_HOST": "class.example.org"}
LAYOUT_VARS = ("CADDY_TLS", "CADDY_CERT_ISSUER", "TURN_TLS_PORT", "NODE1_REGION", "NODE2_REGION",
               "LIVECLASS_CLUSTER_FORWARD")

pytestmark = pytest.mark.skipif(shutil.which("docker-compose") is None,
                                reason="needs Debian's docker-compose (scripts/test.sh installs it)")


def _config(env: dict[str, str]) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if k not in ENV and k not in LAYOUT_VARS}
    return subprocess.run(["docker-compose", "-f", str(REPO / "docker-compose.yml"), "config"],
                          capture_output=True, text=True, timeout=60, env={**clean, **env}, cwd=REPO)


def _services(env: dict[str, str]) -> dict:
    r = _config(env)
    assert r.returncode == 0, r.stderr
    return yaml.safe_load(r.stdout)["services"]


def _flag(command: list[str], name: str) -> str:
    values = [c.split("=", 1)[1] for c in command if c.startswith(name + "=")]
    assert len(values) == 1, (name, command)
    return values[0]


def test_compose_file_is_accepted_with_its_environment():
    services = _services(ENV)
    assert set(services) == {"redis", "node1", "node2", "caddy", "coturn"}
    for i, name in enumerate(("node1", "node2")):
        node = services[name]
        env = node["environment"]
        # the nodes' own HTTP ports are for Caddy only; pages and redirects use the front's https URL
        assert node["command"][:4] == ["--host", "127.0.0.1", "--port", f"808{i + 1}"], node["command"]
        assert env["LIVECLASS_ADVERTISE_URL"] == f"http://127.0.0.1:808{i + 1}"
        assert env["LIVECLASS_PUBLIC_URL"] == "https://class.example.org"
        assert env["LIVECLASS_BEHIND_PROXY"] == "1" and env["LIVECLASS_CLUSTER_FORWARD"] == "proxy"
        assert env["LIVECLASS_REGION"] == "central"
        assert env["LIVECLASS_TURN_SECRET"] == ENV["TURN_SECRET"]   # the same secret as coturn's
        assert env["LIVECLASS_TURN_URL"].split(",") == [
            "turn:class.example.org:3478?transport=udp", "turn:class.example.org:3478?transport=tcp",
            "turns:class.example.org:5349?transport=tcp"]
    caddy = services["caddy"]
    assert caddy["environment"]["PUBLIC_HOST"] == "class.example.org"
    assert any(v.endswith("deploy/Caddyfile:/etc/caddy/Caddyfile:ro") for v in caddy["volumes"]), caddy["volumes"]
    turn = services["coturn"]["command"]
    assert _flag(turn, "--static-auth-secret") == ENV["TURN_SECRET"] and "--use-auth-secret" in turn
    assert _flag(turn, "--tls-listening-port") == "5349"
    store = "/caddy/caddy/certificates/acme-v02.api.letsencrypt.org-directory/class.example.org/class.example.org"
    assert (_flag(turn, "--cert"), _flag(turn, "--pkey")) == (store + ".crt", store + ".key")

    provincial = _services({**ENV, "NODE2_REGION": "province-west", "TURN_TLS_PORT": "443",
                            "CADDY_TLS": "tls internal", "CADDY_CERT_ISSUER": "local"})
    assert provincial["node2"]["environment"]["LIVECLASS_REGION"] == "province-west"
    assert provincial["node1"]["environment"]["LIVECLASS_TURN_URL"].endswith("turns:class.example.org:443?transport=tcp")
    assert provincial["caddy"]["environment"]["CADDY_TLS"] == "tls internal"
    assert "/certificates/local/class.example.org/" in _flag(provincial["coturn"]["command"], "--cert")
    from signaling.media.ice_servers import config_from_options
    turn_config = config_from_options(None, None, {"LIVECLASS_TURN_URL": services["node1"]["environment"]["LIVECLASS_TURN_URL"],
                                                   "LIVECLASS_TURN_SECRET": ENV["TURN_SECRET"]}.get)
    assert turn_config is not None and len(turn_config.urls) == 3   # what the nodes will parse


def test_compose_file_names_a_missing_turn_secret():
    r = _config({k: v for k, v in ENV.items() if k != "TURN_SECRET"})
    assert r.returncode != 0 and "TURN_SECRET" in r.stderr


def test_compose_file_names_a_missing_secret():
    r = _config({k: v for k, v in ENV.items() if k != "LIVECLASS_SECRET"})
    assert r.returncode != 0 and "LIVECLASS_SECRET" in r.stderr


@pytest.mark.skipif(shutil.which("caddy") is None, reason="needs Debian's caddy (scripts/test.sh installs it)")
@pytest.mark.parametrize("tls, issuer", [("", "acme"), ("tls internal", "internal")])
def test_caddy_accepts_the_front_and_proxies_to_both_nodes(tls: str, issuer: str):
    caddy = _services({**ENV, "CADDY_TLS": tls})["caddy"]["environment"]
    r = subprocess.run(["caddy", "adapt", "--config", str(REPO / "deploy" / "Caddyfile"), "--adapter", "caddyfile"],
                       capture_output=True, text=True, timeout=30, env={**os.environ, **{k: str(v) for k, v in caddy.items()}})
    assert r.returncode == 0, r.stderr
    config = json.loads(r.stdout)
    server = next(iter(config["apps"]["http"]["servers"].values()))
    assert server["listen"] == [":443"]
    route = server["routes"][0]
    assert route["match"] == [{"host": ["class.example.org"]}]
    proxy = route["handle"][0]["routes"][0]["handle"][0]
    assert proxy["handler"] == "reverse_proxy"
    assert [u["dial"] for u in proxy["upstreams"]] == ["127.0.0.1:8081", "127.0.0.1:8082"]
    assert proxy["health_checks"]["active"]["uri"] == "/healthz"
    policies = config["apps"].get("tls", {}).get("automation", {}).get("policies", [])
    internal = any(i.get("module") == "internal" for p in policies for i in p.get("issuers", []))
    assert internal == (issuer == "internal"), policies


@pytest.mark.skipif(shutil.which("turnserver") is None, reason="needs Debian's coturn (scripts/test.sh installs it)")
@pytest.mark.skipif(unavailable_reason() is not None, reason=str(unavailable_reason()))
def test_coturn_runs_with_the_layouts_entrypoint_and_serves_turn_over_tls(tmp_path: Path):
    """The layout's coturn argv, run in a namespace of its own (its fixed ports are free there): the certificate
    paths point into a copy of Caddy's store made here."""
    coturn = _services(ENV)["coturn"]
    store = tmp_path / "caddy-data"
    ca = LocalCA(tmp_path / "ca")
    with LinkNamespace() as ns:
        cert, key = ca.issue(["class.example.org", ns.ns_ip], "turn")
        site = store / "caddy" / "certificates" / "acme-v02.api.letsencrypt.org-directory" / "class.example.org"
        site.mkdir(parents=True)
        shutil.copy(cert, site / "class.example.org.crt")
        shutil.copy(key, site / "class.example.org.key")
        argv = [a.replace("$$", "$") for a in coturn["entrypoint"]] + [
            a.replace("/caddy/", f"{store}/", 1) for a in coturn["command"]]
        assert argv[0] == "sh" and shutil.which("turnserver")
        log = tmp_path / "coturn.log"
        proc = subprocess.Popen(ns.command(argv), stdout=open(log, "wb"), stderr=subprocess.STDOUT,
                                start_new_session=True)
        try:
            port = int(_flag(coturn["command"], "--tls-listening-port"))
            deadline = time.monotonic() + 10
            der = None
            while der is None:
                assert proc.poll() is None, log.read_text(errors="replace")[-2000:]
                assert time.monotonic() < deadline, log.read_text(errors="replace")[-2000:]
                try:
                    der = _tls_hello(ns, port, ca.cert_path)
                except OSError:
                    time.sleep(0.2)
            assert der == ssl.PEM_cert_to_DER_cert(cert.read_text().split("-----END CERTIFICATE-----")[0]
                                                   + "-----END CERTIFICATE-----\n")
            turnserver = _child(proc.pid, "turnserver")
            os.kill(turnserver, signal.SIGUSR2)   # what the hourly reload sends: coturn reloads and goes on
            time.sleep(0.5)
            assert _tls_hello(ns, port, ca.cert_path) == der
            proc.terminate()   # `docker stop`: the wrapper passes SIGTERM on to turnserver and exits with it
            proc.wait(10)
            assert not Path(f"/proc/{turnserver}").exists() or "zombie" in Path(f"/proc/{turnserver}/status").read_text()
        finally:
            try:
                os.killpg(proc.pid, signal.SIGKILL)   # the wrapper's hourly reloader too
            except ProcessLookupError:
                pass
            proc.wait(5)


def _child(pid: int, name: str) -> int:
    """The pid of `pid`'s child process called `name`."""
    for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split():
        if Path(f"/proc/{child}/comm").read_text().strip() == name:
            return int(child)
    raise AssertionError(f"no {name} under {pid}")


def _tls_hello(ns: LinkNamespace, port: int, cafile: Path) -> bytes:
    """The certificate a TLS client inside the namespace is shown on `port`, verified with `cafile`."""
    def hello() -> bytes:
        ctx = ssl.create_default_context(cafile=str(cafile))
        with socket.create_connection(("127.0.0.1", port), timeout=2) as raw:
            with ctx.wrap_socket(raw, server_hostname="class.example.org") as tls:
                return tls.getpeercert(binary_form=True)
    return call_in(ns.name, hello, timeout=10)
