"""The process's send batch on real sockets and libsrtp sessions: packets wait for the end of what is being
handled (or the loop's next turn), then leave in one native call per socket; the sessions they need stay alive
until then."""
from __future__ import annotations

import asyncio
import gc
import os
import socket
import struct

import pytest
from pylibsrtp import Policy, Session

from sfu.native import native_forward
from sfu.webrtc.aiortc_adapter import send_batch, srtp_address

KEY = bytes(range(30))


class Sender:
    def __init__(self) -> None:
        self.send_errors = 0
        self.send_buffered = 0
        self.leftovers: list[bytes] = []

    def send_leftover(self, datagram: bytes) -> None:
        self.leftovers.append(datagram)


def rtp(seq: int) -> bytes:
    return struct.pack("!BBHII", 0x80, 96, seq, seq, 0x77) + bytes(100)


@pytest.fixture
def batch():
    if native_forward() is None:
        assert os.environ.get("LIVECLASS_NATIVE") == "0", "the native kernel was not built at install"
        pytest.skip("native kernel switched off")
    return send_batch()


def udp() -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    s.setblocking(False)
    return s


async def test_packets_leave_on_flush_or_on_the_next_turn_one_call_per_socket(batch):
    out_a, out_b, rx = udp(), udp(), udp()
    sender = Sender()
    addr = native_forward().sockaddr(*rx.getsockname())
    sessions = [Session(Policy(key=KEY, ssrc_type=Policy.SSRC_ANY_OUTBOUND)) for _ in range(2)]
    try:
        calls = batch.flushes
        for seq in range(3):
            for out, s in zip((out_a, out_b), sessions):
                batch.add(out.fileno(), rtp(seq), s, srtp_address(s._srtp[0]), addr, sender)
        with pytest.raises(BlockingIOError):
            rx.recv(2048)                                   # gathered, not sent yet
        await asyncio.sleep(0)                              # the loop's next turn
        got = [rx.recv(2048) for _ in range(6)]
        assert batch.flushes == calls + 2                   # one call per socket
        for from_one_socket in (got[:3], got[3:]):         # each socket's packets together, in order
            receiver = Session(Policy(key=KEY, ssrc_type=Policy.SSRC_ANY_INBOUND))
            assert [receiver.unprotect(d) for d in from_one_socket] == [rtp(s) for s in range(3)]
        assert sender.send_errors == 0 and sender.leftovers == []
    finally:
        for s in (out_a, out_b, rx):
            s.close()


async def test_a_session_dropped_by_its_connection_stays_alive_until_its_packets_are_sent(batch):
    out, rx = udp(), udp()
    sender = Sender()
    session = Session(Policy(key=KEY, ssrc_type=Policy.SSRC_ANY_OUTBOUND))
    addr = native_forward().sockaddr(*rx.getsockname())
    batch.add(out.fileno(), rtp(1), session, srtp_address(session._srtp[0]), addr, sender)
    del session                                             # a DTLS re-key replaced it meanwhile
    gc.collect()
    batch.flush()
    receiver = Session(Policy(key=KEY, ssrc_type=Policy.SSRC_ANY_INBOUND))
    assert receiver.unprotect(rx.recv(2048)) == rtp(1)
    out.close()
    rx.close()


def test_a_connections_address_is_made_once_for_the_kernel(batch):
    a, b = udp(), udp()
    try:
        addr = batch.sockaddr(*b.getsockname())
        assert addr == native_forward().sockaddr(*b.getsockname())
        sessions = Session(policy=Policy(key=KEY, ssrc_type=Policy.SSRC_ANY_OUTBOUND))
        batch.add(a.fileno(), rtp(1), sessions, srtp_address(sessions._srtp[0]), addr, Sender())
        batch.flush()
        assert len(b.recv(2048)) > len(rtp(1))      # protected: the authentication tag is on it
    finally:
        a.close()
        b.close()
    with pytest.raises(ValueError):
        batch.sockaddr("localhost", 5)             # a name, not an address: that connection sends from Python
