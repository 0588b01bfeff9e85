"""A viewer connection's way out on a real event loop: a paced burst arrives whole, in order, spread over time,
each packet numbered when it actually leaves."""
from __future__ import annotations

import asyncio
import time

from sfu.forward.pacer import AUDIO, VIDEO, Pacer
from sfu.forward.transport_wide import SEQ_OFFSET, TransportWideSequencer
from sfu.forward.viewer_out import ViewerOut
from sfu.rtp.rtp_header import build_header


class TimedWire:
    def __init__(self) -> None:
        self.ready = True
        self.sent: list[tuple[float, bytes]] = []

    def send_rtp(self, packet: bytes | bytearray) -> bool:
        self.sent.append((time.monotonic(), bytes(packet)))
        return True

    def send_rtcp(self, packet: bytes) -> bool:
        return True


async def test_a_burst_leaves_paced_in_order_and_numbered_as_it_leaves():
    wire, noted = TimedWire(), []
    out = ViewerOut(wire, TransportWideSequencer(5, lambda now, seq, size, probe: noted.append((now, seq))),
                    Pacer(2_000_000))
    t0 = time.monotonic()
    for i in range(50):                                      # a 60 KB keyframe: 240 ms at 2 Mbit/s
        packet = build_header(0, 96, i, 0, 1, out.extensions([])) + bytes(1200)
        assert out.send(packet, t0, VIDEO)
    assert out.send(build_header(0, 111, 0, 0, 2, out.extensions([])) + bytes(100), t0, AUDIO)
    assert wire.sent[-1][1][1] == 111                        # the audio did not wait behind the burst
    for _ in range(100):
        if len(wire.sent) == 51:
            break
        await asyncio.sleep(0.02)
    video = [p for _, p in wire.sent if p[1] == 96]
    assert [int.from_bytes(p[2:4], "big") for p in video] == list(range(50))
    span = max(t for t, p in wire.sent) - t0
    assert 0.18 <= span <= 0.6, span                         # spread, not a burst, not stuck
    seqs = [int.from_bytes(p[SEQ_OFFSET:SEQ_OFFSET + 2], "big") for _, p in wire.sent]
    assert seqs == list(range(1, 52))                         # numbered in the order they left
    assert [s for _, s in noted] == seqs and noted[-1][0] - noted[0][0] >= 0.15   # with their real send times
    out.close()
