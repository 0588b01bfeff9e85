"""Real links (design §8 level 4): a classroom terminal behind a network namespace whose downlink is capped with
`tc tbf`, next to one on loopback, both real headless Chromium.

- the harness itself: a capped link carries what the cap says, an uncapped one much more;
- the issue's scenario with the teacher page (browser simulcast) and with a single-layer WHIP publisher (the
  server-side ladder's case): the harness tests check that the namespaced browser plays over the veth and that
  the cap really bites; the acceptance tests check what the classroom sees when the link thins and recovers.

Needs root (namespaces, tc) and Debian's /usr/bin/chromium; skips with the reason otherwise.
"""
from __future__ import annotations

import http.server
import json
import re
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from testkit.capped_link import Scenario, ScenarioResult, run_scenario
from testkit.netns import LinkNamespace, clean_stale, tbf_args
from testkit.playback import (
    counter_delta, frozen_time, loss_fraction, rates_per_slice, summarize, time_to_full, time_to_lower,
)

CAP_KBIT = 500


# --- the measurement functions, on made-up samples -----------------------------------------------------------

def _samples(spec: list[tuple[float, float, int, int]], session: int = 1, start: float = 100.0) -> list[dict]:
    """(duration s, fps, height, lost per s) segments → 100 ms samples with cumulative counters."""
    out, t, frames, lost, received = [], start, 0.0, 0.0, 0.0
    for duration, fps, height, loss_per_s in spec:
        for _ in range(round(duration * 10)):
            t += 0.1
            frames += fps * 0.1
            lost += loss_per_s * 0.1
            received += 90 * 0.1
            out.append({"t": round(t, 3), "session": session, "width": height * 16 // 9, "height": height,
                        "frames": int(frames), "lost": int(lost), "received": int(received), "bytes": int(received) * 1000})
    return out


def test_playback_metrics_on_made_up_samples():
    # 720p at 20 fps; cap at t=102: 0.8 s without frames, slowly back (the next frame at 103.0), then 180p
    # at 5 fps from 103.1; 10 packets/s lost for 1 s after the cap; 720p again from 109.1
    s = _samples([(2, 20, 720, 0), (0.8, 0, 720, 10), (0.2, 5, 720, 10), (6, 5, 180, 0), (2, 20, 720, 0)])
    t_cap = 102.0
    assert time_to_lower(s, t_cap) == pytest.approx(1.1, abs=0.01)   # first sample showing 180 lines
    assert frozen_time(s, t_cap, 111) == pytest.approx(1.0, abs=0.01)  # last frame 102.0 → next 103.0
    # 5 fps is slow, not frozen (Chromium's rule: three typical gaps)
    assert frozen_time(_samples([(5, 5, 180, 0)]), 100, 105) == 0
    assert loss_fraction(s, t_cap, t_cap + 1) == pytest.approx(10 / 100, abs=0.02)
    assert loss_fraction(s, t_cap + 2, t_cap + 8) == 0
    assert time_to_full(s, 109.0) == pytest.approx(0.1, abs=0.01)
    assert time_to_lower(s, 111.0) is None and time_to_full(_samples([(3, 0, 720, 0)]), 100) is None
    assert frozen_time(_samples([(3, 0, 720, 0)]), 100, 103) == pytest.approx(3)  # never played: all frozen
    # a reconnection: counters restart with the new session and still add up
    two = _samples([(2, 20, 720, 0)]) + _samples([(2, 20, 720, 0)], session=2, start=102.0)
    assert counter_delta(two, "frames", 101, 104) == pytest.approx(60, abs=2)
    assert min(rates_per_slice(two, "frames", 100.5, 103.5)) >= 18
    # halved frame rate at full height from 0.3 s after the cap: that is a lower layer too
    half = _samples([(2, 20, 720, 0), (0.3, 20, 720, 0), (3, 10, 720, 0)])
    assert summarize(half, 102.0, 105.0, t_start=100.0)["switch_down_s"] == pytest.approx(0.2, abs=0.15)  # 1 s windows
    assert summarize(half, 102.0, 105.0, t_start=100.0)["resolution_down_s"] is None
    m = summarize(s, t_cap, 111.0, t_start=100.0)
    assert m["heights_capped"] == [180, 720] and m["resolution_down_s"] == pytest.approx(1.1, abs=0.01)
    assert m["switch_down_s"] == pytest.approx(1.0, abs=0.01)  # the 5 fps came a frame before the 180p


def test_tbf_arguments():
    # the bucket holds at least one full packet plus headroom, else 1500-byte packets never pass
    assert tbf_args(100, None, 150) == ["tbf", "rate", "100kbit", "burst", "3000", "latency", "150ms"]
    assert tbf_args(50_000, None, 100)[4] == str(62_500)  # 10 ms at 50 Mbit/s
    assert tbf_args(500, 200, 150)[4] == "1600"


# --- fixtures -----------------------------------------------------------------------------------------------

def _run(chromium, tmp_path_factory, name: str, sc: Scenario) -> ScenarioResult:
    workdir = tmp_path_factory.mktemp(name)
    result = run_scenario(chromium, workdir, sc)
    (workdir / "result.json").write_text(json.dumps({
        "metrics": result.metrics, "ice": result.ice, "t_cap": result.t_cap, "t_lift": result.t_lift,
        "t_full": result.t_full, "samples": result.samples, "server": result.server_samples}))
    print(f"\n{name}: {json.dumps(result.metrics)}\nICE {result.ice}\n{result.qdisc_capped.strip()}")
    return result


# the lesson's source: the teacher page (browser simulcast) or a single-layer WHIP publisher (the ladder's case)
SOURCES = ["teacher-page", "whip-clip"]
# B's frame rate floor in the harness checks: the fake camera sends 20 fps (today's SFU may halve it for B,
# which the acceptance test reports); the clip is 30 fps
MIN_FPS_B = {"teacher-page": 5, "whip-clip": 25}


@pytest.fixture(scope="module", params=SOURCES)
def scenario_run(request, chromium, tmp_path_factory, clip720) -> ScenarioResult:
    sc = Scenario(source=request.param, clip=clip720, cap_kbit=CAP_KBIT)
    return _run(chromium, tmp_path_factory, request.param, sc)


# --- the harness: a capped link really caps -----------------------------------------------------------------

class _Zeros(http.server.BaseHTTPRequestHandler):
    """Serves zeros for up to 30 s (the client hangs up sooner). The announced length must outlast any
    measurement: an uncapped veth on a quiet machine carries 1 GiB in under the download's 0.5 s warm-up."""

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", str(1 << 40))
        self.end_headers()
        chunk, deadline = bytes(64 * 1024), time.monotonic() + 30
        try:
            while time.monotonic() < deadline:
                self.wfile.write(chunk)
        except OSError:
            pass

    def log_message(self, *args) -> None:
        pass


# Run inside the namespace: download for `seconds`, print the rate (bit/s) after a 0.5 s warm-up.
_DOWNLOAD = """
import sys, time, urllib.request
url, seconds = sys.argv[1], float(sys.argv[2])
r = urllib.request.urlopen(url, timeout=5)
t0 = time.monotonic(); warm = t0 + 0.5; n = 0; tw = None
while time.monotonic() < t0 + seconds:
    k = len(r.read(16384))
    if not k: break
    now = time.monotonic()
    if now >= warm:
        if tw is None: tw = now
        else: n += k
if tw is None:
    sys.exit("the download ended before its 0.5 s warm-up")
print(8 * n / (time.monotonic() - tw))
"""

# Run inside the namespace: send for `seconds` (the host side counts what arrives).
_UPLOAD = """
import socket, sys, time
s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=5)
end = time.monotonic() + float(sys.argv[3]); chunk = bytes(16384)
while time.monotonic() < end:
    s.sendall(chunk)
s.close()
"""


def _download_bps(ns: LinkNamespace, url: str, seconds: float) -> float:
    r = ns.run([sys.executable, "-c", _DOWNLOAD, url, str(seconds)], timeout=seconds + 10)
    assert r.returncode == 0, r.stderr
    return float(r.stdout.strip())


def _upload_bps(ns: LinkNamespace, seconds: float) -> float:
    """Bits per second the host received from the namespace, after a 0.5 s warm-up."""
    with socket.create_server((ns.host_ip, 0)) as srv:
        srv.settimeout(5)
        port = srv.getsockname()[1]
        proc = ns.popen([sys.executable, "-c", _UPLOAD, ns.host_ip, str(port), str(seconds)])
        try:
            conn, _ = srv.accept()
            conn.settimeout(2)
            t0, n, tw, last = time.monotonic(), 0, None, None
            with conn:
                while time.monotonic() < t0 + seconds + 2:
                    try:
                        data = conn.recv(65536)
                    except socket.timeout:
                        break
                    if not data:
                        break
                    now = time.monotonic()
                    if now >= t0 + 0.5:
                        if tw is None:
                            tw = now
                        else:
                            n += len(data)
                            last = now
            assert tw is not None and last is not None and last > tw, "the upload did not get going"
            return 8 * n / (last - tw)
        finally:
            proc.wait(10)


@pytest.mark.timeout(60)
def test_capped_link_carries_what_the_cap_says(netns_ok):
    srv = http.server.ThreadingHTTPServer(("0.0.0.0", 0), _Zeros)
    srv.daemon_threads = True
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        with LinkNamespace() as ns:
            inside = ns.run(["ip", "-o", "-4", "addr", "show"]).stdout
            assert f"inet {ns.ns_ip}/30" in inside and f"inet {ns.host_ip}/" not in inside, inside
            url = f"http://{ns.host_ip}:{srv.server_address[1]}/"
            free = _download_bps(ns, url, 1.5)
            ns.cap_downlink(CAP_KBIT)
            capped = _download_bps(ns, url, 4.5)
            ns.cap_uplink(CAP_KBIT)
            up = _upload_bps(ns, 4.0)
            ns.lift()
            again = _download_bps(ns, url, 1.5)
            stats = ns.qdisc_stats()
        print(f"\ndownload uncapped {free / 1e6:.1f} Mbit/s, capped at {CAP_KBIT} kbit/s: {capped / 1e3:.0f} kbit/s "
              f"down, {up / 1e3:.0f} kbit/s up; lifted {again / 1e6:.1f} Mbit/s")
    finally:
        srv.shutdown()
        srv.server_close()
    cap = CAP_KBIT * 1000
    assert 0.7 * cap <= capped <= 1.3 * cap, f"capped download {capped / 1e3:.0f} kbit/s"
    assert 0.7 * cap <= up <= 1.3 * cap, f"capped upload {up / 1e3:.0f} kbit/s"
    assert free > 20 * cap and again > 20 * cap, f"uncapped {free / 1e6:.1f} / lifted {again / 1e6:.1f} Mbit/s"
    assert "tbf" not in stats, f"lift() left a qdisc: {stats}"


def test_leftovers_of_a_dead_run_are_removed(netns_ok):
    dead = next(p for p in range(4_000_000, 3_000_000, -1) if not Path(f"/proc/{p}").exists())
    name = f"lc-{dead}-beef"
    subprocess.run(["ip", "netns", "add", name], check=True, timeout=10)
    subprocess.run(["ip", "link", "add", f"lc{dead}hbeef", "type", "veth", "peer", "name", f"lc{dead}nbeef"],
                   check=True, timeout=10)
    with LinkNamespace() as live:  # entering cleans up; a live run's namespace is left alone
        assert name not in subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
        assert f"lc{dead}hbeef" not in subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
        assert clean_stale() == []
        assert live.name in subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert live.name not in subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout


# --- the scenario: what each terminal sees ------------------------------------------------------------------

def _check_harness(r: ScenarioResult, min_fps_b: float) -> None:
    """What must hold whatever the SFU does: the namespaced terminal plays over the veth, both played full
    height before the cap, the cap bit (the shaper queued/dropped, A's rate fell under it), B was untouched."""
    a, b = r.metrics["A"], r.metrics["B"]
    assert r.ice["A"] and (r.ice["A"]["local"], r.ice["A"]["remote"]) == (r.ns_ip, r.host_ip), \
        f"terminal A's media does not flow over the veth: {r.ice['A']} (veth {r.ns_ip} → {r.host_ip})"
    assert r.ice["B"] and r.ice["B"]["remote"] != r.ns_ip, r.ice["B"]
    assert a["heights_before"] == [720] and b["heights_before"] == [720], (a, b)
    over = re.search(r"overlimits (\d+)", r.qdisc_capped)
    assert over and int(over.group(1)) > 0, f"the shaper never held a packet back: {r.qdisc_capped}"
    assert a["kbps_settled"] is not None and a["kbps_settled"] <= 1.1 * r.scenario.cap_kbit, a
    assert r.samples["A"][-1]["t"] > r.t_lift, "terminal A stopped being sampled"
    assert b["heights_capped"] == [720] and b["frozen_total_s"] <= 0.5, b
    assert b["loss_capped"] is not None and b["loss_capped"] < 0.01, b
    assert b["fps_capped"] >= min_fps_b, b
    assert not r.errors, r.errors


def _adaptation_failures(r: ScenarioResult) -> list[str]:
    """The layer-switch acceptance criteria, all checked so that a report shows every one that fails."""
    a, b = r.metrics["A"], r.metrics["B"]
    out = []
    if a["switch_down_s"] is None or a["switch_down_s"] > 2.0:
        out.append(f"A on a lower layer {a['switch_down_s']} s after the cap (want ≤ 2 s)")
    if a["frozen_capped_s"] > 1.0:
        out.append(f"A frozen {a['frozen_capped_s']} s while capped (want ≤ 1 s)")
    if a["loss_settled"] is None or a["loss_settled"] >= 0.01:
        out.append(f"A loss {a['loss_settled']} once settled (want < 1 %)")
    if a["switch_up_s"] is None or a["switch_up_s"] > 20:
        out.append(f"A back at 720 lines {a['switch_up_s']} s after the lift (want ≤ 20 s)")
    b_heights = sorted(set(b["heights_before"]) | set(b["heights_capped"]))
    if b_heights != [720]:
        out.append(f"B decoded {b_heights} lines (want 720 throughout)")
    b_rates = sorted(rates_per_slice(r.samples["B"], "frames", r.t_full, r.samples["B"][-1]["t"]))
    if b_rates and b_rates[0] < 0.75 * b_rates[int(0.9 * (len(b_rates) - 1))]:
        out.append(f"B's frame rate fell to {b_rates[0]:.0f} fps from {b_rates[-1]:.0f} (want full rate throughout)")
    return out


@pytest.mark.browser
@pytest.mark.timeout(180)
def test_namespaced_terminal_plays_and_the_cap_bites(scenario_run):
    _check_harness(scenario_run, MIN_FPS_B[scenario_run.scenario.source])


@pytest.mark.browser
@pytest.mark.timeout(300)
def test_capped_terminal_drops_layer_fast_and_recovers(scenario_run, chromium, tmp_path_factory, clip720):
    """Browser simulcast: the SFU picks a lower RID; single-layer publisher: a server-side ladder rung.
    Real browsers on a real shaped link on a 2-core machine vary from run to run: a run that misses a
    criterion is run once more, and the second must meet them all (bench/switch.py reports the spread)."""
    source = scenario_run.scenario.source
    failures = _adaptation_failures(scenario_run)
    if failures:
        print(f"\n{source}: first run missed: {'; '.join(failures)}; running it once more")
        again = _run(chromium, tmp_path_factory, f"{source}-again",
                     Scenario(source=source, clip=clip720, cap_kbit=CAP_KBIT))
        failures = _adaptation_failures(again)
        assert not failures, "; ".join(failures) + f"\nA: {again.metrics['A']}\nB: {again.metrics['B']}"
