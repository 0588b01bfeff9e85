"""The smallest `bench/fanout.py --against janus`: the same publisher and non-decoding viewers against
`liveclass serve` and against Debian's Janus VideoRoom in one invocation. Every viewer on both servers gets
the video with no loss, and the output has both CPU figures and the ratio ours/janus (the numbers themselves
mean nothing at N=5: this checks that the comparison works, bench/fanout.py measures)."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
N = 5

pytestmark = pytest.mark.skipif(shutil.which("janus") is None,
                                reason="needs Debian's janus (apt-get install janus; scripts/test.sh installs it)")


@pytest.mark.timeout(150)
def test_fanout_against_janus_smoke(tmp_path) -> None:
    from bench.clips import ensure_clip
    ensure_clip()  # the 720p bench clip is encoded once and cached: not part of the timed run

    t = time.monotonic()
    proc = subprocess.run(
        [sys.executable, str(REPO / "bench" / "fanout.py"), "--against", "janus", "-n", str(N), "--window", "3",
         "--settle", "0.5", "--max-windows", "1", "--batch", str(N), "--no-stagger", "--run-timeout", "50",
         "--logs", str(tmp_path / "logs")],
        cwd=REPO, capture_output=True, text=True, timeout=120)
    took = time.monotonic() - t
    print(proc.stdout[-4000:], proc.stderr[-4000:], f"took {took:.1f} s", sep="\n")
    assert proc.returncode == 0, proc.stderr[-3000:]

    records = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    runs = {r["sfu"]: r for r in records if r.get("bench") == "fanout"}
    assert set(runs) == {"liveclass", "janus"}, records
    for sfu, r in runs.items():
        assert "error" not in r, (sfu, r)
        assert r["join"]["failed"] == 0 and r["join"]["no_keyframe"] == 0, (sfu, r["join"])
        assert r["published_packets"].get("video", 0) > 0, (sfu, r["published_packets"])
        assert r["viewer_distinct_mean"]["video"] > 0, (sfu, r["viewer_distinct_mean"])
        # every viewer got every video and audio packet the publisher sent in the window
        assert r["loss_pct"]["worst"] == 0 and r["loss_pct"]["video_worst"] == 0, (sfu, r["loss_pct"])
        assert r["gap_loss_pct"]["worst"] == 0, (sfu, r["gap_loss_pct"])
        assert r["sfu_cpu_ms_per_viewer_s"] > 0, (sfu, r)
        assert r["load_generator"]["sfu_pinned_to_cpu"] == 0

    (c,) = [r for r in records if r.get("bench") == "fanout-vs-janus"]
    assert c["n"] == N
    assert c["valid"] and not c["issues"], c
    ours, janus = c["liveclass"]["sfu_cpu_ms_per_viewer_s"], c["janus"]["sfu_cpu_ms_per_viewer_s"]
    assert ours > 0 and janus > 0
    assert c["ratio_cpu_ours_over_janus"] == pytest.approx(ours / janus, rel=0.01)
    assert c["ratio_cpu_exact_ours_over_janus"] is not None
    assert any(line.startswith("fanout vs janus: N=5") for line in proc.stdout.splitlines()), proc.stdout
