"""A body that arrives in pieces (a slow or lossy link splits it over several TCP segments) is read whole; one
that stalls or overflows gets a clear 408 or 413, and the handler is not held."""
from __future__ import annotations

import asyncio
from urllib.parse import urlsplit

from aiohttp import web

from signaling.http.request_body import read_body
from testkit.peers import offer


async def raw_post(base: str, path: str, headers: dict[str, str], pieces: list[bytes],
                   gap_s: float) -> tuple[int, bytes]:
    """POST over a bare socket, the body written in `pieces` with `gap_s` between them; (status, body)."""
    url = urlsplit(base)
    reader, writer = await asyncio.open_connection(url.hostname, url.port)
    try:
        body_size = sum(map(len, pieces))
        head = [f"POST {path} HTTP/1.1", f"Host: {url.netloc}", f"Content-Length: {body_size}", "Connection: close"]
        head += [f"{k}: {v}" for k, v in headers.items()]
        writer.write(("\r\n".join(head) + "\r\n\r\n").encode())
        for piece in pieces:
            await writer.drain()
            await asyncio.sleep(gap_s)
            writer.write(piece)
        await writer.drain()
        return await asyncio.wait_for(read_response(reader), 20)
    finally:
        writer.close()


async def read_response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    head = (await reader.readuntil(b"\r\n\r\n")).decode()
    length = next(int(line.split(":")[1]) for line in head.split("\r\n") if line.lower().startswith("content-length"))
    return int(head.split()[1]), await reader.readexactly(length)


async def test_offer_in_pieces_is_answered(server):
    sdp = (await offer("recvonly")).encode()
    third = len(sdp) // 3
    pieces = [sdp[:third], sdp[third:2 * third], sdp[2 * third:]]
    headers = {"Content-Type": "application/sdp", "Authorization": f"Bearer {server.token('slow', 'terminal')}"}
    status, body = await raw_post(server.base_url, "/whep/slow", headers, pieces, gap_s=0.3)
    assert status == 201, body
    assert b"a=rtcp-mux" in body and body.count(b"m=") == 2


async def serve(handler) -> tuple[web.AppRunner, str]:
    app = web.Application()
    app.router.add_post("/", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return runner, f"http://127.0.0.1:{port}"


async def test_stalled_and_oversized_bodies_are_refused():
    async def handler(request: web.Request) -> web.Response:
        body = await read_body(request, limit=1000, what="note", timeout_s=0.5)
        return web.Response(text=f"got {len(body)}")

    runner, base = await serve(handler)
    try:
        status, body = await raw_post(base, "/", {}, [b"x" * 400, b"y" * 600], gap_s=0.2)
        assert (status, body) == (200, b"got 1000")
        # Content-Length promises 1000 bytes and 300 come: 408, well before the client gives up
        url = urlsplit(base)
        reader, writer = await asyncio.open_connection(url.hostname, url.port)
        writer.write(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n" + b"z" * 300)
        status, body = await asyncio.wait_for(read_response(reader), 5)
        writer.close()
        assert status == 408 and body.startswith(b"note did not arrive within 0.5 s"), body
        # chunked bodies carry no length to refuse up front: counted as they come
        reader, writer = await asyncio.open_connection(url.hostname, url.port)
        chunk = b"a" * 600
        writer.write(b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
                     + b"%x\r\n%s\r\n" % (len(chunk), chunk) * 2 + b"0\r\n\r\n")
        status, body = await asyncio.wait_for(read_response(reader), 5)
        writer.close()
        assert status == 413 and body.startswith(b"note too large (over 1,000 bytes)"), body
    finally:
        await runner.cleanup()
