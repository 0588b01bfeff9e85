"""Bitrate hints in the publisher's SDP answer.

Without transport-wide congestion control on the publisher leg, Chromium's send-side estimate
starts at 300 kbit/s and climbs by loss-based steps: a simulcast teacher sends only the lowest encodings for
10-20 s. `x-google-start-bitrate` (read by libwebrtc from the remote description's codec parameters) starts
it where a teacher's link normally is; loss and REMB still bring it down if the link is thinner.
"""
from __future__ import annotations

import re

START_KBPS = 2200  # all three simulcast encodings at once (150 + 500 + 1500 kbit/s)
_VIDEO_CODECS = ("VP8", "VP9", "H264", "AV1")


def add_start_bitrate(answer: str, start_kbps: int = START_KBPS) -> str:
    lines = answer.split("\r\n")
    out: list[str] = []
    in_video = False
    pts: list[str] = []
    for line in lines:
        if line.startswith("m="):
            in_video = line.startswith("m=video")
            pts = []
        if in_video:
            m = re.match(r"a=rtpmap:(\d+) ([A-Za-z0-9]+)/", line)
            if m and m.group(2).upper() in _VIDEO_CODECS:
                pts.append(m.group(1))
                has_fmtp = any(x.startswith(f"a=fmtp:{m.group(1)} ") for x in lines)
                out.append(line)
                if not has_fmtp:
                    out.append(f"a=fmtp:{m.group(1)} x-google-start-bitrate={start_kbps}")
                continue
            m = re.match(r"a=fmtp:(\d+) (.*)", line)
            if m and m.group(1) in pts and "x-google-start-bitrate" not in line:
                line = f"{line};x-google-start-bitrate={start_kbps}"
        out.append(line)
    return "\r\n".join(out)
