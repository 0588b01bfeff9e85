"""Background services that live as long as the aiohttp application: started with it, stopped with it."""
from __future__ import annotations

from typing import Awaitable, Callable

from aiohttp import web


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
