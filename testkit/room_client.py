"""A room WebSocket client for tests and benchmarks: send typed messages, wait for the ones you expect."""
from __future__ import annotations

import asyncio
import itertools
import json
from typing import Any, Callable, Optional
from urllib.parse import quote

import aiohttp

Message = dict[str, Any]


class RoomClient:
    _ids = itertools.count(1)

    def __init__(self, http: aiohttp.ClientSession, base_url: str, room: str, token: Optional[str]) -> None:
        self.http = http
        self.url = base_url.replace("http", "ws", 1) + f"/ws/{quote(room)}" + (f"?token={token}" if token else "")
        self.ws: Optional[aiohttp.ClientWebSocketResponse] = None
        self.inbox: list[Message] = []   # every message received, in order
        self._unread: list[Message] = []
        self._arrived = asyncio.Event()
        self._reader: Optional[asyncio.Task] = None
        self.close_code: Optional[int] = None
        self.welcome: Message = {}

    async def connect(self, expect_welcome: bool = True) -> "RoomClient":
        self.ws = await self.http.ws_connect(self.url, max_msg_size=1 << 20)
        self._reader = asyncio.get_running_loop().create_task(self._read())
        if expect_welcome:
            self.welcome = await self.next("welcome")
        return self

    @property
    def identity(self) -> str:
        return self.welcome["you"]["identity"]

    async def _read(self) -> None:
        """Read until the socket ends. The close code is taken from the server's close frame: aiohttp's client
        rewrites `close_code` to 1006 when its close reply finds the connection already shut."""
        assert self.ws is not None
        code: Optional[int] = None
        while True:
            frame = await self.ws.receive()
            if frame.type is aiohttp.WSMsgType.TEXT:
                msg = json.loads(frame.data)
                self.inbox.append(msg)
                self._unread.append(msg)
                self._arrived.set()
            elif frame.type is aiohttp.WSMsgType.CLOSE:
                code = int(frame.data) if frame.data else None
                break
            elif frame.type in (aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.CLOSING, aiohttp.WSMsgType.ERROR):
                break
        self.close_code = code if code is not None else self.ws.close_code
        self._arrived.set()

    async def send_raw(self, data: str | bytes) -> None:
        assert self.ws is not None
        await (self.ws.send_bytes(data) if isinstance(data, bytes) else self.ws.send_str(data))

    async def send(self, type: str, **fields: Any) -> int:
        """Send a message with a fresh id (returned); replies carry it as `ref`."""
        mid = next(self._ids)
        await self.send_raw(json.dumps({"type": type, "id": mid, **fields}))
        return mid

    async def request(self, type: str, timeout: float = 3.0, **fields: Any) -> Message:
        """Send and wait for the `ack`, `pong` or `error` that answers it."""
        mid = await self.send(type, **fields)
        return await self.next(predicate=lambda m: m.get("ref") == mid and m["type"] in ("ack", "pong", "error"),
                               timeout=timeout)

    async def next(self, type: Optional[str] = None, timeout: float = 3.0,
                   predicate: Optional[Callable[[Message], bool]] = None, **match: Any) -> Message:
        """The first unread message of `type` matching `match`/`predicate` (earlier others stay unread)."""
        def fits(m: Message) -> bool:
            return ((type is None or m.get("type") == type) and all(m.get(k) == v for k, v in match.items())
                    and (predicate is None or predicate(m)))

        async def find() -> Message:
            while True:
                for i, m in enumerate(self._unread):
                    if fits(m):
                        return self._unread.pop(i)
                if self.close_code is not None:
                    raise ConnectionError(f"closed with {self.close_code} while waiting for {type} {match}")
                self._arrived.clear()
                await self._arrived.wait()
        return await asyncio.wait_for(find(), timeout)

    def unread(self, type: Optional[str] = None) -> list[Message]:
        return [m for m in self._unread if type is None or m["type"] == type]

    def discard(self, *types: str) -> None:
        """Mark the unread messages of these types read (what a test has seen enough of)."""
        self._unread = [m for m in self._unread if m["type"] not in types]

    async def closed(self, timeout: float = 3.0) -> int:
        """Wait for the server to close; the close code."""
        assert self._reader is not None
        await asyncio.wait_for(asyncio.shield(self._reader), timeout)
        assert self.close_code is not None
        return self.close_code

    async def alive(self) -> bool:
        """Whether the connection still answers an app-level ping."""
        try:
            return (await self.request("ping", timeout=2))["type"] == "pong"
        except (ConnectionError, asyncio.TimeoutError, ConnectionResetError):
            return False

    async def close(self) -> None:
        if self.ws is not None and not self.ws.closed:
            await self.ws.close()
        if self._reader is not None:
            await asyncio.gather(self._reader, return_exceptions=True)
