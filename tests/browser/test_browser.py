"""The classroom pages in real headless Chromium: the teacher page publishes its (fake) camera with WHIP and
the terminal page plays it with WHEP through `liveclass serve`. Assertions are about what people would see:
the state shown on each page, pictures decoded on the big screen, sound arriving, and the terminal finding
the lesson again by itself.

Uses Debian's /usr/bin/chromium through Playwright (never `playwright install`). Each role gets its own
browser process with a fresh profile, as the teacher's laptop and the classroom PC are separate machines.
"""
from __future__ import annotations

import json
import re
import time
import urllib.parse
import urllib.request
from typing import Any, Callable, Optional

import pytest

from signaling.auth.tokens import mint
from testkit.chromium import browser_marks, VIEWPORT, BrowserPool, wait_for
from testkit.udp_sockets import udp_sockets_of

sync_api = pytest.importorskip("playwright.sync_api")


pytestmark = browser_marks(90)

# Installed before any page script runs: records, for every peer connection the page makes, when it became
# 'connected' and when its first video frame was decoded (getStats polled every 50 ms from that moment).
TIMING_SCRIPT = """
(() => {
  const Native = window.RTCPeerConnection;
  const records = (window.__lcTiming = []);
  class TimedPeerConnection extends Native {
    constructor(...args) {
      super(...args);
      const rec = { connectedAt: null, firstFrameAt: null };
      records.push(rec);
      this.addEventListener("connectionstatechange", () => {
        if (this.connectionState !== "connected" || rec.connectedAt !== null) return;
        rec.connectedAt = performance.now();
        const poll = async () => {
          if (this.connectionState === "closed") return;
          let frames = 0;
          try {
            (await this.getStats()).forEach((s) => {
              if (s.type === "inbound-rtp" && s.kind === "video") frames += s.framesDecoded || 0;
            });
          } catch (e) { return; }
          if (frames > 0) { rec.firstFrameAt = performance.now(); return; }
          setTimeout(poll, 50);
        };
        poll();
      });
    }
  }
  window.RTCPeerConnection = TimedPeerConnection;
})();
"""

# The RTP statistics of the page's current peer connection (window.liveclass.pc), one entry per kind/direction
# (for a simulcast sender, its largest encoding).
STATS_SCRIPT = """
async () => {
  const pc = window.liveclass && window.liveclass.pc;
  if (!pc || pc.connectionState === "closed") return null;
  const report = await pc.getStats();
  const codecs = {};
  report.forEach((s) => { if (s.type === "codec") codecs[s.id] = s.mimeType; });
  const out = { connectionState: pc.connectionState };
  report.forEach((s) => {
    if (s.type !== "inbound-rtp" && s.type !== "outbound-rtp") return;
    const key = (s.type === "inbound-rtp" ? "in_" : "out_") + s.kind;
    // simulcast: one outbound-rtp per encoding; report the largest picture
    if (out[key] && (out[key].frameHeight || 0) >= (s.frameHeight || 0)) return;
    out[key] = {
      ssrc: s.ssrc, codec: codecs[s.codecId] || null,
      packetsReceived: s.packetsReceived, packetsSent: s.packetsSent, packetsLost: s.packetsLost,
      framesDecoded: s.framesDecoded, framesEncoded: s.framesEncoded, framesSent: s.framesSent,
      frameWidth: s.frameWidth, frameHeight: s.frameHeight, framesPerSecond: s.framesPerSecond,
      nackCount: s.nackCount, pliCount: s.pliCount, keyFramesDecoded: s.keyFramesDecoded,
      qualityLimitationReason: s.qualityLimitationReason,
      totalSamplesReceived: s.totalSamplesReceived, concealedSamples: s.concealedSamples,
    };
  });
  return out;
}
"""

# Mean colour and spread of the picture the terminal's <video> element shows right now.
PICTURE_SCRIPT = """
() => {
  const v = document.querySelector("video");
  if (!v || !v.videoWidth) return null;
  const c = document.createElement("canvas");
  c.width = 160; c.height = 90;
  const g = c.getContext("2d");
  g.drawImage(v, 0, 0, c.width, c.height);
  const d = g.getImageData(0, 0, c.width, c.height).data;
  let sum = 0, sum2 = 0, n = 0;
  for (let i = 0; i < d.length; i += 4) {
    const y = 0.299 * d[i] + 0.587 * d[i + 1] + 0.114 * d[i + 2];
    sum += y; sum2 += y * y; n++;
  }
  const mean = sum / n;
  return { width: v.videoWidth, height: v.videoHeight, mean, std: Math.sqrt(Math.max(0, sum2 / n - mean * mean)),
           paused: v.paused, muted: v.muted, rect: v.getBoundingClientRect().toJSON() };
}
"""


def wait_until(what: str, cond: Callable[[], Any], timeout: float, interval: float = 0.1,
               detail: Callable[[], Any] = lambda: "") -> Any:
    """testkit's wait_for, failing the test (AssertionError) on timeout."""
    try:
        return wait_for(what, cond, timeout, interval, detail)
    except TimeoutError as e:
        raise AssertionError(str(e)) from None


@pytest.fixture(scope="module")
def playwright():
    with sync_api.sync_playwright() as p:
        yield p


class Browsers(BrowserPool):
    """Opens pages, each in its own headless Chromium with a fresh profile; remembers page errors."""


@pytest.fixture
def browsers(playwright, tmp_path):
    b = Browsers(playwright, tmp_path)
    yield b
    b.close()
    (tmp_path / "console.log").write_text("\n".join(b.console) + "\n")
    assert not b.errors, f"uncaught errors in the pages: {b.errors}"
    # every session a page ended was still there to end: a DELETE answered 404 means the page tore the
    # connection down in an order that let the server drop the session first (or deleted it twice)
    bad = [r for r in b.responses if r[1] == "DELETE" and not 200 <= r[2] < 300]
    assert not bad, f"DELETEs of WHIP/WHEP sessions that failed: {bad}"


def page_url(server, page: str, room: str, role: str) -> str:
    query = urllib.parse.urlencode({"room": room, "token": server.token(room, role)})
    return f"{server.base_url}/{page}.html?{query}"


def room_stats(server, room: str) -> Optional[dict]:
    query = urllib.parse.urlencode({"room": room, "token": server.token(room, "admin")})
    with urllib.request.urlopen(f"{server.base_url}/api/stats?{query}", timeout=5) as r:
        rooms = json.load(r)["rooms"]
    return rooms[0] if rooms else None


def stats(page) -> dict:
    return page.evaluate(STATS_SCRIPT) or {}


def frames_decoded(page) -> int:
    return (stats(page).get("in_video") or {}).get("framesDecoded") or 0


# --- the teacher page ----------------------------------------------------------------------------------------

def open_teacher(browsers: Browsers, server, room: str):
    page = browsers.open(page_url(server, "teacher", room, "teacher"), "teacher")
    sync_api.expect(page.locator("#message")).to_contain_text("Camera ready", timeout=15_000)
    return page


def go_live(page) -> None:
    page.get_by_role("button", name="Go live").click()
    sync_api.expect(page.locator("#state")).to_have_text("Live", timeout=15_000)
    assert page.evaluate("window.liveclass.state") == "live"
    sync_api.expect(page.get_by_role("button", name="Stop")).to_be_enabled()
    sync_api.expect(page.get_by_role("button", name="Go live")).to_be_disabled()


def stop_lesson(page) -> None:
    page.get_by_role("button", name="Stop").click()
    sync_api.expect(page.locator("#state")).to_have_text("Not live", timeout=10_000)
    sync_api.expect(page.locator("#message")).to_contain_text("stopped")
    assert page.evaluate("window.liveclass.state") == "idle"


# --- the terminal page ---------------------------------------------------------------------------------------

def open_terminal(browsers: Browsers, server, room: str, name: str = "terminal"):
    return browsers.open(page_url(server, "terminal", room, "terminal"), name, init_script=TIMING_SCRIPT)


def expect_terminal_live(page, timeout: float) -> None:
    """What the classroom sees when playing: no overlay, the Live badge, a picture filling the window."""
    sync_api.expect(page.locator("#overlay")).to_be_hidden(timeout=timeout * 1000)
    sync_api.expect(page.locator("#badge")).to_be_visible()
    sync_api.expect(page.locator("#badge")).to_have_text("Live")
    assert page.evaluate("window.liveclass.state") == "live"


def expect_frames_rising(page, what: str, timeout: float, at_least: int = 10) -> int:
    """Wait for `at_least` newly decoded frames, summed across the terminal's sessions (it may start a new
    peer connection meanwhile, whose counter starts from zero)."""
    last = frames_decoded(page)
    gained = 0

    def progressed() -> int:
        nonlocal last, gained
        now = frames_decoded(page)
        gained += now - last if now >= last else now
        last = now
        return gained if gained >= at_least else 0

    return wait_until(f"{what}: {at_least} more decoded frames", progressed, timeout, 0.2,
                      detail=lambda: f"terminal state={page.evaluate('window.liveclass.state')!r} stats={stats(page)}")


def first_frame_delays_ms(page) -> list[Optional[float]]:
    recs = page.evaluate("window.__lcTiming")
    return [None if r["firstFrameAt"] is None or r["connectedAt"] is None else r["firstFrameAt"] - r["connectedAt"]
            for r in recs]


# --- tests ---------------------------------------------------------------------------------------------------

def test_teacher_camera_plays_on_the_classroom_screen(server, browsers, tmp_path):
    teacher = open_teacher(browsers, server, "lesson")
    settings = teacher.evaluate("window.liveclass.stream.getVideoTracks()[0].getSettings()")
    assert (settings["width"], settings["height"]) == (1280, 720), f"camera opened at {settings}"
    go_live(teacher)
    terminal = open_terminal(browsers, server, "lesson")
    expect_terminal_live(terminal, timeout=15)

    # the picture and the sound keep coming
    before = stats(terminal)
    t0 = time.monotonic()
    time.sleep(3.0)
    after = stats(terminal)
    elapsed = time.monotonic() - t0
    vin, ain = after["in_video"], after["in_audio"]
    fps = (vin["framesDecoded"] - before["in_video"]["framesDecoded"]) / elapsed
    assert fps >= 10, f"only {fps:.1f} frames/s decoded on the terminal: {before} → {after}"
    assert vin["codec"] == "video/VP8", f"the teacher page prefers VP8; terminal receives {vin['codec']}"
    audio_pps = (ain["packetsReceived"] - before["in_audio"]["packetsReceived"]) / elapsed
    assert audio_pps >= 30, f"audio: {audio_pps:.0f} packets/s received (Opus sends 50/s): {after}"
    assert ain["codec"] == "audio/opus"
    for kind, s in (("video", vin), ("audio", ain)):
        assert s["packetsLost"] <= 0.01 * s["packetsReceived"], \
            f"{kind}: {s['packetsLost']} of {s['packetsReceived']} packets lost on loopback"

    # the server estimates the terminal's link itself, from Chromium's transport-wide feedback
    video = next(c for v in room_stats(server, "lesson")["viewers"] for c in v["consumers"] if c["kind"] == "video")
    assert video["estimate_from"] == "transport-cc" and video["estimate_bps"] >= 500_000, video
    audio = next(c for v in room_stats(server, "lesson")["viewers"] for c in v["consumers"] if c["kind"] == "audio")
    assert audio["red_distance"] == 0, audio     # RED negotiated, and not needed on a clean link
    # Chromium offers AES-GCM in DTLS-SRTP, and the server, as DTLS server, takes it (AES-CM/HMAC-SHA1 costs 2.5x)
    room = room_stats(server, "lesson")
    assert {s["srtp_profile"] for s in [room["publisher"], *room["viewers"]]} <= {"SRTP_AEAD_AES_256_GCM",
                                                                                   "SRTP_AEAD_AES_128_GCM"}, room

    # the classroom sees what the teacher sends, at the size it is sent (Chromium adapts the sent size to
    # its bandwidth estimate; retry across such a change)
    sizes: dict = {}

    def same_size() -> bool:
        out = stats(teacher)["out_video"]
        pic = terminal.evaluate(PICTURE_SCRIPT) or {"width": None, "height": None}
        vin = stats(terminal)["in_video"]
        sizes.update(sent=(out["frameWidth"], out["frameHeight"]), received=(vin["frameWidth"], vin["frameHeight"]),
                     shown=(pic["width"], pic["height"]))
        return sizes["sent"] == sizes["received"] == sizes["shown"] and out["frameWidth"]

    wait_until("terminal frame size = teacher's sent frame size", same_size, 10, 0.3, detail=lambda: sizes)

    # a real picture fills the window (the fake camera draws a bright green test pattern, not black)
    pic = terminal.evaluate(PICTURE_SCRIPT)
    assert not pic["paused"], "the terminal's video element is paused"
    assert not pic["muted"], "the terminal plays muted although autoplay with sound is allowed here"
    assert pic["mean"] > 40 and pic["std"] > 5, f"the picture looks blank: {pic}"
    rect = pic["rect"]
    assert (rect["width"], rect["height"]) == (VIEWPORT["width"], VIEWPORT["height"]), f"video is {rect}"
    terminal.screenshot(path=str(tmp_path / "terminal-live.png"))
    teacher.screenshot(path=str(tmp_path / "teacher-live.png"))

    print(f"\nterminal: {vin['frameWidth']}x{vin['frameHeight']} {fps:.1f} fps decoded, "
          f"video lost {vin['packetsLost']}/{vin['packetsReceived']}, audio lost {ain['packetsLost']}/"
          f"{ain['packetsReceived']} ({audio_pps:.0f} pkt/s), sent {sizes['sent']}, "
          f"teacher limited by {stats(teacher)['out_video']['qualityLimitationReason']}")

    # Stop ends the WHIP session on the server (the page DELETEs it)
    stop_lesson(teacher)
    wait_until("the server to drop the publisher after Stop",
               lambda: (r := room_stats(server, "lesson")) is not None and r["publisher"] is None, 5)


def test_teacher_sound_comes_as_red_and_the_classroom_hears_it(server, browsers):
    """The teacher page offers redundant audio (RED) for its microphone; the answer prefers it, so Chromium sends
    each Opus frame with the one before. The server unwraps it at ingest and the classroom decodes its sound."""
    teacher = open_teacher(browsers, server, "red")
    go_live(teacher)
    terminal = open_terminal(browsers, server, "red")
    expect_terminal_live(terminal, timeout=15)

    def unwrapped() -> int:
        publisher = (room_stats(server, "red") or {}).get("publisher") or {}
        return sum(r["unwrapped"] for r in publisher.get("red", []))

    wait_until("RED from the teacher page unwrapped at ingest", unwrapped, 10, 0.3)
    first, before, t0 = unwrapped(), stats(terminal)["in_audio"], time.monotonic()
    time.sleep(3.0)
    after, elapsed = stats(terminal)["in_audio"], time.monotonic() - t0
    publisher = room_stats(server, "red")["publisher"]
    red = publisher["red"]
    assert len(red) == 1 and red[0]["dropped"] == {}, red
    assert unwrapped() - first >= 40 * elapsed, f"RED packets unwrapped: {first} → {unwrapped()} in {elapsed:.1f} s"
    audio = next(s for s in publisher["streams"] if s["kind"] == "audio")
    assert audio["codec"] == "opus", audio   # learnt as Opus: nothing after the ingest sees RED
    samples = after["totalSamplesReceived"] - before["totalSamplesReceived"]
    concealed = after["concealedSamples"] - before["concealedSamples"]
    assert samples >= 0.8 * 48000 * elapsed, f"{samples} samples in {elapsed:.1f} s: {before} → {after}"
    assert concealed <= 0.02 * samples, f"{concealed} of {samples} samples concealed: {before} → {after}"
    print(f"\nteacher sends {stats(teacher)['out_audio']['codec']}; ingest: {red[0]}; classroom decoded "
          f"{samples} samples in {elapsed:.1f} s, {concealed} concealed, as {after['codec']}")


def test_late_viewer_sees_a_picture_within_one_second_of_connecting(server, browsers, tmp_path):
    teacher = open_teacher(browsers, server, "late")
    go_live(teacher)
    time.sleep(2.0)  # the lesson has been going on for a while
    delays = []
    for n in range(2):  # two classrooms join one after the other
        terminal = open_terminal(browsers, server, "late", name=f"terminal{n}")
        records = wait_until("the terminal's first decoded frame",
                             lambda: [d for d in first_frame_delays_ms(terminal) if d is not None], 10, 0.1,
                             detail=lambda: terminal.evaluate("window.__lcTiming"))
        delays.append(records[0])
        expect_terminal_live(terminal, timeout=5)
        assert len(terminal.evaluate("window.__lcTiming")) == 1, "the terminal needed more than one session"
        terminal.screenshot(path=str(tmp_path / f"terminal{n}-joined.png"))
        page_ms = terminal.evaluate("window.liveclass.firstFrameMs")
        print(f"\nlate viewer {n}: first frame decoded {records[0]:.0f} ms after connected "
              f"(page's own measurement {page_ms} ms)")
        time.sleep(0.7)
    assert all(d <= 1000 for d in delays), f"connected → first frame took {delays} ms"


def test_terminal_follows_the_teacher_stopping_and_going_live_again(server, browsers, tmp_path):
    teacher = open_teacher(browsers, server, "again")
    go_live(teacher)
    terminal = open_terminal(browsers, server, "again")
    expect_terminal_live(terminal, timeout=15)
    expect_frames_rising(terminal, "before the break", 5)

    # a break: the lesson stops; the classroom sees that it is no longer live
    stop_lesson(teacher)
    sync_api.expect(terminal.locator("#overlay")).to_be_visible(timeout=10_000)
    sync_api.expect(terminal.locator("#overlay-title")).to_have_text(re.compile("Reconnecting…|Waiting for the lesson…"))
    sync_api.expect(terminal.locator("#badge")).to_be_hidden()
    terminal.screenshot(path=str(tmp_path / "terminal-break.png"))
    # and settles on "waiting" once a new session is up but nothing comes
    sync_api.expect(terminal.locator("#overlay-title")).to_have_text("Waiting for the lesson…", timeout=10_000)

    # the teacher goes live again: the terminal plays again by itself
    t0 = time.monotonic()
    go_live(teacher)
    expect_frames_rising(terminal, "after going live again", 10)
    expect_terminal_live(terminal, timeout=5)
    resumed_after = time.monotonic() - t0
    terminal.screenshot(path=str(tmp_path / "terminal-resumed.png"))

    # a short interruption (Stop and straight back): the terminal keeps or renews its session and plays on
    stop_lesson(teacher)
    go_live(teacher)
    t1 = time.monotonic()
    expect_frames_rising(terminal, "after a quick stop/start", 10, at_least=30)
    expect_terminal_live(terminal, timeout=5)
    quick_after = time.monotonic() - t1

    sessions = terminal.evaluate("window.liveclass.sessions")
    room = room_stats(server, "again")
    assert room is not None and len(room["viewers"]) == 1, \
        f"the terminal's old sessions were not ended (DELETE): {room and room['viewers']}"
    print(f"\nterminal resumed {resumed_after:.1f} s after Go live (long break), {quick_after:.1f} s "
          f"(quick stop/start); {sessions} WHEP sessions used")


def test_terminal_opened_before_the_lesson_waits_then_plays_by_itself(server, browsers, tmp_path):
    terminal = open_terminal(browsers, server, "early")
    sync_api.expect(terminal.locator("#overlay-title")).to_have_text("Waiting for the lesson…")
    # connected to the server and waiting (not just loading)
    sync_api.expect(terminal.locator("#overlay-detail")).to_have_text(
        "The picture will appear as soon as the teacher goes live.", timeout=10_000)
    sync_api.expect(terminal.locator("#badge")).to_be_hidden()
    assert terminal.evaluate("window.liveclass.state") == "waiting"
    title_size = terminal.evaluate("parseFloat(getComputedStyle(document.querySelector('#overlay-title')).fontSize)")
    assert title_size >= 40, f"the waiting message is {title_size}px: too small for a classroom screen"
    terminal.screenshot(path=str(tmp_path / "terminal-waiting.png"))
    time.sleep(2.0)
    assert terminal.evaluate("window.liveclass.state") == "waiting"

    teacher = open_teacher(browsers, server, "early")
    t0 = time.monotonic()
    go_live(teacher)
    expect_terminal_live(terminal, timeout=15)
    expect_frames_rising(terminal, "once the teacher went live", 10, at_least=20)
    started_after = time.monotonic() - t0
    terminal.screenshot(path=str(tmp_path / "terminal-started.png"))
    print(f"\nterminal opened early started playing {started_after:.1f} s after Go live, "
          f"{terminal.evaluate('window.liveclass.sessions')} WHEP session(s)")


def test_pages_show_the_servers_reason_when_refused(server, browsers, tmp_path):
    # a second teacher cannot take over a live room: their page says why
    first = open_teacher(browsers, server, "busy")
    go_live(first)
    second = browsers.open(page_url(server, "teacher", "busy", "teacher"), "teacher2")
    sync_api.expect(second.locator("#message")).to_contain_text("Camera ready", timeout=15_000)
    second.get_by_role("button", name="Go live").click()
    sync_api.expect(second.locator("#state")).to_have_text("Error", timeout=15_000)
    sync_api.expect(second.locator("#message")).to_contain_text("room busy already has a publisher")
    sync_api.expect(second.get_by_role("button", name="Go live")).to_be_enabled()
    assert second.evaluate("window.liveclass.state") == "error"
    sync_api.expect(first.locator("#state")).to_have_text("Live")  # the lesson itself goes on
    second.screenshot(path=str(tmp_path / "teacher-refused.png"))

    # a terminal with a token signed by someone else shows the server's reason in large text
    forged = mint("not-the-server-secret-0123456789abcdef", "busy", "terminal")
    query = urllib.parse.urlencode({"room": "busy", "token": forged})
    terminal = browsers.open(f"{server.base_url}/terminal.html?{query}", "terminal")
    sync_api.expect(terminal.locator("#overlay-title")).to_have_text("Cannot play the lesson", timeout=10_000)
    sync_api.expect(terminal.locator("#overlay-detail")).to_contain_text("invalid access token: Signature verification failed")
    assert terminal.evaluate("window.liveclass.state") == "error"
    terminal.screenshot(path=str(tmp_path / "terminal-refused.png"))


# The remote end of the page's selected ICE candidate pair: where the server's media came from.
SELECTED_REMOTE_SCRIPT = """
async () => {
  const pc = window.liveclass && window.liveclass.pc;
  if (!pc) return null;
  const report = await pc.getStats();
  let pair = null;
  report.forEach((s) => { if (s.type === "transport" && s.selectedCandidatePairId) pair = report.get(s.selectedCandidatePairId); });
  if (!pair) report.forEach((s) => { if (s.type === "candidate-pair" && s.nominated && s.state === "succeeded") pair = s; });
  const remote = pair && report.get(pair.remoteCandidateId);
  return remote ? { address: remote.address || remote.ip, port: remote.port } : null;
}
"""


def test_classrooms_share_the_servers_one_udp_port_and_a_reloaded_page_plays_again(server, browsers):
    teacher = open_teacher(browsers, server, "oneport")
    go_live(teacher)
    a = open_terminal(browsers, server, "oneport", "terminal-a")
    b = open_terminal(browsers, server, "oneport", "terminal-b")
    for page in (a, b):
        expect_terminal_live(page, 20)
        expect_frames_rising(page, "a classroom", 15)
    ports = udp_sockets_of(server.proc.pid)
    assert len(ports) == 1, f"the server holds UDP sockets on {ports}"
    remotes = [wait_until("the selected pair", lambda p=p: p.evaluate(SELECTED_REMOTE_SCRIPT), 10)
               for p in (teacher, a, b)]
    assert {r["port"] for r in remotes} == set(ports), remotes   # the teacher's and both classrooms' media
    # one classroom reloads its page (a new peer connection from the same machine): it plays again, and the
    # other never stopped
    a.reload()
    expect_terminal_live(a, 20)
    expect_frames_rising(a, "the reloaded classroom", 15)
    expect_frames_rising(b, "the other classroom", 10)
    assert udp_sockets_of(server.proc.pid) == ports
