"""The node's one UDP socket: datagrams routed by remote address, a STUN request routed by the ufrag it names."""
from __future__ import annotations

import asyncio
import os
import socket
import struct
from typing import Optional

import aioice.stun
import pytest

from sfu.webrtc.udp_mux import MuxedTransport, UdpMux, binding_request_ufrag, buffers_too_small, new_ufrag


def binding_request(username: str, with_integrity: bool = True) -> bytes:
    msg = aioice.stun.Message(aioice.stun.Method.BINDING, aioice.stun.Class.REQUEST)
    msg.attributes["USERNAME"] = username
    msg.attributes["PRIORITY"] = 12345
    if with_integrity:
        msg.add_message_integrity(b"password")
    return bytes(msg)


def test_the_ufrag_is_read_from_a_binding_request_only():
    assert binding_request_ufrag(binding_request("ourUfrag:theirs")) == "ourUfrag"
    response = aioice.stun.Message(aioice.stun.Method.BINDING, aioice.stun.Class.RESPONSE)
    response.attributes["USERNAME"] = "ourUfrag:theirs"
    assert binding_request_ufrag(bytes(response)) is None
    assert binding_request_ufrag(b"\x80\x60" + bytes(30)) is None            # RTP
    assert binding_request_ufrag(b"\x16\xfe\xfd" + bytes(30)) is None        # DTLS


@pytest.mark.parametrize("data", [
    b"", b"\x00\x01", b"\x00\x01\x00\x08\x21\x12\xa4\x42" + bytes(12),        # header only, length past the end
    b"\x00\x01\x00\x08\x21\x12\xa4\x42" + bytes(12) + b"\x00\x06\x00\x40abcd",  # USERNAME longer than the message
    b"\x00\x01\x00\x08\x21\x12\xa4\x42" + bytes(12) + b"\x00\x06\x00\x04\xff\xfe:x",  # not ASCII
    b"\x00\x01\x00\x08\x21\x12\xa4\x42" + bytes(12) + b"\x00\x06\x00\x04abcd",  # no colon
    b"\x00\x01\x00\x08\x21\x12\xa4\x42" + bytes(12) + b"\x00\x06\x00\x04:abc",  # nothing before the colon
    b"\x00\x01\xff\xff\x21\x12\xa4\x42" + bytes(12) + b"\x00\x99\xff\xff",      # an attribute past the end
])
def test_malformed_stun_names_no_connection(data):
    assert binding_request_ufrag(data) is None


def test_every_truncation_of_a_request_is_read_without_error():
    whole = binding_request("abcdefgh:xyz")
    for n in range(len(whole)):
        assert binding_request_ufrag(whole[:n]) in (None, "abcdefgh")


def test_new_ufrags_are_long_and_avoid_those_taken():
    drawn = {new_ufrag(lambda u: False) for _ in range(50)}
    assert len(drawn) == 50 and all(len(u) == 16 and u.isalnum() for u in drawn)
    calls = []

    def is_taken(u: str) -> bool:
        calls.append(u)
        return len(calls) == 1   # the first candidate is taken: another is drawn
    assert new_ufrag(is_taken) == calls[-1] and len(calls) == 2


class Recorder:
    def __init__(self, name: str) -> None:
        self.name = name
        self.got: list[tuple[bytes, tuple]] = []
        self.lost = 0

    def datagram_received(self, data: bytes, addr: tuple) -> None:
        self.got.append((data, addr))

    def connection_lost(self, exc: Optional[Exception]) -> None:
        self.lost += 1


async def _pair(mux: UdpMux) -> tuple[socket.socket, tuple]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.setblocking(False)
    return sock, sock.getsockname()


async def _settle() -> None:
    for _ in range(20):
        await asyncio.sleep(0.005)


async def test_routes_by_ufrag_then_by_address_and_a_new_connection_takes_an_address_over():
    mux = await UdpMux.bind("127.0.0.1", 0)
    try:
        a, b, a2 = Recorder("a"), Recorder("b"), Recorder("a again")
        ta, tb = MuxedTransport(mux, a, "ufragA"), MuxedTransport(mux, b, "ufragB")
        peer1, addr1 = await _pair(mux)
        peer2, addr2 = await _pair(mux)   # a second peer from the same address: another port, another route
        port = mux.local_addr
        peer1.sendto(b"\x80\x60media-before-any-check", port)   # unknown address, no STUN: dropped
        peer1.sendto(binding_request("ufragA:c1"), port)
        peer2.sendto(binding_request("ufragB:c2"), port)
        await _settle()
        peer1.sendto(b"\x17\xfe\xfd-dtls-from-1", port)
        peer2.sendto(b"\x17\xfe\xfd-dtls-from-2", port)
        await _settle()
        assert a.got[0][0][:2] == b"\x00\x01" and a.got[1][0] == b"\x17\xfe\xfd-dtls-from-1"   # the check, then DTLS
        assert b.got[1][0] == b"\x17\xfe\xfd-dtls-from-2"
        assert [addr for _, addr in a.got] == [addr1, addr1] and [addr for _, addr in b.got] == [addr2, addr2]
        assert mux.unrouted == 1
        # our sends go out from the one port
        ta.sendto(b"to-1", addr1)
        await _settle()
        data, source = peer1.recvfrom(2048)
        assert data == b"to-1" and source == port
        # the peer at addr1 comes back with a new connection: its first request takes the address over
        MuxedTransport(mux, a2, "ufragA2")
        peer1.sendto(binding_request("ufragA2:c3"), port)
        await _settle()
        peer1.sendto(b"\x17\xfe\xfd-dtls-new", port)
        await _settle()
        assert a2.got[-1][0] == b"\x17\xfe\xfd-dtls-new" and len(a.got) == 2 and mux.rerouted == 1
        # the old connection's consent check to that address does not take it back
        ta.sendto(b"consent", addr1)
        peer1.sendto(b"\x17\xfe\xfd-still-new", port)
        await _settle()
        assert a2.got[-1][0] == b"\x17\xfe\xfd-still-new"
        # closing one connection frees its routes and ufrag only
        tb.close()
        await _settle()
        assert b.lost == 1 and not mux.has_ufrag("ufragB") and mux.route_of(addr2) is None
        assert mux.route_of(addr1) is a2
        with pytest.raises(ValueError):
            MuxedTransport(mux, Recorder("c"), "ufragA2")   # a ufrag is one connection's
        peer1.close()
        peer2.close()
    finally:
        mux.close()


async def test_a_request_naming_no_connection_does_not_move_an_address():
    mux = await UdpMux.bind("127.0.0.1", 0)
    try:
        a = Recorder("a")
        MuxedTransport(mux, a, "ufragA")
        peer, addr = await _pair(mux)
        peer.sendto(binding_request("ufragA:c"), mux.local_addr)
        peer.sendto(binding_request("nobody:c"), mux.local_addr)   # delivered where the address goes (refused there)
        await _settle()
        assert len(a.got) == 2 and mux.route_of(addr) is a and mux.rerouted == 0
        peer.close()
    finally:
        mux.close()


def test_binding_request_layout_is_what_aioice_sends():
    data = binding_request("u1:u2")
    kind, length = struct.unpack_from("!HH", data, 0)
    assert kind == 0x0001 and length == len(data) - 20


async def test_the_one_socket_gets_buffers_for_every_peer():
    mux = await UdpMux.bind("127.0.0.1", 0)
    try:
        # as root the system's limit is passed (SO_RCVBUFFORCE); elsewhere it is what the limit allows, and the
        # server says so at start
        granted = (mux.receive_buffer, mux.send_buffer)
        assert granted == (mux.sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF),
                           mux.sock.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF))
        if os.geteuid() == 0:
            assert not buffers_too_small(mux.receive_buffer) and not buffers_too_small(mux.send_buffer), granted
    finally:
        mux.close()
    assert buffers_too_small(2 * 212_992)   # Debian's default limit, doubled by the kernel
