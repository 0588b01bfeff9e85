"""For the timetable and attendance tests: a webhook receiver on loopback (it checks signatures, or answers
slowly), a classroom as a real terminal would be in a lesson (the room WebSocket and a WHEP viewer of the
teacher's camera with the same identity), and a course timetabled around now."""
from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from typing import Any, Optional

import aiohttp
from aiohttp import web

from signaling.school.webhooks import EVENT_HEADER, SIGNATURE_HEADER, verify
from testkit.peers import WhepViewer
from testkit.room_client import RoomClient
from testkit.server import free_port


@dataclass
class Received:
    event: str
    body: dict[str, Any]
    signed: bool
    at: float


class WebhookReceiver:
    """An aiohttp server on 127.0.0.1: records each delivery and whether its signature is right; `delay_s`
    makes it a slow receiver."""

    def __init__(self, secret: str, delay_s: float = 0.0) -> None:
        self.secret = secret.encode()
        self.delay_s = delay_s
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/hook"
        self.received: list[Received] = []
        self._arrived = asyncio.Event()
        self._runner: Optional[web.AppRunner] = None

    async def _hook(self, request: web.Request) -> web.Response:
        body = await request.read()
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        self.received.append(Received(request.headers.get(EVENT_HEADER, ""), json.loads(body),
                                      verify(self.secret, body, request.headers.get(SIGNATURE_HEADER)),
                                      time.monotonic()))
        self._arrived.set()
        return web.Response(status=204)

    async def start(self) -> "WebhookReceiver":
        app = web.Application()
        app.router.add_post("/hook", self._hook)
        self._runner = web.AppRunner(app, shutdown_timeout=0.1)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()
        return self

    def events(self, kind: Optional[str] = None) -> list[Received]:
        return [r for r in self.received if kind is None or r.event == kind]

    async def wait_for(self, kind: str, count: int = 1, timeout: float = 15.0) -> list[Received]:
        deadline = time.monotonic() + timeout
        while len(self.events(kind)) < count:
            left = deadline - time.monotonic()
            assert left > 0, f"{kind}: {len(self.events(kind))} of {count} arrived: {[r.event for r in self.received]}"
            self._arrived.clear()
            try:
                await asyncio.wait_for(self._arrived.wait(), left)
            except asyncio.TimeoutError:
                pass
        return self.events(kind)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


@dataclass
class Classroom:
    """A teaching point in the lesson: its room WebSocket and a (non-decoding) viewer of the teacher's camera."""
    node: Any
    room: str
    identity: str
    name: str
    http: aiohttp.ClientSession
    ws: Optional[RoomClient] = None
    viewer: Optional[WhepViewer] = None
    joined_at: list[float] = field(default_factory=list)
    left_at: list[float] = field(default_factory=list)

    async def join(self) -> None:
        token = self.node.token(self.room, "terminal", identity=self.identity, name=self.name)
        self.ws = await RoomClient(self.http, self.node.base_url, self.room, token).connect()
        self.joined_at.append(time.time())
        self.viewer = WhepViewer(self.node.base_url, self.room, token, count_only=True)
        await self.viewer.start()

    async def leave(self) -> None:
        assert self.ws is not None and self.viewer is not None
        await self.ws.send("leave")
        self.left_at.append(time.time())
        await self.ws.closed()
        await self.viewer.stop()
        self.ws = self.viewer = None

    async def close(self) -> None:
        if self.viewer is not None:
            await self.viewer.stop()
        if self.ws is not None:
            await self.ws.close()


def course_now(room: str, classrooms: list[tuple[str, str]], title: str = "分数的初步认识") -> dict[str, Any]:
    """A course whose weekly lesson started a minute ago and lasts half an hour."""
    now = time.time()
    return {"title": title, "subject": "数学", "grade": "三年级", "teacher": "李老师", "school": "县实验小学",
            "room": room, "classrooms": [{"identity": i, "name": n, "school": "村小"} for i, n in classrooms],
            "lessons": [{"start": round(now - 60), "end": round(now + 1800), "weekly": True}]}
