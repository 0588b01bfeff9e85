"""The capped-link scenario on real links: a lesson plays on two classroom terminals in headless Chromium; terminal A
sits behind a namespace link whose downlink is capped after steady 720p playback, then lifted; terminal B plays
on loopback. Both pages' inbound video is sampled every 100 ms. Shared by tests/browser/test_real_links.py and
bench/switch.py.

The lesson comes from the teacher page (Chromium's fake camera, browser simulcast) or from a single-layer aiortc
WHIP publisher of a pre-encoded 720p clip (the server-side ladder's case).
"""
from __future__ import annotations

import asyncio
import json
import threading
import time
import urllib.parse
import urllib.request
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from testkit.chromium import (
    SELECTED_PAIR_SCRIPT, BrowserPool, drain_samples, insecure_origin_args, sampler_script, wait_for,
)
from testkit.netns import LinkNamespace, join
from testkit.playback import summarize
from testkit.server import ServerProcess


@dataclass
class Scenario:
    source: str = "teacher-page"       # or "whip-clip"
    clip: Optional[Path] = None        # for "whip-clip": a 1280x720 VP8 + Opus WebM
    cap_kbit: int = 500
    steady_s: float = 8.0              # 720p playback on both before the cap
    capped_s: float = 12.0
    settle_s: float = 5.0              # loss is judged from cap + settle_s to the lift
    up_timeout_s: float = 20.0         # after the lift, how long A may take to return to full height
    start_timeout_s: float = 30.0      # pages open → both terminals decode full height
    full_height: int = 720
    room: str = "reallink"
    server_args: tuple[str, ...] = ()  # extra `liveclass serve` options (e.g. to turn the ladder on)


@dataclass
class ScenarioResult:
    scenario: Scenario
    samples: dict[str, list[dict]]          # "A" (capped), "B" (loopback)
    t_cap: float
    t_lift: float
    t_full: float                           # both terminals decoding full height
    ice: dict[str, Optional[dict]]          # each terminal's nominated pair
    host_ip: str
    ns_ip: str
    qdisc_capped: str                       # `tc -s qdisc` of the capped link just before the lift
    metrics: dict[str, dict] = field(default_factory=dict)
    server_samples: dict[str, list[dict]] = field(default_factory=dict)  # the SFU's view of each terminal
    errors: list[str] = field(default_factory=list)
    server_log: str = ""


class ClipPublisher:
    """testkit.peers.WhipPublisher on its own thread and event loop (Playwright's sync API owns the main
    thread and refuses to run inside an asyncio loop)."""

    def __init__(self, base_url: str, room: str, token: str, clip: Path, netns: Optional[str] = None,
                 ssl_context: Any = None) -> None:
        """`netns`: publish from inside that network namespace; `ssl_context`: verifies an https server."""
        self.args: tuple[str, str, str, Path] = (base_url, room, token, clip)
        self.netns = netns
        self.ssl_context = ssl_context
        self._ready = threading.Event()
        self._error: Optional[BaseException] = None
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._stop: Optional[asyncio.Event] = None
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        try:
            if self.netns:
                join(self.netns)
        except OSError as e:
            self._error = e
            self._ready.set()
            return
        asyncio.run(self._main())

    async def _main(self) -> None:
        from testkit.peers import WhipPublisher  # aiortc: imported only where needed
        self._loop, self._stop = asyncio.get_running_loop(), asyncio.Event()
        pub = WhipPublisher(*self.args, ssl_context=self.ssl_context)
        try:
            await pub.start()
            await pub.connected(10)
            self._ready.set()
            await asyncio.wait_for(self._stop.wait(), 600)  # bounded even if nobody stops it
        except BaseException as e:  # reported to the starting thread
            self._error = e
            self._ready.set()
        finally:
            await pub.stop()

    def __enter__(self) -> "ClipPublisher":
        self._thread.start()
        if not self._ready.wait(20) or self._error:
            raise RuntimeError(f"WHIP clip publisher did not connect: {self._error!r}")
        return self

    def __exit__(self, *exc: object) -> None:
        if self._loop and self._stop:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)


# what the SFU reports per video consumer (see sfu/forward/consumer.py dump())
CONSUMER_KEYS = ("layer", "target_layer", "temporal_limit", "estimate_bps", "estimate_from", "loss_floor", "red_distance", "bitrate_bps", "fraction_lost",
                 "allocator", "nacks", "rtx_packets", "plis", "probing_bps", "probe_packets", "switches_up",
                 "switches_down", "thinning", "rtx_skipped", "rtx_suppressed", "repairs_lost", "rtx_over_budget",
                 "switches", "keyframes_for_loss")


AUDIO_KEYS = ("red_distance", "fraction_lost", "loss_floor", "bitrate_bps", "packets")


class ServerStatsPoller:
    """Polls /api/stats every `interval` s on a thread: per viewer session, its video consumer's state (and a few
    of its audio consumer's, as audio_*, and its send-side estimator's, as bwe_*)."""

    def __init__(self, base_url: str, room: str, token: str, interval: float = 0.5) -> None:
        self.url = f"{base_url}/api/stats?" + urllib.parse.urlencode({"room": room, "token": token})
        self.interval = interval
        self.samples: dict[str, list[dict]] = {}  # viewer session id -> samples
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        for _ in range(int(600 / self.interval)):  # bounded: ten minutes at most
            if self._stop.wait(self.interval):
                return
            try:
                with urllib.request.urlopen(self.url, timeout=2) as r:
                    rooms = json.load(r)["rooms"]
            except (OSError, ValueError, KeyError):
                continue  # the server is busy or going away: skip this sample
            t = time.time()
            for room in rooms:
                for v in room.get("viewers", []):
                    c = next((c for c in v.get("consumers", []) if c.get("kind") == "video"), None)
                    a = next((c for c in v.get("consumers", []) if c.get("kind") == "audio"), None)
                    if c:
                        audio = {f"audio_{k}": a.get(k) for k in AUDIO_KEYS} if a else {}
                        bwe = {f"bwe_{k}": x for k, x in (v.get("bwe") or {}).items()}
                        self.samples.setdefault(v["id"], []).append({"t": t, **{k: c.get(k) for k in CONSUMER_KEYS},
                                                                     **audio, **bwe})

    def __enter__(self) -> "ServerStatsPoller":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)


def session_id_of(page: Any) -> str:
    resource = page.evaluate("window.liveclass.resource") or ""
    return resource.rstrip("/").rsplit("/", 1)[-1]


def page_url(base: str, page: str, room: str, token: str) -> str:
    return f"{base}/{page}.html?" + urllib.parse.urlencode({"room": room, "token": token})


def go_live(pool: BrowserPool, base: str, server: ServerProcess, room: str) -> Any:
    from playwright.sync_api import expect
    page = pool.open(page_url(base, "teacher", room, server.token(room, "teacher")), "teacher")
    expect(page.locator("#message")).to_contain_text("Camera ready", timeout=15_000)
    page.locator("#go-live").click()
    expect(page.locator("#state")).to_have_text("Live", timeout=15_000)
    return page


# True when the sampler saw new frames of at least `height` lines decoded over the last ~0.5 s.
_PLAYING_AT = """(height) => {
  const s = window.__lcSamples || [];
  if (s.length < 2) return false;
  const last = s[s.length - 1], back = s[Math.max(0, s.length - 6)];
  return last.height >= height && last.session === back.session && last.frames > back.frames;
}"""


def _playing_at(page: Any, height: int) -> bool:
    return bool(page.evaluate(_PLAYING_AT, height))


def _last_height(page: Any) -> int:
    return page.evaluate("() => { const s = window.__lcSamples || []; return s.length ? s[s.length - 1].height : 0 }")


def run_scenario(playwright: Any, workdir: Path, sc: Scenario) -> ScenarioResult:
    """One run, every wait bounded: about start (≤30 s) + steady + capped + up (≤20 s) seconds."""
    workdir.mkdir(parents=True, exist_ok=True)
    with LinkNamespace() as ns, ExitStack() as stack:  # unwinds publisher, browsers, poller, server, namespace
        # HTTP on every address: the loopback pages use 127.0.0.1, the namespace reaches the veth's host end
        server = ServerProcess(host="0.0.0.0", media_hosts=("127.0.0.1", ns.host_ip),
                               log_path=workdir / "server.log", extra=sc.server_args)
        stack.callback(server.stop)
        loop_base, ns_base = f"http://127.0.0.1:{server.port}", f"http://{ns.host_ip}:{server.port}"
        poller = stack.enter_context(ServerStatsPoller(loop_base, sc.room, server.token(sc.room, "admin")))
        pool = stack.enter_context(BrowserPool(playwright, workdir))
        if sc.source == "teacher-page":
            go_live(pool, loop_base, server, sc.room)
        else:
            assert sc.clip is not None, "whip-clip needs a clip"
            stack.enter_context(ClipPublisher(loop_base, sc.room, server.token(sc.room, "teacher"), sc.clip))
        token = server.token(sc.room, "terminal")
        sampler = sampler_script(100)
        pages = {
            "A": pool.open(page_url(ns_base, "terminal", sc.room, token), "terminal-A", sampler,
                           netns=ns.name, extra_args=insecure_origin_args(ns_base)),
            "B": pool.open(page_url(loop_base, "terminal", sc.room, token), "terminal-B", sampler),
        }
        wait_for(f"both terminals decoding {sc.full_height} lines",
                 lambda: all(_playing_at(p, sc.full_height) for p in pages.values()), sc.start_timeout_s, 0.25,
                 detail=lambda: {k: _last_height(p) for k, p in pages.items()})
        t_full = time.time()
        ice = {k: p.evaluate(SELECTED_PAIR_SCRIPT) for k, p in pages.items()}
        time.sleep(sc.steady_s)

        ns.cap_downlink(sc.cap_kbit)
        t_cap = time.time()
        time.sleep(sc.capped_s)
        qdisc = ns.qdisc_stats()
        ns.lift()
        t_lift = time.time()
        deadline = time.monotonic() + sc.up_timeout_s
        while time.monotonic() < deadline and not _playing_at(pages["A"], sc.full_height):
            time.sleep(0.25)
        time.sleep(1.0)  # a little playback after the return, for the freeze accounting
        samples = {k: drain_samples(p) for k, p in pages.items()}
        sessions = {k: session_id_of(p) for k, p in pages.items()}
        errors = list(pool.errors)
    result = ScenarioResult(sc, samples, t_cap, t_lift, t_full, ice, ns.host_ip, ns.ns_ip, qdisc,
                            errors=errors, server_log=server.log_tail(2000))
    result.server_samples = {k: poller.samples.get(sid, []) for k, sid in sessions.items()}
    for k, s in samples.items():
        result.metrics[k] = summarize(s, t_cap, t_lift, t_start=t_full, full_height=sc.full_height,
                                      settle_s=sc.settle_s)
    return result
