"""Webhooks: each event is POSTed as JSON to every `--webhook` URL, its body signed with HMAC-SHA256
(`X-Liveclass-Signature: sha256=<hex>`). One queue and one sender per URL, so a receiver that is down or slow
delays only its own deliveries, never the lesson (emit() only enqueues) nor the other receivers. A failed
delivery is retried with exponential back-off; a full queue drops the event with a log line."""
from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import secrets
import time
import uuid
from typing import Any, Iterable, Optional

import aiohttp

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Liveclass-Signature"
EVENT_HEADER = "X-Liveclass-Event"
DELIVERY_HEADER = "X-Liveclass-Delivery"
EVENTS = ("lesson_started", "lesson_ended", "recording_ready", "classroom_joined", "classroom_left")
QUEUE_SIZE = 1000         # events waiting per URL; beyond, new ones are dropped
ATTEMPTS = 6              # 1 + 5 retries: 1, 2, 4, 8, 16 s apart (about half a minute of a receiver's outage)
BASE_DELAY_S = 1.0
MAX_DELAY_S = 60.0
TIMEOUT_S = 5.0           # per attempt: a slow receiver holds only its own queue, this long
SHUTDOWN_GRACE_S = 2.0    # at shutdown, what is queued gets this long (the lesson_ended of lessons cut short)


def sign(secret: bytes, body: bytes) -> str:
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


def verify(secret: bytes, body: bytes, header: Optional[str]) -> bool:
    """What a receiver does (and the tests): compare in constant time."""
    return header is not None and hmac.compare_digest(sign(secret, body), header)


def backoff(attempt: int, base_s: float = BASE_DELAY_S, cap_s: float = MAX_DELAY_S) -> float:
    """The wait before retry number `attempt` (0 first): doubling, capped."""
    return min(cap_s, base_s * (2 ** attempt))


def retryable(status: int) -> bool:
    """A receiver's error worth another try: its own trouble (5xx), a timeout or rate limit; other 4xx will not
    change by trying again."""
    return status >= 500 or status in (408, 425, 429)


def secret_from(option: Optional[str], env: Optional[str]) -> tuple[str, bool]:
    """The signing secret: the option, else the environment, else a new one (True: generated, print it)."""
    if option or env:
        return (option or env or ""), False
    return secrets.token_urlsafe(32), True


class Webhooks:
    def __init__(self, urls: Iterable[str], secret: str, queue_size: int = QUEUE_SIZE, attempts: int = ATTEMPTS,
                 base_delay_s: float = BASE_DELAY_S, timeout_s: float = TIMEOUT_S, ssl: Any = None) -> None:
        self.urls = list(dict.fromkeys(urls))
        self.secret = secret.encode()
        self.attempts = attempts
        self.base_delay_s = base_delay_s
        self.timeout_s = timeout_s
        self.ssl = ssl
        self.queues = {u: asyncio.Queue(queue_size) for u in self.urls}
        self.delivered: dict[str, int] = {u: 0 for u in self.urls}
        self.dropped: dict[str, int] = {u: 0 for u in self.urls}
        self._http: Optional[aiohttp.ClientSession] = None
        self._workers: list[asyncio.Task] = []

    def start(self) -> None:
        self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.timeout_s),
                                           connector=aiohttp.TCPConnector(ssl=self.ssl) if self.ssl else None)
        self._workers = [asyncio.get_running_loop().create_task(self._deliver(u), name=f"webhook {u}")
                         for u in self.urls]

    def emit(self, event: str, data: dict[str, Any]) -> None:
        """Queue `event` for every receiver; never waits."""
        body = json.dumps({"id": uuid.uuid4().hex, "type": event, "at": round(time.time(), 3), "data": data},
                          ensure_ascii=False, separators=(",", ":")).encode()
        for url, q in self.queues.items():
            try:
                q.put_nowait((event, body))
            except asyncio.QueueFull:
                self.dropped[url] += 1
                n = self.dropped[url]
                if n == 1 or n % 100 == 0:
                    log.warning("webhook %s: queue full (%d waiting), dropped %s (%d dropped so far)",
                                url, q.qsize(), event, n)

    async def _deliver(self, url: str) -> None:
        q = self.queues[url]
        while True:
            event, body = await q.get()
            try:
                await self._post(url, event, body)
            finally:
                q.task_done()

    async def _post(self, url: str, event: str, body: bytes) -> None:
        assert self._http is not None
        headers = {"Content-Type": "application/json", SIGNATURE_HEADER: sign(self.secret, body),
                   EVENT_HEADER: event, DELIVERY_HEADER: json.loads(body)["id"]}
        why = ""
        for attempt in range(self.attempts):
            if attempt:
                await asyncio.sleep(backoff(attempt - 1, self.base_delay_s))
            try:
                async with self._http.post(url, data=body, headers=headers) as r:
                    await r.read()
                    if r.status < 300:
                        self.delivered[url] += 1
                        return
                    why = f"HTTP {r.status}"
                    if not retryable(r.status):
                        break
            except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
                why = str(exc) or type(exc).__name__
        self.dropped[url] += 1
        log.warning("webhook %s: %s not delivered (%s), dropped", url, event, why)

    async def close(self, grace_s: float = SHUTDOWN_GRACE_S) -> None:
        if self._workers:
            try:
                await asyncio.wait_for(asyncio.gather(*(q.join() for q in self.queues.values())), grace_s)
            except asyncio.TimeoutError:
                pass
            for w in self._workers:
                w.cancel()
            await asyncio.gather(*self._workers, return_exceptions=True)
            self._workers = []
        if self._http is not None:
            await self._http.close()
            self._http = None
