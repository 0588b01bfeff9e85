"""Headless Debian Chromium through Playwright's Python package (never `playwright install`), optionally
inside a network namespace.

Playwright talks to the browser over a pipe on inherited file descriptors, which survive `exec`: a generated
wrapper that execs `ip netns exec <ns> /usr/bin/chromium "$@"` is a valid `executable_path`.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable, Iterator, Optional, Protocol, Sequence

CHROMIUM = Path("/usr/bin/chromium")
# the flags tests/browser/test_browser.py uses: fake camera and microphone, WebRTC on loopback without mDNS names
CHROMIUM_ARGS = [
    "--use-fake-device-for-media-stream",
    "--use-fake-ui-for-media-stream",
    "--allow-loopback-in-peer-connection",
    "--disable-features=WebRtcHideLocalIpsWithMdns",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--autoplay-policy=no-user-gesture-required",
]
VIEWPORT = {"width": 1280, "height": 720}


def headless_chromium() -> Iterator[Any]:
    """Debian's Chromium launched headless through Playwright, for a module's tests (a pytest fixture body)."""
    from playwright.sync_api import sync_playwright
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        yield b
        b.close()


def browser_marks(timeout_s: int) -> list:
    """The pytest marks of a test module that drives Chromium: `browser`, its time limit, and a skip where
    Chromium is not installed."""
    import pytest  # here: bench scripts import this module without pytest
    return [
        pytest.mark.browser,
        pytest.mark.timeout(timeout_s),
        pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium at /usr/bin/chromium"),
    ]


def netns_wrapper(ns_name: str, directory: Path, chromium: Path = CHROMIUM) -> Path:
    """A script that starts Chromium inside namespace `ns_name` (exec keeps Playwright's pipe fds)."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"chromium-in-{ns_name}"
    path.write_text(f'#!/bin/sh\nexec ip netns exec {ns_name} {chromium} "$@"\n')
    path.chmod(0o755)
    return path


class PageLog(Protocol):
    errors: list[str]
    console: list[str]
    responses: list[tuple[str, str, int, str]]


def watch_page(page: Any, name: str, log: PageLog) -> None:
    """Keep a page's errors, console lines and HTTP responses in `log` (for assertions and post-mortems)."""
    page.on("pageerror", lambda e: log.errors.append(f"{name}: {e}"))
    page.on("console", lambda m: log.console.append(f"{name} {m.type}: {m.text}"))
    page.on("response", lambda r: log.responses.append((name, r.request.method, r.status, r.url)))


class PageSet:
    """Browser contexts opened for a test and what their pages reported: errors, console lines, HTTP responses
    and the WebSockets each page opened. `close()` closes every context and writes the console to the workdir."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.contexts: list = []
        self.errors: list[str] = []
        self.console: list[str] = []
        self.responses: list[tuple[str, str, int, str]] = []  # (page, method, status, url)
        self.websockets: dict[str, list[str]] = {}             # page name -> WebSocket URLs opened

    def _go(self, ctx: Any, page: Any, name: str, url: str, init_script: Optional[str], timeout_ms: int) -> Any:
        self.contexts.append(ctx)
        ctx.set_default_timeout(timeout_ms)
        watch_page(page, name, self)
        page.on("websocket", lambda ws: self.websockets.setdefault(name, []).append(ws.url))
        if init_script:
            page.add_init_script(init_script)
        page.goto(url)
        return page

    def close(self) -> None:
        for ctx in self.contexts:
            try:
                ctx.close()
            except Exception:  # already gone (browser crashed or was killed): nothing left to close
                pass
        self.contexts.clear()
        if self.console:
            (self.workdir / "console.log").write_text("\n".join(self.console) + "\n")

    def close_checked(self) -> None:
        """close(), then fail the test if a page threw an uncaught error."""
        self.close()
        assert not self.errors, f"uncaught errors in the pages: {self.errors}"

    def __enter__(self) -> "PageSet":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class BrowserPool(PageSet):
    """Pages, each in its own headless Chromium with a fresh profile (the teacher's laptop and the classroom PCs
    are separate machines)."""

    def __init__(self, playwright: Any, workdir: Path) -> None:
        super().__init__(workdir)
        self.playwright = playwright

    def open(self, url: str, name: str, init_script: Optional[str] = None, netns: Optional[str] = None,
             extra_args: Sequence[str] = (), timeout_ms: int = 15_000):
        executable = netns_wrapper(netns, self.workdir) if netns else CHROMIUM
        ctx = self.playwright.chromium.launch_persistent_context(
            str(self.workdir / f"profile-{name}"), executable_path=str(executable), headless=True,
            args=[*CHROMIUM_ARGS, *extra_args], viewport=VIEWPORT)
        page = ctx.pages[0] if ctx.pages else ctx.new_page()
        return self._go(ctx, page, name, url, init_script, timeout_ms)


class BrowserContexts(PageSet):
    """Pages of one launched Chromium, each in a context of its own (a machine of its own: no shared cookies,
    storage or connections). `camera`: the context is granted camera and microphone as a user's click would (for
    a browser launched without --use-fake-ui-for-media-stream; False: the user said no); None: as launched."""

    def __init__(self, browser: Any, workdir: Path) -> None:
        super().__init__(workdir)
        self.browser = browser

    def open(self, url: str, name: str, camera: Optional[bool] = None, init_script: Optional[str] = None,
             timeout_ms: int = 15_000) -> Any:
        options: dict[str, Any] = {"viewport": VIEWPORT}
        if camera is not None:
            options["permissions"] = ["camera", "microphone"] if camera else []
        ctx = self.browser.new_context(**options)
        return self._go(ctx, ctx.new_page(), name, url, init_script, timeout_ms)


def insecure_origin_args(origin: str) -> list[str]:
    """Let a page on a plain-HTTP non-loopback origin use secure-context APIs (getUserMedia, wake lock)."""
    return [f"--unsafely-treat-insecure-origin-as-secure={origin}"]


# Collects the page's inbound video statistics every `ms` milliseconds into window.__lcSamples, following
# window.liveclass.pc across reconnections (`session` tells the sessions apart: counters restart per session).
def sampler_script(ms: int = 100) -> str:
    return """
(() => {
  const samples = (window.__lcSamples = []);
  let busy = false;
  setInterval(async () => {
    const lc = window.liveclass;
    const pc = lc && lc.pc;
    if (busy || !pc || pc.connectionState === "closed") return;
    busy = true;
    try {
      const t = Date.now();
      const report = await pc.getStats();
      let v = null;
      report.forEach((s) => { if (s.type === "inbound-rtp" && s.kind === "video") v = s; });
      if (v) samples.push({
        t: t / 1000, session: lc.sessions, width: v.frameWidth || 0, height: v.frameHeight || 0,
        frames: v.framesDecoded || 0, lost: v.packetsLost || 0, received: v.packetsReceived || 0,
        bytes: v.bytesReceived || 0, freeze_total: v.totalFreezesDuration ?? null, freezes: v.freezeCount ?? null,
        jitter_buffer_delay: v.jitterBufferDelay ?? null, jitter_buffer_count: v.jitterBufferEmittedCount ?? null,
        nacks: v.nackCount || 0, plis: v.pliCount || 0, keyframes: v.keyFramesDecoded || 0,
      });
    } catch (e) { /* the connection closed meanwhile */ }
    busy = false;
  }, %d);
})();
""" % ms


# The nominated ICE pair of the page's current connection: which addresses the media actually flows between.
SELECTED_PAIR_SCRIPT = """
async () => {
  const pc = window.liveclass && window.liveclass.pc;
  if (!pc) return null;
  const r = await pc.getStats();
  let pairId = null;
  r.forEach((s) => { if (s.type === "transport" && s.selectedCandidatePairId) pairId = s.selectedCandidatePairId; });
  if (!pairId) r.forEach((s) => { if (s.type === "candidate-pair" && s.nominated && s.state === "succeeded") pairId = s.id; });
  const pair = pairId && r.get(pairId);
  if (!pair) return null;
  const local = r.get(pair.localCandidateId), remote = r.get(pair.remoteCandidateId);
  return { local: local && (local.address || local.ip), local_port: local && local.port,
           remote: remote && (remote.address || remote.ip), remote_port: remote && remote.port,
           local_type: local && local.candidateType, relay_protocol: local && local.relayProtocol,
           protocol: local && local.protocol };
}
"""


def drain_samples(page: Any) -> list[dict]:
    """Take (and clear) the samples the page collected so far."""
    return page.evaluate("() => window.__lcSamples ? window.__lcSamples.splice(0) : []")


def wait_for(what: str, cond: Callable[[], Any], timeout: float, interval: float = 0.2,
             detail: Callable[[], Any] = lambda: "") -> Any:
    """Poll cond() until it returns something truthy (returned), or raise after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}; {detail()}")
        time.sleep(interval)


class SchoolBrowser(BrowserContexts):
    """One headless Chromium inside a network namespace (a school's PCs), trusting the given certificate keys
    (SPKI pins: a test CA or a self-signed server), one context per machine. Camera and microphone are the
    fake devices, granted per context (`open(..., camera=False)`: the user said no), since
    `--use-fake-ui-for-media-stream` would grant every page."""

    def __init__(self, playwright: Any, netns: str, workdir: Path, spki_pins: Sequence[str] = (),
                 extra_args: Sequence[str] = ()) -> None:
        args = [a for a in CHROMIUM_ARGS if a != "--use-fake-ui-for-media-stream"]
        if spki_pins:
            args.append("--ignore-certificate-errors-spki-list=" + ",".join(spki_pins))
        super().__init__(playwright.chromium.launch(executable_path=str(netns_wrapper(netns, workdir)),
                                                    headless=True, args=[*args, *extra_args]), workdir)

    def open(self, url: str, name: str, camera: Optional[bool] = True, init_script: Optional[str] = None,
             timeout_ms: int = 15_000) -> Any:
        return super().open(url, name, camera, init_script, timeout_ms)

    def close(self) -> None:
        super().close()
        try:
            self.browser.close()
        except Exception:  # the browser is gone already
            pass


# Frames decoded so far by the page's main player (window.liveclass.pc) and its picture size.
INBOUND_VIDEO_SCRIPT = """
async () => {
  const pc = window.liveclass && window.liveclass.pc;
  const out = { frames: 0, width: 0, height: 0, state: pc ? pc.connectionState : null,
                sessions: (window.liveclass && window.liveclass.sessions) || 0 };
  if (!pc || pc.connectionState === "closed") return out;
  (await pc.getStats()).forEach((s) => {
    if (s.type === "inbound-rtp" && s.kind === "video") {
      out.frames = s.framesDecoded || 0; out.width = s.frameWidth || 0; out.height = s.frameHeight || 0;
    }
  });
  return out;
}
"""
