"""Stopping a child process politely: SIGTERM, a grace period, then SIGKILL."""
from __future__ import annotations

import subprocess
from typing import Optional

GRACE_S = 5.0


def stop_process(proc: Optional[subprocess.Popen], grace_s: float = GRACE_S) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(grace_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
