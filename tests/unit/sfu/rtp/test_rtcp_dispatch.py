"""The one RTCP receive path: each part of a compound packet reaches its handler once, handlers left alone are
no-ops, and a packet that does not parse is refused without a call."""
from __future__ import annotations

from sfu.rtp.transport_feedback import TransportFeedback, build_feedback
from sfu.rtp import rtcp_builder
from sfu.rtp.rtcp_dispatch import RtcpReceiver, RtcpReceiverInfo, dispatch


class Recorder(RtcpReceiver):
    def __init__(self) -> None:
        self.calls: list[tuple] = []

    def rtcp_nack(self, media_ssrc: int, lost: list[int], now: float) -> None:
        self.calls.append(("nack", media_ssrc, sorted(lost), now))

    def rtcp_keyframe_request(self, media_ssrc: int, now: float) -> None:
        self.calls.append(("keyframe", media_ssrc))

    def rtcp_estimate(self, bitrate: int, now: float) -> None:
        self.calls.append(("estimate", bitrate))

    def rtcp_report(self, block: RtcpReceiverInfo, now: float) -> None:
        self.calls.append(("report", block.ssrc, block.fraction_lost))

    def rtcp_sender_report(self, ssrc: int, ntp_timestamp: int, rtp_timestamp: int, now: float) -> None:
        self.calls.append(("sr", ssrc, rtp_timestamp))


def test_every_part_of_a_compound_packet_reaches_its_handler() -> None:
    block = rtcp_builder.report_block(0xB, 0.5, 3, 1000, 0, 0, 0)
    compound = (rtcp_builder.receiver_report(0xA, [block]) + rtcp_builder.nack(0xA, 0xB, [65535, 0, 1])
                + rtcp_builder.pli(0xA, 0xC) + rtcp_builder.remb(0xA, 750_000, [0xB])
                + rtcp_builder.sender_report(0xD, rtcp_builder.ntp_now(1000.0), 4242, 1, 100))
    r = Recorder()
    assert dispatch(compound, r, now=3.0)
    assert r.calls == [("report", 0xB, 128), ("nack", 0xB, [0, 1, 65535], 3.0), ("keyframe", 0xC),
                       ("estimate", 750_000), ("sr", 0xD, 4242)]


def test_handlers_not_overridden_ignore_their_part() -> None:
    assert dispatch(rtcp_builder.pli(1, 2) + rtcp_builder.nack(1, 2, [5]), RtcpReceiver(), now=0.0)


def test_a_packet_that_does_not_parse_is_refused() -> None:
    r = Recorder()
    assert not dispatch(b"\x80\xc9\x00\x07garbage", r, now=0.0)
    assert r.calls == []


class FeedbackRecorder(Recorder):
    def rtcp_transport_feedback(self, feedback: TransportFeedback, now: float) -> None:
        self.calls.append(("twcc", feedback.base_seq, feedback.arrivals))


def test_transport_feedback_reaches_its_handler_once_each() -> None:
    one = build_feedback(0xA, 0xB, 100, 1, 0, [0.001, None, 0.004])
    two = build_feedback(0xA, 0xB, 103, 2, 1, [0.0])
    r = FeedbackRecorder()
    assert dispatch(rtcp_builder.pli(0xA, 0xC) + one + two, r, now=1.0)
    assert r.calls == [("twcc", 100, [0.001, None, 0.004]), ("twcc", 103, [0.0]), ("keyframe", 0xC)]
    assert not any(c[0] == "nack" for c in r.calls)             # never read as the NACK list aiortc makes of it


def test_a_malformed_transport_feedback_is_refused_and_the_rest_still_read() -> None:
    bad = bytearray(build_feedback(0xA, 0xB, 100, 1, 0, [0.001, None, 0.004]))
    bad[20:22] = b"\xff\xff"                     # a chunk of reserved symbols
    r = FeedbackRecorder()
    assert not dispatch(rtcp_builder.pli(0xA, 0xC) + bytes(bad), r, now=1.0)
    assert r.calls == [("keyframe", 0xC)]
