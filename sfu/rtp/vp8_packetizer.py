"""VP8 frames -> RTP packets (RFC 7741) with PictureID, TL0PICIDX and TID/Y, as a browser sends L1T3.

The SFU forwards these like a browser's layer: it drops TID > n per viewer and rewrites PictureID and
TL0PICIDX when it switches, so both must be continuous per stream and the TID/Y bits must be truthful.
"""
from __future__ import annotations

import random
from typing import Optional

from sfu.rtp.rtp_header import build_header

MAX_PAYLOAD = 1200

# libvpx "ts_layering_mode=3" (FFmpeg's libvpx wrapper): 4-frame period, TIDs 0,2,1,2, restarted at every
# forced keyframe. TL0 refers to the last TL0 only, TL1 to the last TL0, the second TL2 to the TL1 (golden).
L1T3_TIDS = (0, 2, 1, 2)
L1T3_SYNC = (False, True, True, False)  # Y: the frame refers to TL0 only, so a viewer can switch up here


def l1t3_layer(index: int, keyframe: bool) -> tuple[int, bool]:
    """(TID, layer sync) of the frame encoded `index` frames after the last forced keyframe. A keyframe
    the encoder inserts by itself is still TL0: every later frame refers to it."""
    if keyframe:
        return 0, False
    i = index % len(L1T3_TIDS)
    return L1T3_TIDS[i], L1T3_SYNC[i]


class Vp8Packetizer:
    def __init__(self, ssrc: int, payload_type: int = 96, max_payload: int = MAX_PAYLOAD,
                 rng: Optional[random.Random] = None) -> None:
        r = rng or random.Random()
        self.ssrc = ssrc
        self.payload_type = payload_type
        self.max_payload = max_payload
        self.seq = r.getrandbits(16)
        self.picture_id = r.getrandbits(15)
        self.tl0picidx = r.getrandbits(8)
        self.frames = self.packets = self.octets = 0

    def packetize(self, frame: bytes, timestamp: int, tid: Optional[int], layer_sync: bool = False) -> list[bytes]:
        """RTP packets of one encoded frame; `tid` None sends no temporal layer fields."""
        self.picture_id = (self.picture_id + 1) & 0x7FFF
        if tid == 0:
            self.tl0picidx = (self.tl0picidx + 1) & 0xFF
        # X=1; I (15-bit PictureID), and with layers L (TL0PICIDX) + T (TID, Y)
        ext = bytes([0x80 | (0x60 if tid is not None else 0), 0x80 | (self.picture_id >> 8), self.picture_id & 0xFF])
        if tid is not None:
            ext += bytes([self.tl0picidx, (tid << 6) | (0x20 if layer_sync else 0)])
        room = self.max_payload - 1 - len(ext)
        count = max(1, -(-len(frame) // room))
        size = -(-len(frame) // count)  # equal-sized packets: no runt at the end
        out = []
        for i in range(count):
            chunk = frame[i * size:(i + 1) * size]
            last = i == count - 1
            header = build_header(int(last), self.payload_type, self.seq, timestamp, self.ssrc)
            header.append(0x90 if i == 0 else 0x80)  # X, S on the first packet, partition 0
            header += ext
            header += chunk
            out.append(bytes(header))
            self.seq = (self.seq + 1) & 0xFFFF
        self.frames += 1
        self.packets += count
        self.octets += len(frame)
        return out
