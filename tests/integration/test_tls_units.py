"""TLS of `liveclass serve`, without a browser: certificate checks and facts, reload in place (a real TLS server
on loopback and real handshakes), the self-signed certificate kept in the library, nodes' trust in each other,
`--behind-proxy`'s headers, and the command line's refusals."""
from __future__ import annotations

import asyncio
import datetime
import hashlib
import os
import socket
import ssl
import subprocess
import sys
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from signaling.http import self_signed
from signaling.http.forwarded import behind_proxy_middleware, forwarded_client, forwarded_scheme
from signaling.http.tls import ServerCertificate, TlsConfigError, certificate_info, client_context
from testkit.certs import LocalCA, leaf_der
from testkit.server import REPO, ServerProcess

NOW = datetime.datetime(2026, 12, 1, tzinfo=datetime.timezone.utc)


@pytest.fixture
def ca(tmp_path: Path) -> LocalCA:
    return LocalCA(tmp_path / "ca")


async def presented(port: int, cafile: Path, name: str = "127.0.0.1") -> bytes:
    ctx = ssl.create_default_context(cafile=str(cafile))
    reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=ctx, server_hostname=name)
    der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
    writer.close()
    return der


def test_certificate_facts_match_the_file(ca: LocalCA) -> None:
    cert, _ = ca.issue(["class.example.cn", "10.0.0.5"], "node")
    info = certificate_info(cert.read_bytes())
    assert info.names == ("class.example.cn", "10.0.0.5")
    assert info.sha256.replace(":", "").lower() == hashlib.sha256(leaf_der(cert)).hexdigest()
    assert "class.example.cn" in info.summary() and info.sha256 in info.summary()


@pytest.mark.parametrize("breakage, reason", [
    ("missing", "cannot read certificate"),
    ("garbage", "not a PEM certificate"),
    ("wrong-key", "do not make a usable pair"),
    ("huge", "not a PEM file"),
])
def test_unusable_certificates_are_refused_with_a_reason(ca: LocalCA, tmp_path: Path, breakage: str,
                                                         reason: str) -> None:
    cert, key = ca.issue(["127.0.0.1"], "a")
    _, other_key = ca.issue(["127.0.0.1"], "b")
    if breakage == "missing":
        cert = tmp_path / "nope.pem"
    elif breakage == "garbage":
        cert.write_text("hello")
    elif breakage == "wrong-key":
        key = other_key
    else:
        cert.write_bytes(b"x" * (2 << 20))
    with pytest.raises(TlsConfigError, match=reason):
        ServerCertificate(cert, key)


async def test_reload_serves_the_new_certificate_to_new_connections_and_keeps_open_ones(ca: LocalCA) -> None:
    cert, key = ca.issue(["127.0.0.1"], "live")
    first = leaf_der(cert)
    served = ServerCertificate(cert, key)
    held: list[asyncio.StreamWriter] = []

    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)
        while data := await reader.read(100):
            writer.write(data)
            await writer.drain()

    server = await asyncio.start_server(echo, "127.0.0.1", 0, ssl=served.context)
    port = server.sockets[0].getsockname()[1]
    try:
        ctx = ssl.create_default_context(cafile=str(ca.cert_path))
        reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=ctx, server_hostname="127.0.0.1")
        assert writer.get_extra_info("ssl_object").getpeercert(binary_form=True) == first

        renewed, renewed_key = ca.issue(["127.0.0.1", "renewed.example"], "renewed")
        cert.write_bytes(renewed.read_bytes())
        key.write_bytes(renewed_key.read_bytes())
        ok, detail = served.reload()
        assert ok and "renewed.example" in detail
        assert await presented(port, ca.cert_path) == leaf_der(renewed)
        writer.write(b"still here")        # the connection made before the reload goes on
        assert await asyncio.wait_for(reader.readexactly(10), 5) == b"still here"

        key.write_text("-----BEGIN PRIVATE KEY-----\nnot a key\n-----END PRIVATE KEY-----\n")
        ok, detail = served.reload()
        assert not ok and "usable pair" in detail
        assert await presented(port, ca.cert_path) == leaf_der(renewed)   # the running one stays
        writer.close()
    finally:
        for w in held:
            w.close()
        server.close()
        await server.wait_closed()


def test_a_key_in_the_certificate_file_and_a_chain(ca: LocalCA) -> None:
    cert, key = ca.issue(["127.0.0.1"], "combined")
    combined = cert.with_name("combined.pem")
    combined.write_bytes(cert.read_bytes() + key.read_bytes())
    assert ServerCertificate(combined).info.names == ("127.0.0.1",)


async def test_nodes_trust_each_other_through_a_shared_ca_or_their_own_certificate(ca: LocalCA,
                                                                                   tmp_path: Path) -> None:
    other, other_key = ca.issue(["127.0.0.1"], "other")
    server = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", 0,
                                        ssl=ServerCertificate(other, other_key).context)
    port = server.sockets[0].getsockname()[1]

    async def handshake(ctx: ssl.SSLContext) -> bool:
        try:
            _, w = await asyncio.open_connection("127.0.0.1", port, ssl=ctx, server_hostname="127.0.0.1")
        except ssl.SSLCertVerificationError:
            return False
        w.close()
        return True

    try:
        own, _ = ca.issue(["127.0.0.1"], "own")     # leaf + the CA: the chain trusts its siblings
        assert await handshake(client_context(trust_own=own))
        assert await handshake(client_context([ca.cert_path]))
        stranger = LocalCA(tmp_path / "stranger")
        assert not await handshake(client_context([stranger.cert_path]))
        # a self-signed certificate copied to every node: the leaf is its own anchor (partial chain)
        names = ["127.0.0.1"]
        paths, _ = self_signed.ensure(tmp_path / "lib", names, datetime.datetime.now(datetime.timezone.utc))
        server.close()
        await server.wait_closed()
        server = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", port,
                                            ssl=ServerCertificate(paths.cert, paths.key).context)
        assert await handshake(client_context(trust_own=paths.cert))
        assert not await handshake(client_context())
        with pytest.raises(TlsConfigError, match="cannot use CA file"):
            client_context([tmp_path / "missing.pem"])
    finally:
        server.close()
        await server.wait_closed()


# --- the self-signed certificate -----------------------------------------------------------------------------

def test_self_signed_plan_keeps_renews_or_extends() -> None:
    later = NOW + datetime.timedelta(days=200)
    names = ["localhost", "127.0.0.1", "school-server"]
    assert self_signed.plan(None, None, names, NOW) == "no certificate yet"
    assert self_signed.plan(names, later, names, NOW) is None
    assert self_signed.plan(names, later, ["SCHOOL-SERVER", "127.0.0.1"], NOW) is None   # DNS names: any case
    assert self_signed.plan(names, later, [*names, "10.0.0.9"], NOW) == "new names or addresses: 10.0.0.9"
    assert "expires on" in self_signed.plan(names, NOW + datetime.timedelta(days=10), names, NOW)


def test_node_names_cover_every_way_a_browser_reaches_the_node() -> None:
    names = self_signed.node_names("0.0.0.0", ["203.0.113.7", None, "[fd00::5]"], hostname="edu-node",
                                   addresses=["192.168.1.20", "fe80::1", "fd00::5"])
    assert names == sorted(["localhost", "127.0.0.1", "::1", "edu-node", "192.168.1.20", "fd00::5", "203.0.113.7"])


def test_self_signed_is_kept_and_renewed_with_the_same_key(tmp_path: Path) -> None:
    p, why = self_signed.ensure(tmp_path, ["localhost", "127.0.0.1"], NOW)
    assert why == "no certificate yet" and p.cert.parent == tmp_path / "tls"
    assert os.stat(p.key).st_mode & 0o777 == 0o600
    first = certificate_info(p.cert.read_bytes())
    assert self_signed.ensure(tmp_path, ["localhost", "127.0.0.1"], NOW) == (p, None)
    _, why = self_signed.ensure(tmp_path, ["localhost", "127.0.0.1", "10.1.2.3"], NOW)
    assert why == "new names or addresses: 10.1.2.3"
    second = certificate_info(p.cert.read_bytes())
    assert "10.1.2.3" in second.names and second.sha256 != first.sha256
    assert second.spki_sha256_b64 == first.spki_sha256_b64   # the same key: a pin on it still holds
    ServerCertificate(p.cert, p.key)                          # and the pair is usable


# --- --behind-proxy ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("value, scheme", [("https", "https"), ("HTTPS, http", "https"), ("ftp", None),
                                           ("", None), (None, None)])
def test_forwarded_scheme(value, scheme) -> None:
    assert forwarded_scheme(value) == scheme


@pytest.mark.parametrize("value, client", [
    ("203.0.113.9", "203.0.113.9"), ("1.2.3.4, 10.9.8.7", "10.9.8.7"), ("spoofed, 198.51.100.4:5150", "198.51.100.4"),
    ("[2001:db8::7]:443", "2001:db8::7"), ("2001:db8::8", "2001:db8::8"), ("unknown", None), ("", None),
])
def test_forwarded_client_takes_the_entry_the_front_added(value, client) -> None:
    assert forwarded_client(value) == client


async def test_behind_proxy_middleware_changes_scheme_and_remote_only_with_the_option() -> None:
    async def who(request: web.Request) -> web.Response:
        return web.json_response({"scheme": request.scheme, "remote": request.remote})

    headers = {"X-Forwarded-Proto": "https", "X-Forwarded-For": "evil, 203.0.113.50"}
    for middlewares, want in (([behind_proxy_middleware], {"scheme": "https", "remote": "203.0.113.50"}),
                              ([], {"scheme": "http", "remote": "127.0.0.1"})):
        app = web.Application(middlewares=middlewares)
        app.router.add_get("/", who)
        async with TestClient(TestServer(app)) as client:
            r = await client.get("/", headers=headers)
            assert await r.json() == want


# --- the command line ----------------------------------------------------------------------------------------

def _serve(*args: str, timeout: float = 20) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "signaling.cli", "serve", "--secret", "s" * 32, *args],
                          cwd=REPO, capture_output=True, text=True, timeout=timeout)


@pytest.mark.parametrize("args, reason", [
    (("--tls-key", "k.pem"), "--tls-key needs --tls-cert"),
    (("--tls-self-signed", "--tls-cert", "c.pem"), "leave out --tls-cert"),
    (("--tls-cert", "/nonexistent/cert.pem"), "cannot read certificate /nonexistent/cert.pem"),
])
def test_serve_refuses_bad_tls_options_with_a_reason(args, reason, tmp_path: Path) -> None:
    r = _serve("--library", str(tmp_path), *args)
    assert r.returncode == 2 and reason in r.stderr, (r.returncode, r.stderr)


def test_self_signed_serve_prints_https_pages_and_the_fingerprint_it_serves(tmp_path: Path) -> None:
    library = tmp_path / "library"
    logs = []
    for run in range(2):   # the second start keeps the first one's certificate
        cert = library / "tls" / "self-signed-cert.pem"
        server = ServerProcess(library=library, extra=("--tls-self-signed",), log_path=tmp_path / f"s{run}.log",
                               tls_ca=cert)
        try:
            assert server.http("/healthz") == (200, b"ok\n")
            der = asyncio.run(presented(server.port, cert))
        finally:
            server.stop()
        logs.append(server.log_tail(20000))
        fingerprint = ":".join(f"{b:02X}" for b in hashlib.sha256(der).digest())
        assert f"SHA-256 fingerprint {fingerprint}" in logs[-1], logs[-1]
        assert f"Teacher page:  https://127.0.0.1:{server.port}/teacher.html?room=demo&token=" in logs[-1]
    assert "made now: no certificate yet" in logs[0] and "kept from an earlier start" in logs[1]


def test_plain_http_on_a_lan_address_says_the_camera_needs_https(tmp_path: Path) -> None:
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    proc = subprocess.Popen([sys.executable, "-m", "signaling.cli", "serve", "--secret", "s" * 32, "--host", "0.0.0.0",
                             "--port", str(port), "--library", str(tmp_path), "--media-host", "127.0.0.1"],
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        out = ""
        while "Serving on" not in out:
            line = proc.stdout.readline()
            assert line, out
            out += line
    finally:
        proc.terminate()
        proc.wait(10)
    assert f"Teacher page:  http://127.0.0.1:{port}/teacher.html" in out
    assert "other machines need https" in out
