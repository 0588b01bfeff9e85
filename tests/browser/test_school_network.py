"""The lesson as a school meets it: the server in one network namespace (the district's server room), Debian's
Chromium in another (a school's PCs), joined by a veth pair whose addresses exist only inside the two. Nothing
is localhost to the browser, so the camera works only over https, exactly as on a real school network.

- over https (a CA the test makes, trusted by Chromium through its key's SPKI pin): the teacher page publishes,
  classroom terminals play it and send their cameras back, the room WebSocket is wss, a terminal whose user
  refused the camera still plays, and the lesson's recording replays over https;
- over plain http the teacher and terminal pages say why the camera is off and which https address to open,
  and the terminal plays the lesson anyway;
- the school's firewall lets no UDP out: the lesson arrives through coturn over TURN/TCP, and with the TURN TCP
  port shut too, over TURN/TLS;
- two cluster nodes in the default forwarding mode: an aiortc WHEP client that knows nothing of our cluster and a
  Chromium terminal both play through the node that does not hold the room;
- the certificate is replaced and SIGHUP'd during a lesson: new connections get the new one, the lesson plays on.
"""
from __future__ import annotations

import concurrent.futures
import json
import shutil
import socket
import ssl
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any, Iterator

import pytest

from testkit.certs import LocalCA, leaf_der
from testkit.chromium import browser_marks, INBOUND_VIDEO_SCRIPT, SELECTED_PAIR_SCRIPT, SchoolBrowser, wait_for
from testkit.media import make_clip
from testkit.netns import SchoolNetwork, unavailable_reason
from testkit.server import REPO, ServerProcess, free_port
from tests.conftest import CACHE

sync_api = pytest.importorskip("playwright.sync_api")
expect = sync_api.expect

TURNSERVER = shutil.which("turnserver")
pytestmark = [
    *browser_marks(240),
    pytest.mark.skipif(unavailable_reason() is not None, reason=str(unavailable_reason())),
]

ROOM = "geography-8"
TURN_SECRET = "county-turn-secret-0123456789"

# the teacher's grid: frames each classroom tile decoded
TILES = """
() => [...window.liveclass.tiles.values()].map((t) => ({ identity: t.identity, frames: t.player.totalFrames }))
"""


@pytest.fixture(scope="module")
def net() -> Iterator[SchoolNetwork]:
    with SchoolNetwork() as n:
        yield n


@pytest.fixture(scope="module")
def ca(tmp_path_factory) -> LocalCA:
    return LocalCA(tmp_path_factory.mktemp("ca"))


@pytest.fixture(scope="module")
def playwright():
    with sync_api.sync_playwright() as p:
        yield p


@pytest.fixture(scope="module")
def clip() -> Path:
    return make_clip(CACHE / "clip-640x360-4s-v1.webm", seconds=4.0)


@pytest.fixture(scope="module", autouse=True)
def own_ice_addresses() -> None:
    """The aiortc peers this process runs in a namespace gather that namespace's own addresses (an in-process SFU
    of an earlier test module may have narrowed aioice's gathering for the whole process)."""
    from sfu.webrtc import aiortc_adapter
    aiortc_adapter.configure_host_addresses(None)


@pytest.fixture(autouse=True)
def open_firewall(net: SchoolNetwork) -> Iterator[None]:
    net.open_firewall()
    yield
    net.open_firewall()


def tls_server(net: SchoolNetwork, ca: LocalCA, workdir: Path, *extra: str, stem: str = "server") -> ServerProcess:
    cert, key = ca.issue([net.server_ip], stem)
    return ServerProcess(host=net.server_ip, media_hosts=(net.server_ip,), netns=net.names["server"],
                         tls_ca=ca.cert_path, log_path=workdir / f"{stem}.log",
                         extra=("--tls-cert", str(cert), "--tls-key", str(key), *extra))


def page_url(server: ServerProcess, page: str, token: str, **query: str) -> str:
    return f"{server.base_url}/{page}.html?" + urllib.parse.urlencode({"room": ROOM, "token": token, **query})


def video(page: Any) -> dict:
    return page.evaluate(INBOUND_VIDEO_SCRIPT)


def wait_playing(page: Any, what: str, frames: int = 30, timeout: float = 30) -> dict:
    """Wait until the page's player has decoded `frames` more frames than now; its last stats."""
    start = video(page)["frames"]
    return wait_for(what, lambda: (lambda v: v if v["frames"] >= start + frames and v["width"] else None)(video(page)),
                    timeout, 0.25, detail=lambda: video(page))


def school_get(net: SchoolNetwork, ca: LocalCA, url: str) -> tuple[int, Any]:
    """GET from inside the school's network, trusting the test CA: (status, parsed JSON or bytes)."""
    def get() -> tuple[int, Any]:
        ctx = ssl.create_default_context(cafile=str(ca.cert_path))
        try:
            with urllib.request.urlopen(url, timeout=5, context=ctx) as r:
                body, status = r.read(), r.status
        except urllib.error.HTTPError as e:
            body, status = e.read(), e.code
        try:
            return status, json.loads(body)
        except ValueError:
            return status, body
    return net.call("school", get)


def presented_certificate(net: SchoolNetwork, ca: LocalCA, port: int) -> bytes:
    """The leaf certificate (DER) the server presents to a new connection from the school, verified."""
    def handshake() -> bytes:
        ctx = ssl.create_default_context(cafile=str(ca.cert_path))
        with socket.create_connection((net.server_ip, port), timeout=5) as raw:
            with ctx.wrap_socket(raw, server_hostname=net.server_ip) as tls:
                return tls.getpeercert(binary_form=True)
    return net.call("school", handshake)


def publisher(server: ServerProcess, net: SchoolNetwork, clip: Path, base_url: str = ""):
    """The teacher's camera as a one-layer aiortc WHIP publisher in the server room (an OBS-like encoder)."""
    from testkit.capped_link import ClipPublisher
    return ClipPublisher(base_url or server.base_url, ROOM, server.token(ROOM, "teacher"), clip,
                         netns=net.names["server"], ssl_context=server.ssl_context())


# --- https: the whole lesson ---------------------------------------------------------------------------------

def test_https_lesson_with_classroom_cameras_wss_and_replay(net, ca, playwright, tmp_path):
    server = tls_server(net, ca, tmp_path, "--record", ROOM)
    try:
        with SchoolBrowser(playwright, net.names["school"], tmp_path, [ca.spki_pin]) as school:
            teacher = school.open(page_url(server, "teacher", server.token(ROOM, "teacher", name="Ms Li")), "teacher")
            assert teacher.evaluate("window.isSecureContext") is True
            expect(teacher.locator("#message")).to_contain_text("Camera ready", timeout=15_000)
            teacher.locator("#go-live").click()
            expect(teacher.locator("#state")).to_have_text("Live", timeout=15_000)
            expect(teacher.locator("#lesson-start")).to_be_enabled(timeout=10_000)
            teacher.locator("#lesson-start").click()

            terminals = {}
            for i, camera in ((1, True), (2, True), (3, False)):   # school 3's user refused the camera
                token = server.token(ROOM, "terminal", identity=f"school-{i}", name=f"School {i}")
                terminals[i] = school.open(page_url(server, "terminal", token), f"terminal-{i}", camera=camera)
            for i, page in terminals.items():
                wait_playing(page, f"terminal {i} playing the teacher over https")

            # the teacher's grid shows the two classrooms that send their cameras
            def grid() -> dict[str, int]:
                return {t["identity"]: t["frames"] for t in teacher.evaluate(TILES)}
            wait_for("the classroom cameras of schools 1 and 2 in the teacher's grid",
                     lambda: grid().get("school-1", 0) > 20 and grid().get("school-2", 0) > 20, 30, 0.5, detail=grid)
            expect(terminals[3].locator("#camera-state")).to_contain_text("No camera or microphone")
            wait_playing(terminals[3], "terminal 3 (camera refused) still playing")

            for name in ("teacher", "terminal-1", "terminal-2", "terminal-3"):
                urls = school.websockets.get(name, [])
                assert urls and all(u.startswith(f"wss://{net.server_ip}:{server.port}/ws/") for u in urls), urls
            assert not [r for r in school.responses if r[3].startswith("http:")], "a plain-http request was made"

            time.sleep(3)  # a few seconds more of recorded lesson
            teacher.locator("#lesson-end").click()
            lesson = wait_for("the lesson in the library", lambda: next(
                (x for x in school_get(net, ca, f"{server.base_url}/api/library")[1]["lessons"]
                 if x["state"] == "ready"), None), 30, 0.5)
            assert lesson["duration_s"] > 5, lesson

            replay = school.open(f"{server.base_url}/replay.html?lesson={lesson['id']}", "student")
            expect(replay.locator("#player")).to_be_visible()
            replay.evaluate("document.querySelector('#video').play()")
            state = "() => { const v = document.querySelector('#video'); return { t: v.currentTime, w: v.videoWidth, d: v.duration, e: v.error && v.error.code }; }"
            wait_for("the recording playing over https", lambda: replay.evaluate(state)["t"] > 1.5, 15,
                     detail=lambda: replay.evaluate(state))
            replay.evaluate("document.querySelector('#video').currentTime = 1.0")
            wait_for("a seek in the recording", lambda: (lambda s: s["t"] < 2.0 and s["w"] > 0)(replay.evaluate(state)),
                     5, detail=lambda: replay.evaluate(state))
            assert not school.errors, school.errors
    finally:
        server.stop()


# --- plain http: the pages say why ---------------------------------------------------------------------------

def test_plain_http_pages_explain_the_camera_and_the_lesson_still_plays(net, playwright, clip, tmp_path):
    server = ServerProcess(host=net.server_ip, media_hosts=(net.server_ip,), netns=net.names["server"],
                           log_path=tmp_path / "server.log")
    try:
        with publisher(server, net, clip), SchoolBrowser(playwright, net.names["school"], tmp_path) as school:
            teacher = school.open(page_url(server, "teacher", server.token(ROOM, "teacher")), "teacher")
            expect(teacher.locator("#message")).to_contain_text("plain http", timeout=10_000)
            https = teacher.evaluate("location.href").replace(f"http://{net.server_ip}:", f"https://{net.server_ip}:", 1)
            expect(teacher.locator("#message a.https-link")).to_have_attribute("href", https)
            expect(teacher.locator("#go-live")).to_be_disabled()
            assert teacher.evaluate("window.liveclass.captureBlocked") is True
            # the teacher's console still runs the lesson over plain ws
            expect(teacher.locator("#lesson-start")).to_be_enabled(timeout=10_000)
            teacher.locator("#lesson-start").click()

            token = server.token(ROOM, "terminal", identity="school-9", name="School 9")
            terminal = school.open(page_url(server, "terminal", token), "terminal")
            wait_playing(terminal, "the terminal playing over plain http")
            camera = terminal.locator("#camera-state")
            expect(camera).to_contain_text("Camera off", timeout=10_000)
            expect(camera.locator("a.https-link")).to_have_attribute(
                "href", terminal.evaluate("location.href").replace("http://", "https://", 1))
            wait_playing(terminal, "the terminal still playing after its camera was refused")
            assert not school.errors, school.errors
    finally:
        server.stop()


# --- TURN over TCP and TLS when the school lets no UDP out -------------------------------------------------------

class Coturn:
    """Debian's coturn in the server room on free ports, TURN REST auth with the test secret, TLS with the
    server's certificate."""

    def __init__(self, net: SchoolNetwork, cert: Path, key: Path, workdir: Path) -> None:
        self.port, self.tls_port = free_port(), free_port()
        self.log = workdir / "turnserver.log"
        self.proc = subprocess.Popen(net.command("server", [
            TURNSERVER or "turnserver", "-n", f"--listening-ip={net.server_ip}", f"--relay-ip={net.server_ip}",
            f"--listening-port={self.port}", f"--tls-listening-port={self.tls_port}",
            f"--cert={cert}", f"--pkey={key}", "--no-tlsv1", "--no-tlsv1_1", "--no-dtls",
            "--use-auth-secret", f"--static-auth-secret={TURN_SECRET}", "--realm=liveclass", "--fingerprint",
            "--no-cli", "--min-port=49160", "--max-port=49200", "--log-file=stdout", "--simple-log",
            f"--pidfile={workdir / 'turnserver.pid'}"]), stdout=open(self.log, "wb"), stderr=subprocess.STDOUT)
        def listening() -> bool:
            with socket.socket() as s:
                s.settimeout(0.5)
                return s.connect_ex((net.server_ip, self.tls_port)) == 0
        wait_for("coturn listening", lambda: self.proc.poll() is None and net.call("server", listening), 10, 0.2,
                 detail=lambda: self.log.read_text(errors="replace")[-1000:])

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()


@pytest.mark.skipif(TURNSERVER is None, reason="needs Debian's coturn (scripts/test.sh installs it)")
def test_udp_blocked_school_gets_the_lesson_over_turn_tcp_then_turn_tls(net, ca, playwright, clip, tmp_path):
    cert, key = ca.issue([net.server_ip], "turn")
    turn = Coturn(net, cert, key, tmp_path)
    server = tls_server(net, ca, tmp_path, "--turn-secret", TURN_SECRET,
                        "--turn-url", f"turn:{net.server_ip}:{turn.port}?transport=tcp",
                        "--turn-url", f"turns:{net.server_ip}:{turn.tls_port}?transport=tcp")
    try:
        with publisher(server, net, clip), SchoolBrowser(playwright, net.names["school"], tmp_path,
                                                         [ca.spki_pin]) as school:
            net.block_outbound_udp()
            url = page_url(server, "terminal", server.token(ROOM, "terminal", identity="school-tcp"))
            terminal = school.open(url, "terminal")
            wait_playing(terminal, "the lesson over TURN/TCP", timeout=40)
            pair = terminal.evaluate(SELECTED_PAIR_SCRIPT)
            assert pair["local_type"] == "relay" and pair["relay_protocol"] == "tcp", pair

            net.block_outbound_udp(also_tcp_ports=[turn.port])   # only TLS gets out now
            terminal.reload()
            wait_playing(terminal, "the lesson over TURN/TLS", timeout=40)
            pair = terminal.evaluate(SELECTED_PAIR_SCRIPT)
            assert pair["local_type"] == "relay" and pair["relay_protocol"] == "tls", pair
            counters = net.firewall_counters()
            assert "udp counter packets 0 " not in counters, counters   # the firewall really dropped UDP
            assert not school.errors, school.errors
    finally:
        server.stop()
        turn.stop()


# --- two nodes, the default forwarding mode ------------------------------------------------------------------

def test_cross_node_whep_works_for_any_client_in_the_default_mode(net, ca, playwright, clip, tmp_path):
    """Nodes a and b (one region) and c (another), all https: an aiortc client that knows nothing of our cluster
    plays through b (which proxies to a, the room's node) and through c (which serves it as an edge over an
    https-signalled relay link from a); a Chromium terminal plays through b."""
    from testkit.redis_server import RedisServer
    redis = RedisServer(log_dir=tmp_path / "redis", netns=net.names["server"])
    nodes: dict[str, ServerProcess] = {}
    try:
        for name, region in (("a", "central"), ("b", "central"), ("c", "east")):  # no --cluster-forward: the default
            nodes[name] = tls_server(net, ca, tmp_path, "--redis", redis.url, "--node-id", name, "--region", region,
                                     "--tls-ca", str(ca.cert_path), "--no-ladder", stem=f"node-{name}")
        a, b, c = nodes["a"], nodes["b"], nodes["c"]
        admin = a.token("*", "admin")

        def stats(node: ServerProcess) -> dict:
            status, body = school_get(net, ca, f"{node.base_url}/api/stats?room={ROOM}&token={admin}")
            assert status == 200, body
            return body

        def play_through(via: ServerProcess) -> dict:
            """testkit/independent_whep.py in its own process in the school's network: nothing of ours in it."""
            token = via.token(ROOM, "terminal", identity=f"school-via-{via.port}")
            r = net.run("school", [sys.executable, "-m", "testkit.independent_whep", f"{via.base_url}/whep/{ROOM}",
                                   token, "--cafile", str(ca.cert_path), "--seconds", "5"], timeout=60, cwd=REPO)
            assert r.returncode == 0, r.stderr[-2000:]
            return json.loads(r.stdout.strip().splitlines()[-1])

        with publisher(a, net, clip), concurrent.futures.ThreadPoolExecutor(2) as pool:   # the room is a's
            runs = {"b": pool.submit(play_through, b), "c": pool.submit(play_through, c)}
            edge = wait_for("node c relaying the room from a", lambda: (lambda st: st if st["relays_in"] == 1 else None)(
                stats(c)), 15, 0.3)
            assert edge["links_in"][0]["origin"] == "a", edge
            for via, run in runs.items():
                got = run.result(60)
                assert got["status"] == 201 and got["history"] == [], (via, got)   # answered where asked
                assert got["frames"] > 50 and got["sizes"] == [[640, 360]], (via, got)
            with SchoolBrowser(playwright, net.names["school"], tmp_path, [ca.spki_pin]) as school:
                terminal = school.open(page_url(b, "terminal", b.token(ROOM, "terminal", identity="school-b")),
                                       "terminal")
                wait_playing(terminal, "a Chromium terminal playing through node b")
                assert stats(a)["viewers"] >= 1 and stats(b)["viewers"] == 0, (stats(a), stats(b))  # b proxied
                assert not school.errors, school.errors
    finally:
        for n in nodes.values():
            n.stop()
        redis.stop()


# --- a new certificate during a lesson ------------------------------------------------------------------------

def test_sighup_loads_a_new_certificate_while_the_lesson_plays(net, ca, playwright, clip, tmp_path):
    server = tls_server(net, ca, tmp_path, stem="sighup")
    cert_file, key_file = ca.folder / "sighup-cert.pem", ca.folder / "sighup-key.pem"
    first = leaf_der(cert_file)
    try:
        with publisher(server, net, clip), SchoolBrowser(playwright, net.names["school"], tmp_path,
                                                         [ca.spki_pin]) as school:
            terminal = school.open(page_url(server, "terminal", server.token(ROOM, "terminal", identity="s1")),
                                   "terminal")
            before = wait_playing(terminal, "the terminal playing")
            assert presented_certificate(net, ca, server.port) == first

            new_cert, new_key = ca.issue(["liveclass-renewed", net.server_ip], "renewed")
            shutil.copy(new_cert, cert_file)
            shutil.copy(new_key, key_file)
            server.proc.send_signal(1)  # SIGHUP
            wait_for("the new certificate on new connections",
                     lambda: presented_certificate(net, ca, server.port) == leaf_der(new_cert), 10, 0.2,
                     detail=server.log_tail)
            page = school.open(f"{server.base_url}/replay.html", "next-page-load")
            response = page.reload()   # Chromium's own view of the connection it loaded the page over
            assert response.ok and response.security_details()["subjectName"] == "liveclass-renewed", \
                response.security_details()

            after = wait_playing(terminal, "the lesson still playing after the reload", frames=60)
            assert after["sessions"] == before["sessions"], (before, after)   # the same WHEP session
            assert len(school.websockets["terminal"]) == 1, school.websockets  # the same room WebSocket

            # a broken file: the running certificate stays, the log says why
            key_file.write_text("-----BEGIN PRIVATE KEY-----\nbroken\n-----END PRIVATE KEY-----\n")
            server.proc.send_signal(1)
            wait_for("the refusal in the log", lambda: "kept the running certificate" in server.log_tail(), 10, 0.2)
            assert presented_certificate(net, ca, server.port) == leaf_der(new_cert)
            wait_playing(terminal, "the lesson still playing after a bad reload")
            assert not school.errors, school.errors
    finally:
        server.stop()


# --- the production front: Caddy with its own CA in front of two nodes ------------------------------------------

CADDY = shutil.which("caddy")


@pytest.mark.skipif(CADDY is None, reason="needs Debian's caddy (scripts/test.sh installs it)")
def test_caddy_front_with_tls_internal_serves_the_lesson_from_two_nodes(net, playwright, clip, tmp_path):
    """deploy/Caddyfile as the layout runs it (`tls internal`, a LAN without a public name): the school opens
    https://<server address>/ and only that; the nodes listen on the server room's loopback."""
    from testkit.redis_server import RedisServer
    from testkit.certs import spki_pin
    from cryptography import x509
    redis = RedisServer(log_dir=tmp_path / "redis", netns=net.names["server"])
    nodes: dict[str, ServerProcess] = {}
    caddy = None
    try:
        for name in ("a", "b"):
            nodes[name] = ServerProcess(host="127.0.0.1", media_hosts=(net.server_ip,), netns=net.names["server"],
                                        log_path=tmp_path / f"node-{name}.log",
                                        extra=("--redis", redis.url, "--node-id", name, "--behind-proxy",
                                               "--public-url", f"https://{net.server_ip}"))
        data = tmp_path / "caddy"
        env = {"PATH": "/usr/bin:/bin", "HOME": str(data), "XDG_DATA_HOME": str(data / "data"),
               "XDG_CONFIG_HOME": str(data / "config"), "PUBLIC_HOST": net.server_ip, "CADDY_TLS": "tls internal",
               "CADDY_GLOBAL": "skip_install_trust\n\tadmin off",
               "LIVECLASS_NODES": " ".join(f"127.0.0.1:{n.port}" for n in nodes.values())}
        caddy = subprocess.Popen(net.command("server", [CADDY, "run", "--config", str(Path(__file__).resolve().parents[2]
                                                                                      / "deploy" / "Caddyfile"),
                                                        "--adapter", "caddyfile"]),
                                 env=env, stdout=open(tmp_path / "caddy.log", "wb"), stderr=subprocess.STDOUT)
        authority = data / "data" / "caddy" / "pki" / "authorities" / "local"
        wait_for("Caddy's own CA", lambda: (authority / "intermediate.crt").exists() or caddy.poll() is not None, 20,
                 0.2)
        assert caddy.poll() is None, (tmp_path / "caddy.log").read_text()[-2000:]
        pins = [spki_pin(x509.load_pem_x509_certificate((authority / f).read_bytes()))
                for f in ("root.crt", "intermediate.crt")]
        front = f"https://{net.server_ip}"
        a = nodes["a"]
        with publisher(a, net, clip), SchoolBrowser(playwright, net.names["school"], tmp_path, pins) as school:
            token = a.token(ROOM, "terminal", identity="school-front")
            url = f"{front}/terminal.html?" + urllib.parse.urlencode({"room": ROOM, "token": token})
            terminal = wait_for("the page through Caddy", lambda: _opened(school, url), 20, 0.5)
            assert terminal.evaluate("window.isSecureContext") is True
            wait_playing(terminal, "the lesson through the TLS front", timeout=40)
            assert school.websockets["terminal"][0].startswith(f"wss://{net.server_ip}/ws/"), school.websockets
            nodes_seen = terminal.evaluate("""async ([room, token]) => (await (await fetch(
                `/api/cluster/nodes?room=${room}`, { headers: { Authorization: `Bearer ${token}` } })).json())""",
                                           [ROOM, token])
            assert {n["url"] for n in nodes_seen["nodes"]} == {front}, nodes_seen   # never a node's own address
            assert not [r for r in school.responses if r[3].startswith("http:")], school.responses
    finally:
        if caddy is not None:
            caddy.terminate()
            caddy.wait(10)
        for n in nodes.values():
            n.stop()
        redis.stop()


def _opened(school: SchoolBrowser, url: str) -> Any:
    """Open `url` (None while Caddy is still getting its certificate ready)."""
    try:
        return school.open(url, "terminal")
    except sync_api.Error:
        for ctx in school.contexts[-1:]:
            ctx.close()
        school.contexts = school.contexts[:-1]
        return None
