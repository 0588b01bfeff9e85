"""The native kernel on a socket whose send buffer fills: a link capped in a network namespace holds the batch's
datagrams in its queue (charged to the sender's small buffer), so sendmmsg stops short. What did not fit comes
back protected, in order, for asyncio's transport to queue: nothing is lost and nothing is protected twice."""
from __future__ import annotations

import os
import socket
import struct

import pytest
from pylibsrtp import Policy, Session
from pylibsrtp._binding import ffi, lib

from sfu.native import native_forward, reference
from sfu.webrtc.aiortc_adapter import srtp_address
from testkit.netns import LinkNamespace, unavailable_reason

KEY = bytes(range(30))
PROTECT = srtp_address(ffi.addressof(lib, "srtp_protect"))


def rtp(seq: int) -> bytes:
    return struct.pack("!BBHII", 0x80, 96, seq, seq * 3000, 0x4242) + bytes([seq & 0xFF]) * 1188


@pytest.mark.parametrize("impl", ["native", "reference"])
def test_a_full_send_buffer_hands_the_rest_back_protected_and_in_order(impl):
    reason = unavailable_reason()
    if reason:
        pytest.skip(reason)
    k = native_forward()
    if k is None:
        assert os.environ.get("LIVECLASS_NATIVE") == "0", "the native kernel was not built at install"
        pytest.skip("native kernel switched off")
    send = k.protect_send if impl == "native" else reference.protect_send
    with LinkNamespace() as ns:
        ns.cap_downlink(64, latency_ms=60_000)   # 64 kbit/s with a minute of queue: nothing drains meanwhile
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
            sock.bind((ns.host_ip, 0))
            sock.setblocking(False)
            session = Session(Policy(key=KEY, ssrc_type=Policy.SSRC_ANY_OUTBOUND))
            packets = [rtp(seq) for seq in range(200)]
            items = [(p, srtp_address(session._srtp[0]), k.sockaddr(ns.ns_ip, 9)) for p in packets]
            sent, failed, leftovers = send(sock.fileno(), PROTECT, items)
        finally:
            sock.close()
    assert list(failed) == [] and 0 < sent < 50, (sent, failed, len(leftovers))
    assert [i for i, _ in leftovers] == list(range(sent, 200))      # the tail, in order
    receiver = Session(Policy(key=KEY, ssrc_type=Policy.SSRC_ANY_INBOUND))
    # protected once, in sequence: the receiver takes the first leftover as the next packet after those sent
    # (a replay or a skipped index would not unprotect)
    assert [receiver.unprotect(d) for _, d in leftovers[:20]] == packets[sent:sent + 20]
