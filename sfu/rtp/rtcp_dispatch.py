"""The one RTCP receive path: a compound packet parsed once and each part handed to the receiver's handler for it.

Viewers, publishers and both ends of a relay link read different parts of what their peer sends (a viewer's NACKs,
keyframe requests, REMB and receiver reports; a publisher's sender reports). Each owner subclasses RtcpReceiver
and overrides the handlers it needs; the rest ignore their part. Pure: the time is passed in.
"""
from __future__ import annotations

from aiortc.rtp import RtcpReceiverInfo

from . import rtcp_builder
from .transport_feedback import TransportFeedback, parse_feedback, split_transport_feedback


class RtcpReceiver:
    """Handlers for the RTCP the SFU reads, each a no-op until overridden."""

    def rtcp_nack(self, media_ssrc: int, lost: list[int], now: float) -> None:
        """Generic NACK (RFC 4585): `lost` are the sequence numbers the peer asks for again."""

    def rtcp_keyframe_request(self, media_ssrc: int, now: float) -> None:
        """PLI or FIR."""

    def rtcp_estimate(self, bitrate: int, now: float) -> None:
        """REMB: the peer's receive-side estimate, in bit/s."""

    def rtcp_report(self, block: RtcpReceiverInfo, now: float) -> None:
        """A reception report block (of an RR or an SR) about one of the streams sent to the peer."""

    def rtcp_sender_report(self, ssrc: int, ntp_timestamp: int, rtp_timestamp: int, now: float) -> None:
        """An SR's sender info about a stream the peer sends."""

    def rtcp_transport_feedback(self, feedback: TransportFeedback, now: float) -> None:
        """Transport-wide congestion control feedback: what arrived of the packets sent, and when."""


def dispatch(data: bytes, receiver: RtcpReceiver, now: float) -> bool:
    """Hand each part of a compound RTCP packet to its handler; False when a part does not parse."""
    try:
        rest, feedback = split_transport_feedback(data)
    except ValueError:
        return False
    parsed = True
    for part in feedback:
        try:
            receiver.rtcp_transport_feedback(parse_feedback(part), now)
        except ValueError:
            parsed = False
    if not rest:
        return parsed
    try:
        packets = rtcp_builder.parse(rest)
    except ValueError:
        return False
    for p in packets:
        if isinstance(p, rtcp_builder.RtcpRtpfbPacket) and p.fmt == rtcp_builder.RTCP_RTPFB_NACK:
            receiver.rtcp_nack(p.media_ssrc, p.lost, now)
        elif rtcp_builder.is_keyframe_request(p):
            receiver.rtcp_keyframe_request(p.media_ssrc, now)
        elif (bitrate := rtcp_builder.remb_bitrate(p)) is not None:
            receiver.rtcp_estimate(bitrate, now)
        if isinstance(p, rtcp_builder.RtcpSrPacket):
            receiver.rtcp_sender_report(p.ssrc, p.sender_info.ntp_timestamp, p.sender_info.rtp_timestamp, now)
        if isinstance(p, (rtcp_builder.RtcpRrPacket, rtcp_builder.RtcpSrPacket)):
            for block in p.reports:
                receiver.rtcp_report(block, now)
    return parsed
