"""Give memory back after a burst of closed sessions: one full garbage collection, then glibc's malloc_trim.

A closed session is freed only by the cyclic collector (aiortc's peer connections are full of reference cycles),
so a burst of closes (a lesson ending, a school's link dropping) left its sessions as garbage until some later
full collection, which ran while the next burst was being built: both bursts' memory at once, and the glibc
heap fragmented by them never shrank. Collecting once the closes have calmed frees the burst while nothing new
is mixed in, and malloc_trim returns the freed heap pages to the OS. Measured with 250 viewer sessions opened
and deleted per round: RSS flat from the first round on (it crept by 15 MB over three rounds without it), and
21 MB lower. The collection costs what the automatic one would have (it frees the same objects), the trim a
few milliseconds. The policy is pure: the time is passed in.
"""
from __future__ import annotations

import asyncio
import ctypes
import gc
import logging
import math
import time
from dataclasses import dataclass
from typing import Callable, Optional

log = logging.getLogger(__name__)

MIN_CLOSED = 32       # sessions closed since the last relief before one is worth a full collection
QUIET_S = 1.0         # ... and no session opened or closed for this long: the burst is over, and a collection
                      # in the middle of the next one would find its garbage mixed with new live sessions
MIN_INTERVAL_S = 5.0  # at most one relief this often, whatever the churn


@dataclass
class ReliefPolicy:
    min_closed: int = MIN_CLOSED
    quiet_s: float = QUIET_S
    min_interval_s: float = MIN_INTERVAL_S
    pending: int = 0
    last_activity: float = -math.inf
    last_relief: float = -math.inf

    def opened(self, now: float) -> None:
        self.last_activity = now

    def closed(self, now: float) -> None:
        self.pending += 1
        self.last_activity = now

    def next_check(self) -> Optional[float]:
        """When a relief may be due (None: not enough closes yet)."""
        if self.pending < self.min_closed:
            return None
        return max(self.last_activity + self.quiet_s, self.last_relief + self.min_interval_s)

    def due(self, now: float) -> bool:
        at = self.next_check()
        return at is not None and now >= at

    def relieved(self, now: float) -> None:
        self.pending = 0
        self.last_relief = now


def _malloc_trim() -> Callable[[], object]:
    """glibc's malloc_trim(0), or nothing where the C library has none (musl, macOS)."""
    try:
        trim = ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return lambda: None
    trim.argtypes = [ctypes.c_size_t]
    return lambda: trim(0)


class HeapRelief:
    """Hears of sessions opened and closed and runs the relief on the event loop when the policy says so."""

    def __init__(self, policy: Optional[ReliefPolicy] = None) -> None:
        self.policy = policy or ReliefPolicy()
        self.runs = 0
        self._trim = _malloc_trim()
        self._handle: Optional[asyncio.TimerHandle] = None

    def opened(self) -> None:
        self.policy.opened(time.monotonic())

    def closed(self) -> None:
        self.policy.closed(time.monotonic())
        self._schedule()

    def _schedule(self) -> None:
        at = self.policy.next_check()
        if at is None or self._handle is not None:
            return
        self._handle = asyncio.get_running_loop().call_later(max(0.0, at - time.monotonic()), self._check)

    def _check(self) -> None:
        self._handle = None
        now = time.monotonic()
        if not self.policy.due(now):  # sessions came and went meanwhile: look again once they calm
            self._schedule()
            return
        sessions = self.policy.pending
        t0 = time.perf_counter()
        freed = gc.collect()
        t1 = time.perf_counter()
        self._trim()
        t2 = time.perf_counter()
        self.policy.relieved(time.monotonic())
        self.runs += 1
        log.info("memory of %d closed sessions freed: %d objects collected in %.0f ms, heap trimmed in %.0f ms",
                 sessions, freed, (t1 - t0) * 1000, (t2 - t1) * 1000)

    def cancel(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
