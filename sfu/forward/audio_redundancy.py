"""Redundant audio for one lossy viewer (RFC 2198 over Opus): each packet carries the previous one or two Opus
frames beside its own, so a lost packet's frame arrives with the next one and the viewer's decoder plays it
instead of concealing a gap (a click). Built from the publisher's own packets: nothing is decoded or encoded.

Off on a clean link (it costs a frame's size per redundant copy); one copy from ENABLE_LOSS, two from
TWO_COPIES_LOSS, with hysteresis so the choice does not flap with each loss report; never more than the link
affords. Pure: time-free, IO-free.
"""
from __future__ import annotations

from collections import deque
from typing import Optional

from sfu.rtp.red import MAX_OFFSET, RedBlock, build_red

ENABLE_LOSS = 0.003    # each lost packet is 20 ms concealed: at 0.3 % that is 0.3 % of the voice, and RED costs
DISABLE_LOSS = 0.001   # one frame per packet (~24-32 kbit/s) that even a 300 kbit/s classroom link can spare
TWO_COPIES_LOSS = 0.02  # one copy still loses a frame when a packet and the next are both lost (p squared):
ONE_COPY_LOSS = 0.012   # at 3 % that is a click every ~20 s; two copies leave p cubed (one in ~12 minutes)
MAX_DISTANCE = 2
MAX_SHARE = 0.3        # copies of the voice cost at most this share of the link: a classroom's ~32 kbit/s Opus
                       # (~40 on the wire) gets one from ~130 kbit/s up; a 180 kbit/s music stream none on
                       # 500 kbit/s (video first)
TWO_COPIES_SHARE = 0.15  # ... and two at most this share: from ~430 kbit/s up (on a 300 kbit/s link a second
                         # copy would take the picture's frame rate)


class AudioRedundancy:
    __slots__ = ("red_pt", "distance", "_sent_distance", "_history")

    def __init__(self, red_pt: int) -> None:
        self.red_pt = red_pt
        self.distance = 0   # earlier frames carried per packet
        self._sent_distance = 0   # the distance the last rate was measured with
        self._history: deque[tuple[int, bytes]] = deque(maxlen=MAX_DISTANCE)

    def set_loss(self, loss: float, sent_bps: float = 0.0, link_bps: Optional[float] = None) -> None:
        """The viewer's link loss (what it lost lately without a queue): how many copies it needs. `sent_bps` is
        what the audio is sent now (copies included) and `link_bps` what the link carries (None: not known):
        copies costing more than MAX_SHARE of it are not sent (they would starve the picture)."""
        if self.distance == 0:
            self.distance = 0 if loss < ENABLE_LOSS else 1
        elif loss < DISABLE_LOSS:
            self.distance = 0
        if self.distance == 1 and loss >= TWO_COPIES_LOSS:
            self.distance = 2
        elif self.distance == 2 and loss < ONE_COPY_LOSS:
            self.distance = 1
        if link_bps is not None:
            frame_bps = sent_bps / (1 + self._sent_distance)   # the voice alone
            while self.distance and self.distance * frame_bps > (MAX_SHARE if self.distance == 1 else
                                                                  TWO_COPIES_SHARE) * link_bps:
                self.distance -= 1
        self._sent_distance = self.distance

    def restart(self) -> None:
        """A new stream on the viewer's side (a new publisher, a switch): earlier frames no longer belong."""
        self._history.clear()

    def wrap(self, opus_pt: int, timestamp: int, frame: bytes) -> Optional[bytes]:
        """The RED payload for a packet carrying `frame` at `timestamp` (the viewer's RTP timestamp), or None to
        send it plain. Every frame is remembered, so redundancy is there from the first packet it is turned on."""
        blocks = []
        if self.distance:
            for ts, data in list(self._history)[-self.distance:]:
                offset = (timestamp - ts) & 0xFFFFFFFF
                if 0 < offset <= MAX_OFFSET:
                    blocks.append(RedBlock(opus_pt, offset, data))
        self._history.append((timestamp, bytes(frame)))
        return build_red(opus_pt, frame, blocks) if self.distance else None
