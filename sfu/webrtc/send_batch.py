"""Packets for many viewers gathered while one incoming packet (or one feedback packet, or one timer) is handled,
then SRTP-protected and sent in one native call per socket (sfu/native/forward.c: libsrtp and sendmmsg).

The connection taps add to the batch instead of protecting and sending each packet from Python; the tap that
handled an incoming datagram flushes when its handler returns, so a packet leaves as soon as all of its copies
are built. Anything added elsewhere (the pacer's timer, a probe's tick) is flushed on the loop's next turn.
"""
from __future__ import annotations

import asyncio
import logging
from types import ModuleType
from typing import Protocol

log = logging.getLogger(__name__)


class BatchedSender(Protocol):
    """A connection whose packets go through the batch: told what became of each."""
    send_errors: int
    send_buffered: int

    def send_leftover(self, datagram: bytes) -> None: ...


class SendBatch:
    def __init__(self, kernel: ModuleType, protect_address: int) -> None:
        self._kernel = kernel
        self._protect = protect_address
        self._limit: int = kernel.BATCH_MAX
        self._items: dict[int, list[tuple[bytes | bytearray, int, bytes]]] = {}
        self._senders: dict[int, list[tuple[BatchedSender, object]]] = {}   # per item: who, and its session
        self._scheduled = False
        self.flushes = 0
        self.packets = 0

    def sockaddr(self, host: str, port: int) -> bytes:
        """A numeric address as the kernel takes it (ValueError for a name)."""
        return self._kernel.sockaddr(host, port)

    def add(self, fd: int, packet: bytes | bytearray, session: object, session_address: int, sockaddr: bytes,
            sender: BatchedSender) -> None:
        """Queue `packet` for `sender`'s SRTP `session` (held until sent: the kernel gets only its address)."""
        items = self._items.get(fd)
        if items is None:
            items = self._items[fd] = []
            self._senders[fd] = []
        items.append((packet, session_address, sockaddr))
        self._senders[fd].append((sender, session))
        if len(items) >= self._limit:
            self._flush_fd(fd)
        if not self._scheduled:
            try:
                asyncio.get_running_loop().call_soon(self._flush_later)
                self._scheduled = True
            except RuntimeError:   # no loop running (a send at shutdown): now, then
                self.flush()

    def flush(self) -> None:
        """Send everything gathered so far."""
        for fd in list(self._items):
            self._flush_fd(fd)

    def _flush_later(self) -> None:
        self._scheduled = False
        self.flush()

    def _flush_fd(self, fd: int) -> None:
        items = self._items.pop(fd)
        senders = self._senders.pop(fd)
        if not items:
            return
        self.flushes += 1
        self.packets += len(items)
        try:
            _, failed, leftovers = self._kernel.protect_send(fd, self._protect, items)
        except Exception:
            log.exception("batched send failed; %d packets dropped", len(items))
            for s, _ in senders:
                s.send_errors += 1
            return
        for i in failed:
            senders[i][0].send_errors += 1
        for i, datagram in leftovers:   # the socket's buffer was full: asyncio's transport queues these
            sender = senders[i][0]
            sender.send_buffered += 1
            sender.send_leftover(datagram)

