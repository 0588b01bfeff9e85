"""Building and reading the RTCP the SFU exchanges (via aiortc's public RTCP packet classes)."""
from __future__ import annotations

import struct
import time

from aiortc.rtp import (
    RTCP_PSFB_APP, RTCP_PSFB_FIR, RTCP_PSFB_PLI, RTCP_RTPFB_NACK, RtcpPacket, RtcpPsfbPacket,
    RtcpReceiverInfo, RtcpRrPacket, RtcpRtpfbPacket, RtcpSenderInfo, RtcpSrPacket, pack_remb_fci,
    unpack_remb_fci,
)

__all__ = ["parse", "nack", "pli", "remb", "receiver_report", "sender_report", "ntp_now", "is_keyframe_request",
           "remb_bitrate", "RtcpRrPacket", "RtcpSrPacket", "RtcpRtpfbPacket", "RtcpPsfbPacket", "RTCP_RTPFB_NACK"]

NTP_EPOCH_OFFSET = 2208988800


def ntp_now(wall: float | None = None) -> int:
    """64-bit NTP timestamp for a wall-clock time."""
    t = time.time() if wall is None else wall
    return int((t + NTP_EPOCH_OFFSET) * (1 << 32))


def parse(data: bytes) -> list:
    """Parse a compound RTCP packet; raises ValueError when malformed."""
    packets = RtcpPacket.parse(data)
    for p in packets:
        if isinstance(p, RtcpRtpfbPacket) and p.fmt == RTCP_RTPFB_NACK:
            # aiortc reads the bitmask as PID + n without wrapping: a NACK across the wrap (PID 65534 naming
            # 0 and 1, as libwebrtc sends it) asked for 65536 and 65537, which no packet has
            p.lost = [seq & 0xFFFF for seq in p.lost]
    return packets


def nack(sender_ssrc: int, media_ssrc: int, lost: list[int]) -> bytes:
    p = RtcpRtpfbPacket(fmt=RTCP_RTPFB_NACK, ssrc=sender_ssrc, media_ssrc=media_ssrc)
    p.lost = sorted(lost)
    return bytes(p)


def pli(sender_ssrc: int, media_ssrc: int) -> bytes:
    return bytes(RtcpPsfbPacket(fmt=RTCP_PSFB_PLI, ssrc=sender_ssrc, media_ssrc=media_ssrc))


def remb(sender_ssrc: int, bitrate: int, ssrcs: list[int]) -> bytes:
    return bytes(RtcpPsfbPacket(fmt=RTCP_PSFB_APP, ssrc=sender_ssrc, media_ssrc=0,
                                fci=pack_remb_fci(bitrate, ssrcs)))


def receiver_report(sender_ssrc: int, reports: list[RtcpReceiverInfo]) -> bytes:
    return bytes(RtcpRrPacket(ssrc=sender_ssrc, reports=reports))


def report_block(ssrc: int, fraction_lost: float, lost: int, highest: int, jitter: float,
                 lsr: int, dlsr: int) -> RtcpReceiverInfo:
    return RtcpReceiverInfo(ssrc=ssrc, fraction_lost=min(255, int(fraction_lost * 256)),
                            packets_lost=min(lost, (1 << 23) - 1), highest_sequence=highest & 0xFFFFFFFF,
                            jitter=int(jitter), lsr=lsr, dlsr=dlsr)


def sender_report(ssrc: int, ntp: int, rtp_ts: int, packets: int, octets: int) -> bytes:
    return bytes(RtcpSrPacket(ssrc=ssrc, sender_info=RtcpSenderInfo(
        ntp_timestamp=ntp, rtp_timestamp=rtp_ts & 0xFFFFFFFF,
        packet_count=packets & 0xFFFFFFFF, octet_count=octets & 0xFFFFFFFF)))


def is_keyframe_request(p: object) -> bool:
    return isinstance(p, RtcpPsfbPacket) and p.fmt in (RTCP_PSFB_PLI, RTCP_PSFB_FIR)


def remb_bitrate(p: object) -> int | None:
    if isinstance(p, RtcpPsfbPacket) and p.fmt == RTCP_PSFB_APP:
        try:
            return unpack_remb_fci(p.fci)[0]
        except (ValueError, struct.error):  # aiortc reads the SSRC list without checking the count against it
            return None
    return None
