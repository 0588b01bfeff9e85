"""SentStream: the media rate per interval, sender reports (none before the first packet), and the RTT and loss
from the report block that echoes one."""
from __future__ import annotations

import pytest

from sfu.forward.sent_stream import SR_REMEMBERED, SentStream
from sfu.rtp import rtcp_builder


def _sent(s: SentStream, packets: int, size: int) -> None:
    s.packets += packets
    s.octets += packets * size


def test_rate_is_measured_per_interval() -> None:
    s = SentStream(1)
    _sent(s, 100, 1000)
    s.rate_tick(1.0)
    assert s.media_bps == 800_000
    _sent(s, 50, 1000)
    s.rate_tick(0.5)
    assert s.media_bps == 800_000
    s.rate_tick(1.0)
    assert s.media_bps == 0


def test_no_sender_report_before_the_first_packet() -> None:
    s = SentStream(7)
    assert s.sender_report(rtcp_builder.ntp_now(1000.0), 90_000, 5.0) is None


def test_report_block_echoing_a_sender_report_gives_the_rtt_and_loss() -> None:
    s = SentStream(7)
    _sent(s, 10, 1200)
    ntp = rtcp_builder.ntp_now(1000.0)
    sr = s.sender_report(ntp, 90_000, now=5.0)
    [packet] = rtcp_builder.parse(sr)
    assert (packet.ssrc, packet.sender_info.packet_count, packet.sender_info.octet_count) == (7, 10, 12_000)
    lsr = (ntp >> 16) & 0xFFFFFFFF
    # the peer held the report 0.25 s (DLSR in 1/65536 s) and answered; it arrives 0.35 s after we sent it
    s.on_report(fraction_lost=64, cumulative_lost=3, lsr=lsr, dlsr=int(0.25 * 65536), now=5.35)
    assert s.rtt == pytest.approx(0.1, abs=1e-4)
    assert (s.fraction_lost, s.cumulative_lost) == (0.25, 3)
    s.on_report(0, 3, lsr, int(0.25 * 65536), now=5.45)   # smoothed: 0.8 * 0.1 + 0.2 * 0.2
    assert s.rtt == pytest.approx(0.12, abs=1e-4)


def test_unknown_stale_or_impossible_echoes_leave_the_rtt_alone() -> None:
    s = SentStream(7)
    _sent(s, 1, 100)
    first = rtcp_builder.ntp_now(1000.0)
    s.sender_report(first, 0, now=1.0)
    for i in range(SR_REMEMBERED):   # the first report falls out of memory
        s.sender_report(rtcp_builder.ntp_now(1001.0 + i), 0, now=2.0 + i)
    s.on_report(0, 0, (first >> 16) & 0xFFFFFFFF, 0, now=20.0)
    s.on_report(0, 0, 12345, 0, now=20.0)                        # never sent
    s.on_report(0, 0, 0, 0, now=20.0)                            # "no report received yet"
    last = rtcp_builder.ntp_now(1000.0 + SR_REMEMBERED)
    s.on_report(0, 0, (last >> 16) & 0xFFFFFFFF, 65536 * 60, now=20.0)   # DLSR longer than the time since: < 0
    assert s.rtt is None
