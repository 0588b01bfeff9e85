"""Garbage at a node's media ports, from its own process (so it competes for the CPU as an attacker would, not
inside the test's event loop):

    python -m testkit.garbage_flood HOST PORT [PORT ...] [--seconds 30] [--rate 2000] [--seed 1]

Each datagram, at `rate` per second over all ports from a few source sockets, is one of: random bytes of random
size; a malformed STUN message (a valid header with a wrong length, garbage attributes, a bogus USERNAME or
MESSAGE-INTEGRITY, or a binding request with an unknown user); a bogus DTLS record (handshake, alert or
application data with random contents, wrong lengths, old versions); an RTP- or RTCP-looking packet that no
SRTP key protects. Prints one JSON line: the datagrams sent per kind. Bounded by --seconds.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import socket
import struct
import sys
import time
from collections import Counter
from typing import Callable, Optional

MAGIC_COOKIE = 0x2112A442


def random_bytes(rng: random.Random) -> bytes:
    return os.urandom(rng.choice((1, 2, 4, 12, 20, 100, 500, 1200, 1472)))


def _attr(kind: int, value: bytes) -> bytes:
    pad = (-len(value)) % 4
    return struct.pack("!HH", kind, len(value)) + value + b"\0" * pad


def bad_stun(rng: random.Random) -> bytes:
    tid = os.urandom(12)
    method = rng.choice((0x0001, 0x0101, 0x0111, 0x0003, 0x3FFF))
    attrs = b"".join(rng.choice([
        _attr(0x0006, b"nobody:" + os.urandom(rng.randrange(0, 40))),                 # USERNAME of no session
        _attr(0x0008, os.urandom(rng.choice((0, 7, 20, 64)))),                        # MESSAGE-INTEGRITY
        _attr(0x8028, os.urandom(rng.choice((0, 4, 9)))),                             # FINGERPRINT
        _attr(0x0024, os.urandom(4)),                                                 # PRIORITY
        _attr(0x0020, os.urandom(rng.randrange(0, 30))),                              # XOR-MAPPED-ADDRESS
        struct.pack("!HH", rng.randrange(65536), rng.choice((0, 4, 1000, 65535))),    # a length that lies
    ]) for _ in range(rng.randrange(0, 6)))
    length = len(attrs) if rng.random() < 0.5 else rng.randrange(65536)
    return struct.pack("!HHI", method, length, MAGIC_COOKIE) + tid + attrs


def bad_dtls(rng: random.Random) -> bytes:
    content = rng.choice((20, 21, 22, 23, 24, 25))
    version = rng.choice((b"\xfe\xfd", b"\xfe\xff", b"\x03\x01", b"\x00\x00"))
    epoch_seq = os.urandom(8)
    body = os.urandom(rng.choice((0, 1, 13, 60, 300, 1200)))
    length = len(body) if rng.random() < 0.5 else rng.randrange(65536)
    if content == 22 and rng.random() < 0.5:   # a ClientHello-shaped handshake with garbage inside
        body = bytes([1]) + os.urandom(3) + os.urandom(8) + os.urandom(rng.randrange(0, 200))
        length = len(body)
    return bytes([content]) + version + epoch_seq + struct.pack("!H", length) + body


def fake_rtp(rng: random.Random) -> bytes:
    if rng.random() < 0.5:   # RTP: version 2, a payload type the SFU negotiates, garbage "SRTP" payload
        header = struct.pack("!BBHII", 0x80 | rng.choice((0, 0x10)), rng.choice((96, 97, 111, 0x80 | 96)),
                             rng.randrange(65536), rng.randrange(1 << 32), rng.randrange(1 << 32))
        return header + os.urandom(rng.choice((0, 10, 100, 1100)))
    return struct.pack("!BBHI", 0x80 | rng.randrange(32), rng.choice((200, 201, 205, 206)),
                       rng.randrange(65536), rng.randrange(1 << 32)) + os.urandom(rng.choice((0, 8, 40)))


KINDS: dict[str, Callable[[random.Random], bytes]] = {
    "random": random_bytes, "stun": bad_stun, "dtls": bad_dtls, "rtp": fake_rtp,
}


def flood(host: str, ports: list[int], seconds: float, rate: float, seed: int,
          sockets: int = 4) -> Counter:
    rng = random.Random(seed)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    socks = [socket.socket(family, socket.SOCK_DGRAM) for _ in range(sockets)]
    for s in socks:
        s.setblocking(False)
    sent: Counter = Counter()
    start = time.monotonic()
    n = 0
    try:
        while True:
            now = time.monotonic()
            if now - start >= seconds:
                break
            due = int((now - start) * rate)
            while n < due:
                kind = rng.choice(tuple(KINDS))
                try:
                    socks[n % sockets].sendto(KINDS[kind](rng), (host, ports[n % len(ports)]))
                    sent[kind] += 1
                except (BlockingIOError, OSError):
                    sent["dropped_locally"] += 1
                n += 1
            time.sleep(0.002)
    finally:
        for s in socks:
            s.close()
    return sent


def main(argv: Optional[list[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("host")
    p.add_argument("ports", type=int, nargs="+")
    p.add_argument("--seconds", type=float, default=30.0)
    p.add_argument("--rate", type=float, default=2000.0)
    p.add_argument("--seed", type=int, default=1)
    a = p.parse_args(argv)
    if not 0 < a.seconds <= 600 or not 0 < a.rate <= 100_000:
        p.error("--seconds 0-600, --rate 0-100000")
    print(json.dumps(flood(a.host, a.ports, a.seconds, a.rate, a.seed)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
