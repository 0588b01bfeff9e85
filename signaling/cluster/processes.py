"""Stopping a child process politely: SIGTERM (or another signal), a grace period, then SIGKILL."""
from __future__ import annotations

import signal
import subprocess
from typing import Optional

GRACE_S = 5.0


def stop_process(proc: Optional[subprocess.Popen], grace_s: float = GRACE_S, sig: int = signal.SIGTERM) -> None:
    """Ask a child to stop with `sig`, and kill it if it has not within `grace_s`."""
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(sig)
    try:
        proc.wait(grace_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
