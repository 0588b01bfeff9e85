"""A video track's server-side ladder: lower layers made from a single-layer publisher (OBS/WHIP, terminals).

The rungs appear in the track's layer list as on-demand layers with their nominal bitrates, below the
publisher's own stream, so the allocator treats them like simulcast layers. The RoomLadder (one decoder and
one encoder per rung, on one worker thread) exists only while some consumer forwards or switches to a rung,
and is fed only then: a room whose classrooms all take the original costs nothing.
"""
from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Callable, Optional

from sfu.ingest.inbound import InboundStream
from sfu.ladder.room_ladder import RoomLadder, Rung
from sfu.ladder.ladder_rung import TL_SHARE
from sfu.rtp.rtp_header import RtpView

if TYPE_CHECKING:
    from sfu.ingest.inbound import IngressPacket

log = logging.getLogger(__name__)

# What a 720p camera's classroom on a thin link gets: a quarter and a sixteenth of the picture, both at the full
# 30 fps, so that the smallest still has a smooth 15 fps in its two lower temporal layers (60 % of its rate) when
# a 300 kbit/s link cannot carry all of it.
DEFAULT_RUNGS: tuple[Rung, ...] = (Rung(640, 360, 500_000, 30), Rung(320, 180, 150_000, 30))
IDLE_CLOSE_S = 10.0  # a ladder no consumer wanted for this long is closed (its thread and codecs freed)


class RungStream(InboundStream):
    """One rung as a layer of the track: nominal rates (the encoder holds them), the source's clock."""

    on_demand = True

    def __init__(self, rung: Rung, index: int, source: InboundStream) -> None:
        super().__init__("video", "VP8", 90000, 0, source.payload_type, rid=f"ladder-{index}")
        self.rung = rung
        self.source = source
        self.width, self.height = rung.width, rung.height
        self.temporal_layers = len(TL_SHARE)
        self.rates = [rung.bitrate * share for share in TL_SHARE]
        self.frame_rates = [rung.fps / 4, rung.fps / 2, float(rung.fps)]  # L1T3: TL0 every 4th picture

    def update_rates(self, interval: float) -> None:
        pass  # nominal: a rate measured only while someone watches would hide the rung from the allocator

    def rtp_time_at(self, now: float) -> Optional[tuple[int, int]]:
        return self.source.rtp_time_at(now)  # rung packets carry the source's RTP timestamps


class TrackLadder:
    def __init__(self, source: InboundStream, rungs: tuple[Rung, ...],
                 forward: Callable[["IngressPacket", InboundStream, float], None],
                 request_source_keyframe: Callable[[InboundStream, float], None]) -> None:
        self.source = source
        self.rungs = rungs
        self.streams = [RungStream(r, i, source) for i, r in enumerate(rungs)]
        self._forward = forward
        self._request_source_keyframe = request_source_keyframe
        self.ladder: Optional[RoomLadder] = None
        self.active: frozenset[int] = frozenset()
        self.warm = False
        self._idle_since: Optional[float] = None
        self._closing: set[asyncio.Task] = set()

    @property
    def encoding(self) -> bool:
        """Decoding the source and encoding rungs now (for a viewer, or kept warm): the work a node carries."""
        return self.ladder is not None and (bool(self.active) or self.warm)

    def index_of(self, stream: InboundStream) -> Optional[int]:
        for i, s in enumerate(self.streams):
            if s is stream:
                return i
        return None

    def set_wanted(self, wanted_ids: set[int], now: float) -> None:
        """The rungs some consumer forwards or switches to (by id of their stream): start, feed or idle."""
        active = frozenset(i for i, s in enumerate(self.streams) if id(s) in wanted_ids)
        if active == self.active:
            return
        self.active = active
        if active and self.ladder is None:
            self._start()
        if self.ladder is not None:
            self.ladder.set_active(set(active))
        self._idle_since = None if active or self.warm else now

    def set_warm(self, warm: bool, now: float) -> None:
        """Decode the source ahead of need: a switch to a rung then starts on the very next frame instead of
        the source's next keyframe (seconds, for OBS)."""
        if warm == self.warm:
            return
        self.warm = warm
        if warm and self.ladder is None:
            self._start()
        if self.ladder is not None:
            self.ladder.set_warm(warm)
        self._idle_since = None if self.active or warm else now

    def _start(self) -> None:
        self.ladder = RoomLadder(list(self.rungs), self._emit, self._ask_source_keyframe)
        self.ladder.set_warm(self.warm)

    def on_source_packet(self, pkt: "IngressPacket") -> None:
        if (self.active or self.warm) and self.ladder is not None:
            view = pkt.view
            self.ladder.on_packet(view.data, self.source.codec, self.source.clock_rate, pkt.arrival)

    def request_keyframe(self, index: int) -> None:
        if self.ladder is not None:
            self.ladder.request_keyframe(index)

    def tick(self, now: float) -> None:
        """Free the ladder once it has been unwanted for a while."""
        if self.ladder is not None and self._idle_since is not None and now - self._idle_since > IDLE_CLOSE_S:
            self.close_later()

    def _emit(self, index: int, data: bytes) -> None:
        stream = self.streams[index]
        now = time.monotonic()
        try:
            view = RtpView(data)
        except ValueError:
            log.warning("ladder rung %d produced a malformed packet", index)
            return
        stream.last_packet_at = now
        self._forward(stream.classify(view, now), stream, now)

    def _ask_source_keyframe(self) -> None:
        self._request_source_keyframe(self.source, time.monotonic())

    def stats(self) -> Optional[dict]:
        return self.ladder.stats() if self.ladder is not None else None

    def close_later(self) -> None:
        ladder, self.ladder = self.ladder, None
        if ladder is None:
            return
        try:
            task = asyncio.get_running_loop().create_task(ladder.close())
        except RuntimeError:  # no loop (interpreter shutdown): the worker is a daemon thread
            return
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    async def close(self) -> None:
        ladder, self.ladder = self.ladder, None
        if ladder is not None:
            await ladder.close()
        if self._closing:
            await asyncio.gather(*self._closing, return_exceptions=True)
