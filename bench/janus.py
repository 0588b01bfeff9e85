"""Debian's Janus (VideoRoom plugin) as a reference SFU for bench/fanout.py --against janus.

`JanusServer` starts `janus` (apt-get install janus; Debian 12 ships 1.1.2) with its own configuration in a
temporary folder: one event loop (`event_loops = 1`: every ICE/DTLS/SRTP handle on one thread, like our one
asyncio loop), only the VideoRoom plugin and the plain HTTP transport (folders of symlinks hold nothing
else), the HTTP API on a free 127.0.0.1 port, no STUN, no recording, sessions that never time out, its log
in the temporary folder (or where asked). Janus never offers loopback candidates, so ICE runs on one of the
host's own addresses (`media_address()`), Janus's only interface. One room is declared in the plugin's
configuration (VP8 + Opus, no bitrate cap), so no API call is needed to create it.

`JanusClient` speaks the Janus HTTP API (a session, one long-poll per session handing each handle its
events); `JanusPublisher` joins the room as publisher `PUBLISHER_ID` with testkit's pre-encoded tracks (the
same publisher as the WHIP one, only the signalling differs); `subscribe()`/`start_subscriber()` are a
viewer's two steps: Janus sends the SDP offer, the viewer answers.
"""
from __future__ import annotations

import asyncio
import glob
import itertools
import os
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Optional

import aiohttp

from signaling.cluster.processes import stop_process

ROOM_ID = 1234
PUBLISHER_ID = 1
PLUGIN = "janus.plugin.videoroom"
RTP_PORT_RANGE = "10000-20000"   # below Linux's ephemeral range (32768-60999): aiortc's sockets never clash


def janus_binary() -> Optional[str]:
    return shutil.which("janus")


def janus_version() -> Optional[str]:
    binary = janus_binary()
    if binary is None:
        return None
    try:
        out = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    for line in out.splitlines():
        if line.startswith("Janus version:"):
            return line.split("(")[-1].rstrip(")").strip()
    return out.strip() or None


def _lib_folder(kind: str) -> Path:
    """Where Debian puts Janus's modules (plugins, transports): /usr/lib/<triplet>/janus/<kind>."""
    for candidate in sorted(glob.glob(f"/usr/lib/*/janus/{kind}")) + [f"/usr/lib/janus/{kind}",
                                                                      f"/opt/janus/lib/janus/{kind}"]:
        if Path(candidate).is_dir():
            return Path(candidate)
    raise FileNotFoundError(f"no Janus {kind} folder (is the janus package installed?)")


def media_address() -> str:
    """An IPv4 address of this host other than loopback, for ICE on both sides: Janus never gathers loopback
    candidates (src/ice.c skips IFF_LOOPBACK interfaces). Packets to one's own address still take the kernel's
    loopback path, so the cost per packet is the same as on 127.0.0.1. The default route's source address if
    there is one, else the first address of an interface that is up."""
    import socket
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("192.0.2.1", 9))  # TEST-NET-1: no packet is sent, the kernel only picks a source
            addr = s.getsockname()[0]
            if not addr.startswith("127.") and addr != "0.0.0.0":
                return addr
        except OSError:
            pass
    try:
        out = subprocess.run(["ip", "-o", "-4", "addr", "show", "up"], capture_output=True, text=True,
                             timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        out = ""
    for line in out.splitlines():
        parts = line.split()
        if "inet" in parts:
            addr = parts[parts.index("inet") + 1].split("/")[0]
            if not addr.startswith("127."):
                return addr
    raise RuntimeError("Janus needs a non-loopback IPv4 address for ICE and this host has none")


def _free_port() -> int:
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class JanusServer:
    """A Janus process of our own: config in a temp folder, HTTP API on a free loopback port.

    The same small surface bench/fanout.py uses of testkit's ServerProcess: `proc`, `base_url`,
    `cpu_seconds()`, `token()`, `log_tail()`, `stop()`."""

    name = "janus"

    def __init__(self, media_addr: str, log_path: Optional[Path] = None, cpus: Optional[set[int]] = None,
                 event_loops: int = 1, debug_level: int = 4, room: int = ROOM_ID) -> None:
        binary = janus_binary()
        if binary is None:
            raise FileNotFoundError("janus is not installed (apt-get install janus)")
        self.room = room
        self.media_addr = media_addr
        self.dir = Path(tempfile.mkdtemp(prefix="liveclass-janus-"))
        self.port = _free_port()
        self.base_url = f"http://127.0.0.1:{self.port}/janus"
        self.log_path = Path(log_path) if log_path else self.dir / "janus.log"
        self._write_config(event_loops, debug_level)
        # janus's own stdout/stderr (startup failures before its log opens) go next to its log
        self._out = open(self.dir / "stdout.log", "wb")
        preexec = (lambda: os.sched_setaffinity(0, cpus)) if cpus else None
        self.proc = subprocess.Popen(
            [binary, "--config", str(self.dir / "janus.jcfg"), "--configs-folder", str(self.dir),
             "--disable-colors"],
            cwd=self.dir, stdout=self._out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            preexec_fn=preexec, start_new_session=True)
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise

    def _write_config(self, event_loops: int, debug_level: int) -> None:
        d = self.dir
        for kind, keep in (("plugins", ["libjanus_videoroom.so"]), ("transports", ["libjanus_http.so"]),
                           ("events", []), ("loggers", [])):
            (d / kind).mkdir()
            if keep:
                src = _lib_folder(kind)
                for name in keep:
                    (d / kind / name).symlink_to(src / name)
        (d / "janus.jcfg").write_text(f"""general: {{
	configs_folder = "{d}"
	plugins_folder = "{d / 'plugins'}"
	transports_folder = "{d / 'transports'}"
	events_folder = "{d / 'events'}"
	loggers_folder = "{d / 'loggers'}"
	log_to_stdout = false
	log_to_file = "{self.log_path}"
	debug_level = {debug_level}
	server_name = "liveclass-bench"
	session_timeout = 0
	event_loops = {event_loops}
}}
certificates: {{
}}
media: {{
	ipv6 = false
	rtp_port_range = "{RTP_PORT_RANGE}"
}}
nat: {{
	nice_debug = false
	ignore_mdns = true
	ice_enforce_list = "{self.media_addr}"
}}
plugins: {{
}}
transports: {{
}}
loggers: {{
}}
events: {{
	broadcast = false
}}
""")
        (d / "janus.transport.http.jcfg").write_text(f"""general: {{
	json = "compact"
	base_path = "/janus"
	http = true
	port = {self.port}
	ip = "127.0.0.1"
	https = false
}}
admin: {{
	admin_http = false
	admin_https = false
}}
cors: {{
}}
""")
        # one room: VP8 + Opus, no bitrate cap (REMB toward the publisher not clamped), keyframe requests every
        # 2 s (the pre-encoded publisher ignores them anyway), nothing recorded, no join/leave notifications
        (d / "janus.plugin.videoroom.jcfg").write_text(f"""general: {{
}}
room-{self.room}: {{
	description = "liveclass bench"
	publishers = 4
	bitrate = 0
	fir_freq = 2
	audiocodec = "opus"
	videocodec = "vp8"
	record = false
	notify_joining = false
}}
""")

    def _wait_ready(self, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"janus exited with {self.proc.returncode}: {self.log_tail()}")
            try:
                with urllib.request.urlopen(self.base_url + "/info", timeout=1) as r:
                    if r.status == 200:
                        return
            except (OSError, urllib.error.URLError):
                time.sleep(0.1)
        raise TimeoutError("janus did not answer /janus/info: " + self.log_tail())

    def token(self, room: Any, role: str) -> str:
        """Janus here checks no tokens (no token_auth, no room secret): an empty one keeps callers uniform."""
        return ""

    def cpu_seconds(self) -> float:
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def log_tail(self, n: int = 4000) -> str:
        parts = []
        for p in (self.dir / "stdout.log", self.log_path):
            try:
                parts.append(p.read_bytes()[-n:].decode(errors="replace"))
            except OSError:
                pass
        return "\n".join(parts)

    def stop(self) -> Optional[int]:
        stop_process(self.proc, 10, signal.SIGINT)
        self._out.close()
        shutil.rmtree(self.dir, ignore_errors=True)  # a log asked for elsewhere stays
        return self.proc.returncode


# ------------------------------------------------------------------------------------------------------------
# the Janus HTTP API
# ------------------------------------------------------------------------------------------------------------

class JanusError(RuntimeError):
    pass


_transactions = itertools.count(1)


class JanusClient:
    """One Janus session over HTTP. A single long-poll (GET /janus/<session>?maxev=N) fetches events for all
    the session's handles and queues each on its handle, so hundreds of viewers in one process cost one
    outstanding request, not hundreds."""

    def __init__(self, base_url: str, http: Optional[aiohttp.ClientSession] = None, timeout: float = 20.0) -> None:
        self.base_url = base_url.rstrip("/")
        self._own_http = http is None
        self.http = http or aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None),
                                                  connector=aiohttp.TCPConnector(limit=0))
        self.timeout = timeout
        self.session_id: Optional[int] = None
        self._events: dict[int, asyncio.Queue] = {}
        self._poller: Optional[asyncio.Task] = None
        self.poll_errors = 0

    async def _post(self, path: str, msg: dict) -> dict:
        msg = {**msg, "transaction": f"t{next(_transactions)}"}
        async with self.http.post(self.base_url + path, json=msg,
                                  timeout=aiohttp.ClientTimeout(total=self.timeout)) as r:
            data = await r.json(content_type=None)
        if data.get("janus") == "error":
            err = data.get("error", {})
            raise JanusError(f"janus {msg['janus']}: {err.get('code')} {err.get('reason')}")
        return data

    async def open(self) -> None:
        data = await self._post("", {"janus": "create"})
        self.session_id = data["data"]["id"]
        self._poller = asyncio.create_task(self._poll())

    async def _poll(self) -> None:
        url = f"{self.base_url}/{self.session_id}"
        while True:
            try:
                async with self.http.get(url, params={"maxev": "50"},
                                         timeout=aiohttp.ClientTimeout(total=70)) as r:
                    data = await r.json(content_type=None)
            except asyncio.CancelledError:
                raise
            except Exception:
                self.poll_errors += 1
                await asyncio.sleep(0.2)
                continue
            for ev in data if isinstance(data, list) else [data]:
                queue = self._events.get(ev.get("sender"))
                if queue is not None and ev.get("janus") == "event":
                    queue.put_nowait(ev)

    async def attach(self) -> int:
        data = await self._post(f"/{self.session_id}", {"janus": "attach", "plugin": PLUGIN})
        handle = data["data"]["id"]
        self._events[handle] = asyncio.Queue()
        return handle

    async def request(self, handle: int, body: dict, jsep: Optional[dict] = None) -> dict:
        """A plugin request and its answer (synchronous, or the asynchronous event that follows the ack)."""
        msg: dict = {"janus": "message", "body": body}
        if jsep is not None:
            msg["jsep"] = jsep
        data = await self._post(f"/{self.session_id}/{handle}", msg)
        if data.get("janus") == "ack":
            data = await asyncio.wait_for(self._events[handle].get(), self.timeout)
        result = data.get("plugindata", {}).get("data", {})
        if "error" in result:
            raise JanusError(f"videoroom {body.get('request')}: {result.get('error_code')} {result['error']}")
        return data

    async def detach(self, handle: int) -> None:
        self._events.pop(handle, None)
        try:
            await self._post(f"/{self.session_id}/{handle}", {"janus": "detach"})
        except Exception:
            pass

    async def close(self) -> None:
        if self._poller is not None:
            self._poller.cancel()
            try:
                await self._poller
            except (asyncio.CancelledError, Exception):
                pass
        if self.session_id is not None:
            try:
                await self._post(f"/{self.session_id}", {"janus": "destroy"})
            except Exception:
                pass
            self.session_id = None
        if self._own_http:
            await self.http.close()


async def subscribe(client: JanusClient, room: int, feed: int) -> tuple[int, str]:
    """A viewer's first step: a handle joined to `feed` as subscriber; returns it and Janus's SDP offer."""
    handle = await client.attach()
    ev = await client.request(handle, {"request": "join", "ptype": "subscriber", "room": room,
                                       "streams": [{"feed": feed}]})
    jsep = ev.get("jsep")
    if not jsep or jsep.get("type") != "offer":
        raise JanusError(f"subscriber join: no offer in {ev.get('plugindata')}")
    return handle, jsep["sdp"]


async def start_subscriber(client: JanusClient, handle: int, answer_sdp: str) -> None:
    """The second step: the viewer's answer; returns once Janus has it (media starts after ICE and DTLS)."""
    await client.request(handle, {"request": "start"}, {"type": "answer", "sdp": answer_sdp, "trickle": False})


class JanusPublisher:
    """testkit's WHIP publisher's media (the same pre-encoded tracks, the same aiortc offer) published into a
    VideoRoom: join as publisher PUBLISHER_ID, then `publish` with the offer; the answer comes as an event.
    Same surface as testkit.peers.WhipPublisher: `pc`, `tracks`, start(), connected(), stop()."""

    def __init__(self, base_url: str, room: int, clip: Path) -> None:
        from sfu.webrtc import aiortc_adapter as adapter
        from testkit.peers import PreEncodedTrack
        self.base_url, self.room, self.clip = base_url, room, clip
        self.pc = adapter.new_peer_connection()
        self.tracks = [PreEncodedTrack(clip, "video"), PreEncodedTrack(clip, "audio")]
        self.client = JanusClient(base_url)
        self.handle: Optional[int] = None

    async def start(self) -> None:
        from aiortc import RTCSessionDescription
        for t in self.tracks:
            self.pc.addTransceiver(t, direction="sendonly")
        await self.client.open()
        self.handle = await self.client.attach()
        await self.client.request(self.handle, {"request": "join", "ptype": "publisher", "room": self.room,
                                                "id": PUBLISHER_ID, "display": "teacher"})
        await self.pc.setLocalDescription(await self.pc.createOffer())
        ev = await self.client.request(self.handle, {"request": "publish", "audio": True, "video": True},
                                       {"type": "offer", "sdp": self.pc.localDescription.sdp, "trickle": False})
        jsep = ev.get("jsep")
        if not jsep or jsep.get("type") != "answer":
            raise JanusError(f"publish: no answer in {ev.get('plugindata')}")
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=jsep["sdp"], type="answer"))

    async def connected(self, timeout: float = 10) -> None:
        from testkit.peers import _wait_state
        await _wait_state(self.pc, timeout)

    async def stop(self) -> None:
        try:
            if self.handle is not None:
                await self.client.detach(self.handle)
                self.handle = None
        finally:
            await self.client.close()
            await self.pc.close()
