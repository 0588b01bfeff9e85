"""Runs of free loopback ports: `serve --workers N` takes the public port and the N after it (TCP), and
--udp-port P takes P .. P+N-1 (UDP)."""
from __future__ import annotations

import socket


def free_run(n: int) -> int:
    """A port p with p .. p+n free on loopback (the public port and the workers' own ports)."""
    for _ in range(50):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            p = s.getsockname()[1]
        if p + n < 65000 and all(_free(p + i) for i in range(1, n + 1)):
            return p
    raise RuntimeError("no run of free ports")


def _free(port: int, kind: socket.SocketKind = socket.SOCK_STREAM) -> bool:
    with socket.socket(socket.AF_INET, kind) as s:
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def free_udp_run(n: int) -> int:
    """A UDP port p with p .. p+n-1 free on loopback (the workers' media ports)."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.bind(("127.0.0.1", 0))
            p = s.getsockname()[1]
        if p + n < 65000 and all(_free(p + i, socket.SOCK_DGRAM) for i in range(1, n)):
            return p
    raise RuntimeError("no run of free UDP ports")
