"""What an offer asks for beyond aiortc's own negotiation: transport-wide congestion control (the header
extension's id per media section, and the payload types that take `transport-cc` feedback), and redundant audio
(RFC 2198 `red/48000/2` over Opus).

aiortc knows neither; a viewer session accepts transport-cc where the viewer offered it, so that the SFU can
estimate the viewer's downlink from the viewer's feedback (send-side estimation), and RED, so that it can send
a lossy classroom each Opus frame twice or three times.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

from sfu.rtp.transport_feedback import TRANSPORT_CC_EXTENSION_URI

_EXTMAP = re.compile(r"a=extmap:(\d+)(?:/\w+)? (\S+)")
_FEEDBACK = re.compile(r"a=rtcp-fb:(\d+) transport-cc\s*$")
_RTPMAP = re.compile(r"a=rtpmap:(\d+) ([\w-]+)/(\d+)(?:/(\d+))?")
_FMTP = re.compile(r"a=fmtp:(\d+) (\S+)")


@dataclass
class SectionFeedback:
    kind: str
    transport_cc_id: int = 0                        # the extension's id in this section (0: not offered)
    transport_cc_pts: set[int] = field(default_factory=set)   # payload types offered with transport-cc feedback
    opus_pt: int = -1
    red_pt: int = -1                                 # red/48000/2, when its fmtp names Opus as every block
    red_fmtp: str = ""
    _codecs: dict[int, str] = field(default_factory=dict)
    _fmtp: dict[int, str] = field(default_factory=dict)

    @property
    def transport_cc(self) -> bool:
        return bool(self.transport_cc_id and self.transport_cc_pts)


def offered_feedback(offer: str) -> dict[str, SectionFeedback]:
    """Per media section (by mid): the transport-cc extension id and feedback payload types offered."""
    out: dict[str, SectionFeedback] = {}
    section: SectionFeedback | None = None
    mid = None
    for line in offer.splitlines():
        if line.startswith("m="):
            if section is not None and mid is not None:
                out[mid] = section
            section, mid = SectionFeedback(line[2:].split(" ", 1)[0]), None
        elif section is None:
            continue
        elif line.startswith("a=mid:"):
            mid = line[6:].strip()
        elif (m := _EXTMAP.match(line)) and m.group(2) == TRANSPORT_CC_EXTENSION_URI and 0 < int(m.group(1)) < 15:
            section.transport_cc_id = int(m.group(1))   # one-byte header form only (ids 1..14)
        elif m := _FEEDBACK.match(line):
            section.transport_cc_pts.add(int(m.group(1)))
        elif m := _RTPMAP.match(line):
            section._codecs[int(m.group(1))] = f"{m.group(2).lower()}/{m.group(3)}/{m.group(4) or 1}"
        elif m := _FMTP.match(line):
            section._fmtp[int(m.group(1))] = m.group(2)
    if section is not None and mid is not None:
        out[mid] = section
    for s in out.values():
        _find_red(s)
    return out


def _find_red(section: SectionFeedback) -> None:
    opus = [pt for pt, name in section._codecs.items() if name == "opus/48000/2"]
    if len(opus) != 1:
        return
    section.opus_pt = opus[0]
    for pt, name in section._codecs.items():
        fmtp = section._fmtp.get(pt, "")
        if name == "red/48000/2" and fmtp and set(fmtp.split("/")) == {str(section.opus_pt)}:
            section.red_pt, section.red_fmtp = pt, fmtp
            return
