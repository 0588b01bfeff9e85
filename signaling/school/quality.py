"""How the teacher's picture reached one classroom (pure): from the SFU's samples of that classroom's viewer
session, the time at each resolution, frozen (no video sent while the teacher's camera is live), without a
video session, the media reconnects, loss and RTT; and the timeline of those states for the report's chart.
Time is an argument."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

FROZEN = "frozen"     # a video session, the teacher's camera live, yet nothing sent to it since the last sample
NO_VIDEO = "none"     # present in the lesson, but no video session (not playing, or reconnecting)
IDLE = "idle"         # the teacher's camera is not live: not the classroom's link
MAX_SEGMENTS = 2000   # a chart's worth; later changes extend the last segment
MAX_GAP_S = 15.0      # samples further apart (a stalled node) are not credited to any state


@dataclass(frozen=True)
class VideoSample:
    """One classroom's viewer of the teacher's camera, as the SFU sees it at one instant."""
    session: str                  # the viewer session's id: a new one is a media reconnect
    packets: int                  # video packets sent to it so far
    height: Optional[int] = None  # the picture height of the layer it gets
    loss: Optional[float] = None  # 0..1, from its receiver reports
    rtt: Optional[float] = None   # ms
    bitrate: Optional[float] = None


def state_name(height: Optional[int]) -> str:
    return f"{height}p" if height else "video"


@dataclass
class QualityTrack:
    """One classroom's samples over a lesson; `offset` is the lesson's start (segments are relative to it)."""
    offset: float
    time_at: dict[str, float] = field(default_factory=dict)   # "360p" (or "video"), frozen, none, idle -> s
    segments: list[list[Any]] = field(default_factory=list)   # [from_s, to_s, state]
    media_restarts: int = 0
    sums: dict[str, float] = field(default_factory=dict)      # loss, rtt, bitrate: value x seconds
    weights: dict[str, float] = field(default_factory=dict)   # seconds each was measured (None: not)
    maxima: dict[str, float] = field(default_factory=dict)
    _at: Optional[float] = None
    _session: Optional[str] = None
    _packets: int = 0
    _state: Optional[str] = None   # what the last interval showed

    def add(self, now: float, sample: Optional[VideoSample], source_live: bool) -> None:
        """A sample at `now`; the time since the previous one is credited to the state it shows."""
        prev_at, prev_session, prev_packets = self._at, self._session, self._packets
        self._at = now
        if sample is not None:
            if prev_session is not None and sample.session != prev_session:
                self.media_restarts += 1
            self._session, self._packets = sample.session, sample.packets
        if prev_at is None or not 0 < now - prev_at <= MAX_GAP_S:
            return
        if not source_live:
            state = IDLE
        elif sample is None:
            state = NO_VIDEO
        elif sample.session == prev_session and sample.packets <= prev_packets:
            state = FROZEN
        else:
            state = state_name(sample.height)
        self._credit(prev_at, now, state)
        dt = now - prev_at
        if sample is not None and state != IDLE:
            for key, value in (("loss", sample.loss), ("rtt", sample.rtt), ("bitrate", sample.bitrate)):
                if value is not None:   # no receiver report yet is no measurement, not a zero
                    self.sums[key] = self.sums.get(key, 0.0) + dt * value
                    self.weights[key] = self.weights.get(key, 0.0) + dt
                    self.maxima[key] = max(self.maxima.get(key, 0.0), value)

    def _credit(self, t0: float, t1: float, state: str) -> None:
        self.time_at[state] = self.time_at.get(state, 0.0) + (t1 - t0)
        self._segment(t0 - self.offset, t1 - self.offset, state)
        self._state = state

    def pause(self, now: float) -> None:
        """The classroom left at `now`: the time since the last sample is taken as that sample showed (it is
        not sampled again on its way out); its absence is nobody's picture (the next sample starts afresh)."""
        if self._at is not None and self._state is not None and 0 < now - self._at <= MAX_GAP_S:
            self._credit(self._at, now, self._state)
        self._at = None

    def _segment(self, t0: float, t1: float, state: str) -> None:
        last = self.segments[-1] if self.segments else None
        if last is not None and last[2] == state and abs(last[1] - t0) < 0.5:
            last[1] = round(t1, 1)
        elif len(self.segments) >= MAX_SEGMENTS and last is not None:
            last[1] = round(t1, 1)
        else:
            self.segments.append([round(t0, 1), round(t1, 1), state])

    def _avg(self, key: str, digits: int) -> Optional[float]:
        w = self.weights.get(key)
        return round(self.sums[key] / w, digits) if w else None

    def _max(self, key: str, digits: int) -> Optional[float]:
        return round(self.maxima[key], digits) if key in self.maxima else None

    def to_json(self) -> dict[str, Any]:
        return {
            "time_at_resolution": {k: round(v, 1) for k, v in sorted(self.time_at.items())
                                   if k not in (FROZEN, NO_VIDEO, IDLE)},
            "frozen_s": round(self.time_at.get(FROZEN, 0.0), 1),
            "no_video_s": round(self.time_at.get(NO_VIDEO, 0.0), 1),
            "teacher_idle_s": round(self.time_at.get(IDLE, 0.0), 1),
            "media_restarts": self.media_restarts,
            "loss_avg": self._avg("loss", 4), "loss_max": self._max("loss", 4),
            "rtt_avg_ms": self._avg("rtt", 1), "rtt_max_ms": self._max("rtt", 1),
            "bitrate_avg": None if self._avg("bitrate", 0) is None else int(self._avg("bitrate", 0) or 0),
            "segments": self.segments,
        }
