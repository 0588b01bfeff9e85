"""The lossy-link scenario: one classroom terminal (headless Chromium) behind a namespace link whose downlink is
capped (tc tbf) and loses a share of its UDP at random (nftables), from before the page opens. The lesson comes
from the teacher page (Chromium's fake camera, browser simulcast) or from a one-layer aiortc WHIP publisher of
a pre-encoded clip (the server-side ladder's case), both on loopback. The page's inbound video, audio and
transport statistics are sampled every 100 ms; the figures are testkit/link_metrics.py's over the window's end.
Used by bench/links.py.
"""
from __future__ import annotations

import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from testkit.capped_link import page_url, session_id_of
from testkit.chromium import SELECTED_PAIR_SCRIPT, drain_samples, insecure_origin_args
from testkit.link_lesson import start_link_lesson
from testkit.link_metrics import server_figures, window_figures
from testkit.netns import LinkNamespace

SOURCES = ("teacher-page", "whip-clip")


@dataclass(frozen=True)
class LinkProfile:
    """A downlink: rate cap in kbit/s (0: uncapped) and random UDP loss in per mille."""
    rate_kbit: int
    loss_permille: int = 0

    @classmethod
    def parse(cls, text: str) -> "LinkProfile":
        """"1000:30" → 1 Mbit/s with 3 % loss; "4000" → no loss."""
        rate, _, loss = text.partition(":")
        return cls(int(rate), int(loss or 0))

    @property
    def label(self) -> str:
        return f"{self.rate_kbit}:{self.loss_permille}"

    def describe(self) -> str:
        cap = f"{self.rate_kbit} kbit/s" if self.rate_kbit else "uncapped"
        return f"{cap} + {self.loss_permille / 10:g} % loss"


@dataclass
class LossyScenario:
    profile: LinkProfile
    source: str = "teacher-page"        # or "whip-clip"
    clip: Optional[Path] = None         # for "whip-clip": a 1280x720 VP8 + Opus WebM
    window_s: float = 25.0              # from the terminal page opening
    measure_s: float = 15.0             # the figures cover the window's last measure_s seconds
    queue_ms: float = 150.0             # what the capped link buffers before it drops (tc tbf latency)
    room: str = "lossylink"
    server_args: tuple[str, ...] = ()


@dataclass
class LossyResult:
    scenario: LossyScenario
    samples: list[dict]                 # the terminal's 100 ms samples (LINK_SAMPLER's)
    t_open: float                       # the terminal page was opened
    t_measure: float                    # the measured window: [t_measure, t_end]
    t_end: float
    figures: dict                       # link_metrics.window_figures + first_frame_s
    server: dict                        # link_metrics.server_figures of the terminal's consumer
    source_fps: dict[str, float]        # the teacher page's encoded frame rate per simulcast RID
    nft: dict[str, int]                 # the loss rule's counters: udp_in, udp_dropped
    qdisc: str                          # `tc -s qdisc` of the capped end
    ice: Optional[dict]
    server_samples: list[dict] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


# Every 100 ms: the page's inbound video and audio and its ICE transport, into window.__lcSamples, following
# window.liveclass.pc across reconnections (`session`: counters restart per session). Keys are those of
# testkit/playback.py for video, `a_*` for audio, `tp_*` for the transport; a statistic Chromium does not
# report is null.
LINK_SAMPLER = """
(() => {
  const FIELDS = {
    video: { width: "frameWidth", height: "frameHeight", frames: "framesDecoded", lost: "packetsLost",
             received: "packetsReceived", bytes: "bytesReceived", header_bytes: "headerBytesReceived",
             nacks: "nackCount", plis: "pliCount", rtx_packets: "retransmittedPacketsReceived",
             rtx_bytes: "retransmittedBytesReceived", freeze_total: "totalFreezesDuration", freezes: "freezeCount" },
    audio: { a_samples: "totalSamplesReceived", a_concealed: "concealedSamples",
             a_silent_concealed: "silentConcealedSamples", a_concealment_events: "concealmentEvents",
             a_lost: "packetsLost", a_received: "packetsReceived", a_bytes: "bytesReceived",
             a_fec_packets: "fecPacketsReceived", a_jb_delay: "jitterBufferDelay",
             a_jb_count: "jitterBufferEmittedCount" },
    transport: { tp_bytes: "bytesReceived", tp_packets: "packetsReceived" },
  };
  const samples = (window.__lcSamples = []);
  let busy = false;
  setInterval(async () => {
    const lc = window.liveclass, pc = lc && lc.pc;
    if (busy || !pc || pc.connectionState === "closed") return;
    busy = true;
    try {
      const t = Date.now() / 1000, report = await pc.getStats();
      const found = {};
      report.forEach((s) => {
        if (s.type === "inbound-rtp" && (s.kind === "video" || s.kind === "audio")) found[s.kind] = s;
        if (s.type === "transport" && s.selectedCandidatePairId) found.transport = s;
      });
      if (!found.video && !found.audio) return;
      const sample = { t, session: lc.sessions, width: 0, height: 0, frames: 0 };
      for (const [group, keys] of Object.entries(FIELDS)) {
        for (const [key, name] of Object.entries(keys)) {
          const v = found[group] && found[group][name];
          if (v !== undefined && v !== null) sample[key] = v;
          else if (!(key in sample)) sample[key] = null;
        }
      }
      samples.push(sample);
    } catch (e) { /* the connection closed meanwhile */ } finally { busy = false; }
  }, 100);
})();
"""

# framesEncoded per simulcast RID of the teacher page's camera (time in seconds), for its frame rate.
_FRAMES_ENCODED = """async () => {
  const pc = window.liveclass && window.liveclass.pc;
  const out = { t: Date.now() / 1000, rids: {} };
  if (!pc) return out;
  (await pc.getStats()).forEach((s) => {
    if (s.type === "outbound-rtp" && s.kind === "video") out.rids[s.rid || "-"] = s.framesEncoded || 0;
  });
  return out;
}"""


def encoded_fps(before: dict, after: dict) -> dict[str, float]:
    span = after["t"] - before["t"]
    return {rid: round((n - before["rids"].get(rid, 0)) / span, 2)
            for rid, n in after["rids"].items()} if span > 0 else {}


def _sleep_until(t: float) -> None:
    """Sleep until wall-clock time t (bounded by t itself: never longer than asked)."""
    time.sleep(max(0.0, t - time.time()))


def _first_frame_s(samples: list[dict], t_open: float) -> Optional[float]:
    return next((round(s["t"] - t_open, 2) for s in samples if s["frames"] > 0), None)


def run_lossy(playwright: Any, workdir: Path, sc: LossyScenario) -> LossyResult:
    """One run: about 10 s of setup, then the window; every wait bounded."""
    workdir.mkdir(parents=True, exist_ok=True)
    profile = sc.profile
    with LinkNamespace() as ns, ExitStack() as stack:  # unwinds publisher, browsers, poller, server, namespace
        lesson = start_link_lesson(stack, playwright, workdir, ns, sc.room, sc.source, sc.clip, sc.server_args)
        server, pool, teacher = lesson.server, lesson.pool, lesson.teacher
        # the link is thin and lossy before the terminal arrives, as a rural classroom's is all lesson long
        if profile.rate_kbit:
            ns.cap_downlink(profile.rate_kbit, latency_ms=sc.queue_ms)
        ns.random_loss(profile.loss_permille)
        t_open = time.time()
        page = pool.open(page_url(lesson.ns_base, "terminal", sc.room, server.token(sc.room, "terminal")), "terminal",
                         LINK_SAMPLER, netns=ns.name, extra_args=insecure_origin_args(lesson.ns_base),
                         timeout_ms=30_000)
        t_end = t_open + sc.window_s
        t_measure = t_end - min(sc.measure_s, sc.window_s)
        _sleep_until(t_measure)
        encoded_before = teacher.evaluate(_FRAMES_ENCODED) if teacher else None
        _sleep_until(t_end + 0.25)  # one more sample past the window's end
        source_fps = encoded_fps(encoded_before, teacher.evaluate(_FRAMES_ENCODED)) if teacher else {}
        samples = drain_samples(page)
        ice = page.evaluate(SELECTED_PAIR_SCRIPT)
        session = session_id_of(page)
        nft, qdisc = ns.loss_counters(), ns.qdisc_stats()
        errors = list(pool.errors)
    figures = {**window_figures(samples, t_measure, t_end, profile.rate_kbit),
               "first_frame_s": _first_frame_s(samples, t_open), "sessions": len({s["session"] for s in samples})}
    server_samples = lesson.poller.samples.get(session, [])
    return LossyResult(sc, samples, t_open, t_measure, t_end, figures, server_figures(server_samples, t_measure, t_end),
                       source_fps, nft, qdisc, ice, server_samples, errors)
