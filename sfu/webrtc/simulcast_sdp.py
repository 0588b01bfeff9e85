"""Simulcast in SDP (RFC 8853): read the encodings a publisher's offer announces, and answer them.

aiortc drops `a=rid`/`a=simulcast`; without them in the answer Chromium silently sends only its lowest
encoding. The answer is produced by aiortc and completed here, per media section (matched by a=mid).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

RID_EXT = "urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id"
REPAIRED_RID_EXT = "urn:ietf:params:rtp-hdrext:sdes:repaired-rtp-stream-id"
MAX_RIDS = 4
_RID_NAME = re.compile(r"^[A-Za-z0-9_-]{1,16}$")


@dataclass
class SimulcastOffer:
    mid: str
    kind: str
    rids: list[str] = field(default_factory=list)   # in the order of a=simulcast's send list
    paused: set[str] = field(default_factory=set)


def _sections(sdp: str) -> list[list[str]]:
    lines = sdp.replace("\r\n", "\n").split("\n")
    out: list[list[str]] = [[]]
    for line in lines:
        if line.startswith("m="):
            out.append([])
        out[-1].append(line)
    return out


def parse_offer(sdp: str) -> list[SimulcastOffer]:
    """The simulcast media sections of an offer (sending side). Malformed or oversized lists are ignored:
    such a section is then treated as a single-layer one."""
    found = []
    for section in _sections(sdp)[1:]:
        kind = section[0][2:].split(" ", 1)[0]
        mid = next((line[6:].strip() for line in section if line.startswith("a=mid:")), None)
        declared = {m.group(1) for line in section if (m := re.match(r"a=rid:(\S+) send\b", line))}
        sim = next((line for line in section if line.startswith("a=simulcast:")), None)
        if mid is None or sim is None:
            continue
        m = re.match(r"a=simulcast:\s*send\s+(\S+)", sim)
        if not m:
            continue
        offer = SimulcastOffer(mid, kind)
        for alternatives in m.group(1).split(";"):
            rid = alternatives.split(",")[0]
            paused = rid.startswith("~")
            rid = rid.lstrip("~")
            if not _RID_NAME.match(rid) or rid not in declared or rid in offer.rids:
                offer.rids = []
                break
            offer.rids.append(rid)
            if paused:
                offer.paused.add(rid)
        if 1 < len(offer.rids) <= MAX_RIDS:
            found.append(offer)
    return found


def complete_answer(answer: str, offers: list[SimulcastOffer]) -> str:
    """Add `a=rid:X recv` and `a=simulcast:recv` to the answer's sections for the offered simulcast."""
    by_mid = {o.mid: o for o in offers}
    sections = _sections(answer)
    for section in sections[1:]:
        mid = next((line[6:].strip() for line in section if line.startswith("a=mid:")), None)
        offer = by_mid.get(mid) if mid is not None else None
        if offer is None:
            continue
        at = next(i for i, line in enumerate(section) if line.startswith("a=mid:")) + 1
        extra = [f"a=rid:{rid} recv" for rid in offer.rids]
        extra.append("a=simulcast:recv " + ";".join(("~" if r in offer.paused else "") + r for r in offer.rids))
        section[at:at] = extra
    text = "\r\n".join(line for section in sections for line in section)
    return text if text.endswith("\r\n") else text + "\r\n"
