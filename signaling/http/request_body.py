"""Reading a request's body whole, within a size and a time limit.

`StreamReader.read(n)` returns as soon as *some* bytes are there: on a slow or lossy link a body arrives in
several TCP segments, and a single read would hand an SDP offer cut in the middle to the parser (seen as an
"RTCP mux is not enabled" refusal of a terminal behind a 300 kbit/s link). A client that sends its headers and
then stalls must not hold the handler either."""
from __future__ import annotations

import asyncio

from aiohttp import web

BODY_TIMEOUT_S = 15.0  # a few kilobytes take well under a second even over a thin, lossy school link


async def read_body(request: web.Request, limit: int, what: str = "body",
                    timeout_s: float = BODY_TIMEOUT_S) -> bytes:
    """The whole body, or 413 beyond `limit` bytes, or 408 when it has not all arrived within `timeout_s`."""
    if request.content_length is not None and request.content_length > limit:
        raise _too_large(limit, request.content_length, what)
    chunks: list[bytes] = []
    size = 0
    try:
        async with asyncio.timeout(timeout_s):
            while chunk := await request.content.read(limit + 1 - size):
                chunks.append(chunk)
                size += len(chunk)
                if size > limit:
                    raise _too_large(limit, size, what)
    except TimeoutError:
        raise web.HTTPRequestTimeout(text=f"{what} did not arrive within {timeout_s:g} s") from None
    return b"".join(chunks)


def _too_large(limit: int, size: int, what: str) -> web.HTTPRequestEntityTooLarge:
    return web.HTTPRequestEntityTooLarge(limit, size, text=f"{what} too large (over {limit:,} bytes)")
