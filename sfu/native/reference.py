"""What forward.c does, step by step in Python: the fallback's behaviour and the reference the tests compare the
native kernel with, byte for byte. Same arguments, same results as `_forward.protect_send`."""
from __future__ import annotations

import errno
import socket
from typing import Sequence

from pylibsrtp._binding import ffi

SLOT_BYTES = 2048
SRTP_MAX_TRAILER = 144
BATCH_MAX = 1024
_PROTECT = "int(*)(void *, void *, int *)"


def sockaddr_tuple(raw: bytes) -> tuple[str, int]:
    """The (host, port) a sockaddr from `_forward.sockaddr` names."""
    family = int.from_bytes(raw[0:2], "little")
    port = int.from_bytes(raw[2:4], "big")
    if family == socket.AF_INET:
        return socket.inet_ntop(socket.AF_INET, raw[4:8]), port
    return socket.inet_ntop(socket.AF_INET6, raw[8:24]), port


def protect_send(fd: int, protect: int, items: Sequence[tuple[bytes | bytearray, int, bytes]]
                 ) -> tuple[int, list[int], list[tuple[int, bytes]]]:
    """Protect each (packet, session address, sockaddr) with the srtp_protect at `protect` and send it on `fd`."""
    if len(items) > BATCH_MAX:
        raise ValueError(f"at most {BATCH_MAX} packets per batch")
    fn = ffi.cast(_PROTECT, protect)
    sock = socket.socket(fileno=fd)
    try:
        sent, failed = 0, []
        leftovers: list[tuple[int, bytes]] = []
        for i, (packet, session, addr) in enumerate(items):
            if len(packet) < 12 or len(packet) > SLOT_BYTES - SRTP_MAX_TRAILER or not session or not addr:
                failed.append(i)
                continue
            buf = ffi.new("unsigned char[]", SLOT_BYTES)
            ffi.memmove(buf, bytes(packet), len(packet))
            size = ffi.new("int *", len(packet))
            if fn(ffi.cast("void *", session), buf, size):
                failed.append(i)
                continue
            data = ffi.buffer(buf, size[0])[:]
            if leftovers:
                leftovers.append((i, data))
                continue
            try:
                sock.sendto(data, socket.MSG_DONTWAIT, sockaddr_tuple(addr))
                sent += 1
            except BlockingIOError:
                leftovers.append((i, data))
            except OSError as e:
                if e.errno == errno.ENOBUFS:
                    leftovers.append((i, data))
                else:
                    failed.append(i)
        return sent, failed, leftovers
    finally:
        sock.detach()
