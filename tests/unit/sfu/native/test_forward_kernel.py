"""The native kernel (forward.c) against its Python reference: the same datagrams, byte for byte, on real sockets
with real libsrtp sessions, and the same answers for bad input."""
from __future__ import annotations

import os
import socket
import struct

import pytest
from pylibsrtp import Policy, Session

from sfu.native import native_forward
from sfu.native import reference
from sfu.webrtc.aiortc_adapter import srtp_address
from pylibsrtp._binding import ffi, lib

KEY = bytes(range(30))
PROTECT = srtp_address(ffi.addressof(lib, "srtp_protect"))


def kernel():
    k = native_forward()
    if os.environ.get("LIVECLASS_NATIVE") == "0":
        assert k is None   # switched off means off
        pytest.skip("native kernel switched off (LIVECLASS_NATIVE=0)")
    assert k is not None, "the native kernel was not built at install"
    return k


def sender_session(key: bytes = KEY) -> Session:
    return Session(Policy(key=key, ssrc_type=Policy.SSRC_ANY_OUTBOUND))


def receiver_session(key: bytes = KEY) -> Session:
    return Session(Policy(key=key, ssrc_type=Policy.SSRC_ANY_INBOUND))


def rtp(seq: int, ssrc: int, size: int = 1100, pt: int = 96) -> bytes:
    body = bytes((seq + i) & 0xFF for i in range(size))
    return struct.pack("!BBHII", 0x80, pt, seq, seq * 3000, ssrc) + body


@pytest.fixture
def sockets():
    made = []

    def make() -> socket.socket:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind(("127.0.0.1", 0))
        s.settimeout(2)
        made.append(s)
        return s
    yield make
    for s in made:
        s.close()


def receive(sock: socket.socket, count: int) -> list[bytes]:
    return [sock.recv(4096) for _ in range(count)]


def batch(k, viewers, packets):
    """Every packet to every viewer (session address, sockaddr), as the SFU forwards one packet to all."""
    return [(p, srtp_address(s._srtp[0]), k.sockaddr(*rx.getsockname())) for p in packets for s, rx in viewers]


@pytest.mark.parametrize("size", [12, 200, 1200, 1400])
def test_native_and_reference_send_the_same_datagrams_and_they_unprotect_to_the_packets(sockets, size):
    k = kernel()
    out = sockets()
    rx = [sockets(), sockets(), sockets()]
    packets = [rtp(seq, 0x1000 + seq % 2, size - 12) for seq in range(100, 140)]
    sent = {}
    for name, fn in (("native", k.protect_send), ("reference", reference.protect_send)):
        viewers = [(sender_session(), r) for r in rx]   # same keys both times: the same ciphertext
        result = fn(out.fileno(), PROTECT, batch(k, viewers, packets))
        assert result[0] == len(packets) * len(rx) and list(result[1]) == [] and result[2] == []
        sent[name] = [receive(r, len(packets)) for r in rx]
    assert sent["native"] == sent["reference"]
    for datagrams in sent["native"]:
        session = receiver_session()
        assert [session.unprotect(d) for d in datagrams] == packets
        assert all(len(d) == len(p) + 10 for d, p in zip(datagrams, packets))  # the 80-bit auth tag


def test_bad_items_are_dropped_by_index_and_the_rest_still_go(sockets):
    k = kernel()
    out, rx = sockets(), sockets()
    good = sender_session()
    addr = k.sockaddr(*rx.getsockname())
    v6 = k.sockaddr("::1", rx.getsockname()[1])        # an IPv6 address on an IPv4 socket: the kernel refuses it
    items = [
        (rtp(1, 7), srtp_address(good._srtp[0]), addr),
        (b"\x80\x60\x00", srtp_address(good._srtp[0]), addr),             # shorter than an RTP header
        (rtp(2, 7, 1950), srtp_address(good._srtp[0]), addr),            # no room for the SRTP trailer
        (rtp(3, 7), 0, addr),                                             # no session
        (rtp(4, 7), srtp_address(good._srtp[0]), v6),
        (rtp(5, 7), srtp_address(good._srtp[0]), addr),
    ]
    sent, failed, leftovers = k.protect_send(out.fileno(), PROTECT, items)
    assert (sent, sorted(failed), leftovers) == (2, [1, 2, 3, 4], [])
    session = receiver_session()
    assert [session.unprotect(d) for d in receive(rx, 2)] == [rtp(1, 7), rtp(5, 7)]


def test_malformed_calls_raise_clear_errors_and_send_nothing(sockets):
    k = kernel()
    out, rx = sockets(), sockets()
    addr = k.sockaddr(*rx.getsockname())
    session = sender_session()   # held: the kernel takes its address
    good = srtp_address(session._srtp[0])
    with pytest.raises(TypeError):
        k.protect_send(out.fileno(), PROTECT, [(rtp(1, 7), good)])
    with pytest.raises(TypeError):
        k.protect_send(out.fileno(), PROTECT, [(rtp(1, 7), good, "not bytes")])
    with pytest.raises(ValueError):
        k.protect_send(out.fileno(), PROTECT, [(rtp(1, 7), good, addr)] * (k.BATCH_MAX + 1))
    with pytest.raises(ValueError):
        k.sockaddr("classroom.example", 5000)
    with pytest.raises(ValueError):
        k.sockaddr("127.0.0.1", 70000)
    rx.settimeout(0.2)
    with pytest.raises(socket.timeout):
        rx.recv(4096)


def test_a_closed_socket_drops_the_batch_without_crashing(sockets):
    k = kernel()
    out, rx = sockets(), sockets()
    fd = out.fileno()
    out.close()
    session = sender_session()
    good = srtp_address(session._srtp[0])
    sent, failed, leftovers = k.protect_send(fd, PROTECT, [(rtp(1, 7), good, k.sockaddr(*rx.getsockname()))] * 3)
    assert sent == 0 and sorted(failed) == [0, 1, 2] and leftovers == []


def test_switched_off_by_the_environment(monkeypatch):
    monkeypatch.setenv("LIVECLASS_NATIVE", "0")
    assert native_forward() is None
