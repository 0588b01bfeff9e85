"""Event-loop lag: a task that sleeps a fixed interval and records how late it woke (the loop was busy: a long
callback, a garbage collection), reported as the worst lag over the last window. The window is pure: the time
is passed in."""
from __future__ import annotations

import asyncio
import collections
import time
from typing import Optional

from aiohttp import web
from signaling.http import lifetime

INTERVAL_S = 0.1   # how often the monitor wakes: lag shorter than the loop's own granularity is noise anyway
WINDOW_S = 10.0    # the gauge: the worst lag over this long


def lateness(slept_at: float, interval: float, woke_at: float) -> float:
    """How much later than asked a sleep of `interval` begun at `slept_at` ended."""
    return max(0.0, woke_at - slept_at - interval)


class LagWindow:
    """The lags seen in the last `window_s` seconds (at most one per wake, so bounded by window / interval)."""

    def __init__(self, window_s: float = WINDOW_S) -> None:
        self.window_s = window_s
        self._samples: collections.deque[tuple[float, float]] = collections.deque()
        self.total_max = 0.0   # the worst since the start

    def add(self, lag: float, now: float) -> None:
        self._samples.append((now, lag))
        self.total_max = max(self.total_max, lag)
        self._forget(now)

    def worst(self, now: float) -> float:
        self._forget(now)
        return max((lag for _, lag in self._samples), default=0.0)

    def _forget(self, now: float) -> None:
        while self._samples and self._samples[0][0] < now - self.window_s:
            self._samples.popleft()


class LoopLagMonitor:
    def __init__(self, interval_s: float = INTERVAL_S, window_s: float = WINDOW_S) -> None:
        self.interval_s = interval_s
        self.window = LagWindow(window_s)
        self._task: Optional[asyncio.Task] = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="loop-lag")

    async def _run(self) -> None:
        while True:
            slept_at = time.monotonic()
            await asyncio.sleep(self.interval_s)
            now = time.monotonic()
            self.window.add(lateness(slept_at, self.interval_s, now), now)

    def worst(self) -> float:
        return self.window.worst(time.monotonic())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None


LOOP_LAG = web.AppKey("loop_lag", LoopLagMonitor)


def setup(app: web.Application) -> LoopLagMonitor:
    """Run a monitor for the application's lifetime at app[LOOP_LAG]."""
    monitor = LoopLagMonitor()
    app[LOOP_LAG] = monitor
    lifetime.for_app_lifetime(app, monitor.start, monitor.stop, stop_first=False)
    return monitor
