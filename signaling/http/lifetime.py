"""Background services that live as long as the aiohttp application: started with it, stopped with it."""
from __future__ import annotations

import asyncio
import logging
from typing import Any, Awaitable, Callable, Coroutine

from aiohttp import web

log = logging.getLogger(__name__)


class TaskSet:
    """Fire-and-forget work a service starts (ending sessions, starting a recording): each task is held until it
    ends (asyncio keeps only weak references), its failure is logged, and `wait()` lets a closing service see
    them finish."""

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task] = set()

    def spawn(self, coro: Coroutine[Any, Any, Any], what: str) -> None:
        task = asyncio.get_running_loop().create_task(coro, name=what)
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("%s failed", task.get_name(), exc_info=task.exception())

    async def wait(self) -> None:
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)


def for_app_lifetime(app: web.Application, start: Callable[[], None], stop: Callable[[], Awaitable[object]],
                     stop_first: bool = True) -> None:
    """Start at the application's startup; stop at its shutdown, before anything else registered there when
    `stop_first` (it still needs live connections to finish: pub/sub, sessions), else at cleanup."""
    async def on_startup(app: web.Application) -> None:
        start()

    async def on_stop(app: web.Application) -> None:
        await stop()

    app.on_startup.append(on_startup)
    if stop_first:
        app.on_shutdown.insert(0, on_stop)
    else:
        app.on_cleanup.append(on_stop)
