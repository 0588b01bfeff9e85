"""Deterministic packet loss injected inside a client peer (this kernel has no netem).

Test-side only: wraps the client's aiortc DTLS transport so RTP is dropped after SRTP on receive, or before
SRTP on send, exactly as a lossy link would drop it. RTCP and retransmissions pass, so repair can work."""
from __future__ import annotations

from aiortc import RTCPeerConnection

from sfu.webrtc.aiortc_adapter import dtls_transports


class DropEvery:
    def __init__(self, n: int, skip_payload_types: tuple[int, ...] = ()) -> None:
        self.n = n
        self.skip = skip_payload_types
        self.count = 0
        self.dropped = 0

    def should_drop(self, data: bytes) -> bool:
        if len(data) < 12 or data[1] & 0x7F in self.skip or 192 <= data[1] <= 223:
            return False
        self.count += 1
        if self.count % self.n == 0:
            self.dropped += 1
            return True
        return False


def drop_incoming(pc: RTCPeerConnection, rule: DropEvery) -> None:
    dtls = dtls_transports(pc)[0]
    original = dtls._handle_rtp_data

    async def handle(data: bytes, arrival_time_ms: int) -> None:
        if not rule.should_drop(data):
            await original(data, arrival_time_ms)

    dtls._handle_rtp_data = handle


def drop_outgoing(pc: RTCPeerConnection, rule: DropEvery) -> None:
    dtls = dtls_transports(pc)[0]
    original = dtls._send_rtp

    async def send(data: bytes) -> None:
        if not rule.should_drop(data):
            await original(data)

    dtls._send_rtp = send


def drop_incoming_datagrams(pc: RTCPeerConnection, rule: DropEvery) -> None:
    """Drop arriving RTP before SRTP, as the link itself would: a packet sent again on the same SSRC and number
    (a link between two SFU nodes repairs that way) then passes SRTP's replay check, which never saw the first."""
    ice = dtls_transports(pc)[0].transport
    original = ice._recv

    async def recv() -> bytes:
        while True:
            data = await original()
            if not (128 <= data[0] < 192 and rule.should_drop(data)):   # SRTP's header is in the clear
                return data

    ice._recv = recv
