"""The webhook sender against real receivers on loopback: a receiver that fails twice gets the event on the third
try (back-off), one that refuses a 4xx is not retried, and a slow receiver's full queue drops new events with a
log line while another receiver gets them all at once."""
from __future__ import annotations

import asyncio
import logging
import time

import pytest
from aiohttp import web

from signaling.school.webhooks import SIGNATURE_HEADER, Webhooks, verify
from testkit.inprocess import serve_app

pytestmark = pytest.mark.timeout(30)
SECRET = "webhook-unit-secret"


class Receiver:
    def __init__(self, answers: list[int], delay_s: float = 0.0) -> None:
        self.answers = answers            # statuses to answer in turn; the last one repeats
        self.delay_s = delay_s
        self.bodies: list[tuple[float, bytes, bool]] = []
        self.app = web.Application()
        self.app.router.add_post("/hook", self.hook)

    async def hook(self, request: web.Request) -> web.Response:
        body = await request.read()
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        signed = verify(SECRET.encode(), body, request.headers.get(SIGNATURE_HEADER))
        self.bodies.append((time.monotonic(), body, signed))
        status = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        return web.Response(status=status)


async def until(condition, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline
        await asyncio.sleep(0.02)


async def test_retried_with_back_off_until_delivered_and_4xx_not_retried():
    flaky, gone = Receiver([503, 500, 204]), Receiver([410])
    async with serve_app(flaky.app) as (flaky_url, _), serve_app(gone.app) as (gone_url, _):
        hooks = Webhooks([flaky_url + "/hook", gone_url + "/hook"], SECRET, base_delay_s=0.1, timeout_s=2)
        hooks.start()
        try:
            t0 = time.monotonic()
            hooks.emit("lesson_started", {"lesson_id": "x"})
            await until(lambda: hooks.delivered[flaky_url + "/hook"] == 1)
            times = [t - t0 for t, _, _ in flaky.bodies]
            assert len(times) == 3 and all(ok for _, _, ok in flaky.bodies)
            assert times[1] - times[0] >= 0.09 and times[2] - times[1] >= 0.19   # 0.1 s, then 0.2 s
            await until(lambda: hooks.dropped[gone_url + "/hook"] == 1)
            assert len(gone.bodies) == 1                                          # a 410 is final
            assert flaky.bodies[0][1] == flaky.bodies[2][1]                       # the same delivery each time
        finally:
            await hooks.close(0.1)


async def test_a_slow_receiver_fills_its_own_queue_only(caplog):
    slow, quick = Receiver([204], delay_s=1.5), Receiver([204])
    async with serve_app(slow.app) as (slow_url, _), serve_app(quick.app) as (quick_url, _):
        hooks = Webhooks([slow_url + "/hook", quick_url + "/hook"], SECRET, queue_size=3, timeout_s=10)
        hooks.start()
        try:
            with caplog.at_level(logging.WARNING, logger="signaling.school.webhooks"):
                for i in range(10):
                    t = time.monotonic()
                    hooks.emit("classroom_joined", {"n": i})
                    assert time.monotonic() - t < 0.01                    # emit never waits
                    await asyncio.sleep(0.02)                             # the lesson goes on between events
                await until(lambda: len(quick.bodies) == 10)
            # the slow one holds one in flight and 3 queued: the other 6 were dropped, with a log line
            assert hooks.dropped[slow_url + "/hook"] == 6 and hooks.dropped[quick_url + "/hook"] == 0
            assert any("queue full" in r.getMessage() for r in caplog.records)
        finally:
            await hooks.close(0.1)
