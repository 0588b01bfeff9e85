"""SDP hints aiortc does not write: the start bitrate on every video codec."""
from __future__ import annotations

from sfu.webrtc.sdp_hints import add_start_bitrate


def test_start_bitrate_hint_on_every_video_codec():
    answer = ("v=0\r\nm=video 9 X 96 97 102\r\na=rtpmap:96 VP8/90000\r\na=rtpmap:97 rtx/90000\r\n"
              "a=fmtp:97 apt=96\r\na=rtpmap:102 H264/90000\r\na=fmtp:102 packetization-mode=1\r\n"
              "m=audio 9 X 111\r\na=rtpmap:111 opus/48000/2\r\n")
    done = add_start_bitrate(answer, 1000)
    assert "a=fmtp:96 x-google-start-bitrate=1000\r\n" in done
    assert "a=fmtp:102 packetization-mode=1;x-google-start-bitrate=1000\r\n" in done
    assert "a=fmtp:97 apt=96\r\n" in done                               # RTX untouched
    assert done.count("x-google") == 2

