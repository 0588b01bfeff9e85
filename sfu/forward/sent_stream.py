"""One stream this node sends to a peer, as RTCP sees it: packet and octet counters, the media rate measured once
per report interval, sender reports mapped onto the timestamps the peer receives, and the loss and round-trip
time the peer's reception reports give back. Shared by a viewer's consumers and a relay link's layers, so both
report and measure alike. Pure: the time is passed in."""
from __future__ import annotations

from collections import OrderedDict
from typing import Optional

from sfu.rtp import rtcp_builder

SR_REMEMBERED = 8   # sender reports whose send time is kept for the RTT (one a second: 8 s of reports)
MAX_RTT_S = 10.0    # a larger "round trip" is a stale or forged LSR


class SentStream:
    __slots__ = ("ssrc", "packets", "octets", "media_bps", "_octets_prior", "fraction_lost", "cumulative_lost",
                 "rtt", "_sr_sent")

    def __init__(self, ssrc: int) -> None:
        self.ssrc = ssrc
        self.packets = 0
        self.octets = 0
        self.media_bps = 0.0
        self._octets_prior = 0
        self.fraction_lost = 0.0
        self.cumulative_lost = 0
        self.rtt: Optional[float] = None
        self._sr_sent: "OrderedDict[int, float]" = OrderedDict()

    def rate_tick(self, interval: float) -> None:
        """The media rate over the last `interval` seconds (call once per report interval)."""
        self.media_bps = (self.octets - self._octets_prior) * 8 / interval
        self._octets_prior = self.octets

    def sender_report(self, ntp: int, rtp_timestamp: int, now: float) -> Optional[bytes]:
        """A sender report for the clock pair (NTP, RTP timestamp as the peer receives it); None before the first
        packet. Its send time is kept so that the report block echoing it gives the RTT."""
        if not self.packets:
            return None
        self._sr_sent[(ntp >> 16) & 0xFFFFFFFF] = now
        while len(self._sr_sent) > SR_REMEMBERED:
            self._sr_sent.popitem(last=False)
        return rtcp_builder.sender_report(self.ssrc, ntp, rtp_timestamp, self.packets, self.octets)

    def on_report(self, fraction_lost: int, cumulative_lost: int, lsr: int, dlsr: int, now: float) -> None:
        """A reception report block about this stream (RFC 3550 6.4.1): loss, and the RTT from LSR/DLSR."""
        self.fraction_lost = fraction_lost / 256
        self.cumulative_lost = cumulative_lost
        sent = self._sr_sent.get(lsr)
        if sent is not None and lsr:
            rtt = now - sent - dlsr / 65536
            if 0 <= rtt < MAX_RTT_S:
                self.rtt = rtt if self.rtt is None else 0.8 * self.rtt + 0.2 * rtt
