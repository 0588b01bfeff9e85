"""Simulcast offers answered per mid; malformed simulcast lines ignored."""
from __future__ import annotations

from sfu.webrtc.simulcast_sdp import complete_answer, parse_offer


OFFER = """v=0\r
o=- 1 2 IN IP4 127.0.0.1\r
s=-\r
t=0 0\r
m=video 9 UDP/TLS/RTP/SAVPF 96\r
a=mid:0\r
a=rid:q send\r
a=rid:h send\r
a=rid:f send\r
a=simulcast:send q;h;~f\r
m=audio 9 UDP/TLS/RTP/SAVPF 111\r
a=mid:1\r
"""


def test_simulcast_offer_is_answered_per_mid():
    offers = parse_offer(OFFER)
    assert len(offers) == 1 and offers[0].rids == ["q", "h", "f"] and offers[0].paused == {"f"}
    answer = "v=0\r\nm=video 9 X 96\r\na=mid:0\r\na=sendrecv\r\nm=audio 9 X 111\r\na=mid:1\r\n"
    done = complete_answer(answer, offers)
    video = done.split("m=audio")[0]
    assert "a=rid:q recv\r\na=rid:h recv\r\na=rid:f recv\r\na=simulcast:recv q;h;~f\r\n" in video
    assert "simulcast" not in done.split("m=audio")[1]


def test_malformed_simulcast_is_ignored():
    bad = OFFER.replace("a=rid:h send\r\n", "")                       # names a rid it never declares
    assert parse_offer(bad) == []
    too_many = OFFER.replace("q;h;~f", ";".join("abcde"))
    assert parse_offer(too_many) == []
