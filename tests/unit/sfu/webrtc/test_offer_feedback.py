"""Reading what a viewer's offer asks for: transport-cc per media section."""
from __future__ import annotations

from sfu.webrtc.offer_feedback import offered_feedback


CHROMIUM_RECVONLY_OFFER = (
    "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0 1\r\n"
    "m=audio 9 UDP/TLS/RTP/SAVPF 111 63\r\na=mid:0\r\na=recvonly\r\n"
    "a=extmap:1 urn:ietf:params:rtp-hdrext:ssrc-audio-level\r\n"
    "a=extmap:3 http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01\r\n"
    "a=rtpmap:111 opus/48000/2\r\na=rtcp-fb:111 transport-cc\r\na=fmtp:111 minptime=10;useinbandfec=1\r\n"
    "a=rtpmap:63 red/48000/2\r\na=fmtp:63 111/111\r\n"
    "m=video 9 UDP/TLS/RTP/SAVPF 96 97\r\na=mid:1\r\na=recvonly\r\n"
    "a=extmap:2 http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time\r\n"
    "a=extmap:3 http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01\r\n"
    "a=rtpmap:96 VP8/90000\r\na=rtcp-fb:96 goog-remb\r\na=rtcp-fb:96 transport-cc\r\na=rtcp-fb:96 nack\r\n"
    "a=rtpmap:97 rtx/90000\r\na=fmtp:97 apt=96\r\n")


def test_transport_cc_offered_per_section():
    offered = offered_feedback(CHROMIUM_RECVONLY_OFFER)
    assert offered["0"].transport_cc and offered["0"].transport_cc_id == 3 and offered["0"].transport_cc_pts == {111}
    assert offered["1"].kind == "video" and offered["1"].transport_cc_pts == {96}
    without = CHROMIUM_RECVONLY_OFFER.replace("a=rtcp-fb:96 transport-cc\r\n", "")
    assert not offered_feedback(without)["1"].transport_cc          # the extension alone is not enough
    two_byte = CHROMIUM_RECVONLY_OFFER.replace("a=extmap:3 ", "a=extmap:17 ")
    assert not offered_feedback(two_byte)["1"].transport_cc          # ids above 14 need the two-byte form
    assert offered_feedback("garbage\r\nm=video\r\na=rtcp-fb:x transport-cc\r\n") == {}


def test_red_over_opus_offered():
    audio = offered_feedback(CHROMIUM_RECVONLY_OFFER)["0"]
    assert (audio.opus_pt, audio.red_pt, audio.red_fmtp) == (111, 63, "111/111")
    assert offered_feedback(CHROMIUM_RECVONLY_OFFER)["1"].red_pt == -1
    other = CHROMIUM_RECVONLY_OFFER.replace("a=fmtp:63 111/111", "a=fmtp:63 0/0")   # RED of another codec
    assert offered_feedback(other)["0"].red_pt == -1
