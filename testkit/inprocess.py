"""The real aiohttp app served in this process on a free loopback port, for tests that need its HTTP and
WebSocket surface but not a `liveclass serve` subprocess."""
from __future__ import annotations

from contextlib import asynccontextmanager
from typing import AsyncIterator

import aiohttp
from aiohttp import web


@asynccontextmanager
async def serve_app(app: web.Application) -> AsyncIterator[tuple[str, aiohttp.ClientSession]]:
    """(base URL, a client session) while `app` is served; the app's cleanup runs once the block is done."""
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    async with aiohttp.ClientSession() as http:
        yield f"http://127.0.0.1:{port}", http
    await runner.cleanup()
