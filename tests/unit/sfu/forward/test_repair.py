"""The NACK -> retransmission path: what is resent, skipped and refused, and when a loss is beyond repair."""
from __future__ import annotations

from sfu.forward.repair import repair
from sfu.forward.rtx_limiter import RtxLimiter
from sfu.ingest.inbound import IngressPacket
from sfu.rtp.rtp_header import RtpView, build_header


def packet(seq: int, size: int = 1000) -> IngressPacket:
    return IngressPacket(RtpView(build_header(0, 96, seq, 0, 1) + bytes(size)), None, False, 0.0)


CACHE = {seq: packet(seq) for seq in range(10)}


def find(seq: int):
    pkt = CACHE.get(seq)
    return None if pkt is None else (pkt, False)


def test_cached_packets_are_resent_and_the_rest_skipped() -> None:
    sent: list[int] = []
    out = repair([1, 2, 42], find, RtxLimiter(), 1e6, 0.0, lambda seq, pkt: sent.append(seq) or True)
    assert sent == [1, 2] and (out.resent, out.skipped, out.refused, out.exhausted) == (2, 1, 0, False)


def test_a_send_that_fails_is_not_counted() -> None:
    out = repair([1], find, RtxLimiter(), 1e6, 0.0, lambda seq, pkt: False)
    assert out.resent == 0 and out.refused == 0


def test_the_budget_refuses_and_a_packet_resent_as_often_as_allowed_is_exhausted() -> None:
    limiter = RtxLimiter(max_per_seq=2, min_interval=0.0)
    ok = lambda seq, pkt: True  # noqa: E731
    for t in (0.0, 0.1):
        assert repair([3], find, limiter, 1e6, t, ok).resent == 1
    out = repair([3], find, limiter, 1e6, 0.2, ok)
    assert (out.resent, out.refused, out.exhausted) == (0, 1, True)
    # a small budget: 200 kbit/s for 0.25 s is 6,250 bytes, six 1,000-byte packets
    out = repair(range(10), find, RtxLimiter(min_budget_bps=200_000), 0.0, 0.0, ok)
    assert out.resent == 6 and out.refused == 4 and not out.exhausted
