"""One room's recording in progress: packet sinks on the event loop, a writer thread, one WebM file.

The sinks only append the packet to a queue (no parsing, no I/O on the media path) and ask the publisher for
keyframes: at the start, at every new stream (reconnect, layer change), after a loss the depacketizer could
not repair, and when none came for `keyframe_interval` seconds (each keyframe is a seek point). The writer
thread wakes every `tick`, assembles frames, places them on the timeline and writes them `latency` seconds after
capture, in capture-time order across tracks.
"""
from __future__ import annotations

import errno
import logging
import os
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Any, Callable, Optional

from recorder.media.assembler import VIDEO_CODECS, Frame, Interleaver, TrackInput
from recorder.media.timeline import SenderClock
from recorder.webm.webm_writer import AUDIO_TRACK, VIDEO_TRACK, Finished, TrackSpec, WebmWriter, WriteFailed, opus_head

log = logging.getLogger(__name__)

OPUS_SILENCE = b"\xf8\xff\xfe"   # one 20 ms CELT frame of silence (TOC config 31, mono, one frame)
OPUS_FRAME_MS = 20
FILL_SLACK_MS = 40                 # audio this far behind the frame being written counts as a gap


@dataclass(frozen=True)
class SessionConfig:
    latency: float = 1.0             # frames are written this long after capture (reordering, repairs, SR wait)
    video_wait: float = 3.0          # audio waits this long for the first video keyframe before starting alone
    sr_wait: float = 2.5             # a stream waits this long for its first sender report
    keyframe_interval: float = 5.0   # ask for a keyframe when none came for this long (seek points, chapters)
    tick: float = 0.1
    max_queue: int = 20_000          # packets waiting for the writer thread at most (then dropped and counted)
    sync_every: float = 10.0         # fdatasync the file this often (bounds the loss on power failure)
    # a Cluster is written whole once closed, so a crash loses the open one plus `latency`: a quarter second
    # keeps a kill -9 well within 2 s of media (the cost: a ~20-byte Cluster header four times a second)
    max_cluster_ms: int = 250


@dataclass
class Outcome:
    """How a recording ended."""
    finished: Optional[Finished]     # None when nothing was written (no media came, or see error)
    started_at: Optional[float]      # wall-clock time of the file's zero, None when nothing was written
    tracks: list[dict]
    error: Optional[str]             # why it stopped early or failed (full disk, ...)
    stats: dict


class KindSink:
    """The SFU-side `PacketSink` of one track kind: runs on the event loop for every packet of the best layer."""

    def __init__(self, session: "RecordingSession", kind: str, request_keyframe: Callable[[float, Any], None]) -> None:
        self.session = session
        self.kind = kind
        self.request_keyframe = request_keyframe
        self._source: Any = None
        self._last_keyframe = 0.0
        self._last_request = -1e9

    def on_rtp(self, pkt: Any, source: Any, now: float) -> None:
        s = self.session
        if s.closed:
            return
        if self.kind == "video":
            if source is not self._source:
                self._source = source
                self._last_keyframe = now
                self._ask(now, source)
            elif pkt.keyframe:
                self._last_keyframe = now
            elif ((s.inputs["video"].keyframe_wanted or now - self._last_keyframe > s.config.keyframe_interval)
                  and now - self._last_request > 0.5):
                self._ask(now, source)
        s.enqueue(self.kind, source, pkt.view.data, now)

    def _ask(self, now: float, source: Any) -> None:
        self._last_request = now
        try:
            self.request_keyframe(now, source)
        except Exception:
            log.exception("keyframe request failed")


class RecordingSession:
    def __init__(self, path: str | os.PathLike, title: str = "", config: SessionConfig = SessionConfig(),
                 clock: Callable[[], float] = time.monotonic, wall: Callable[[], float] = time.time,
                 on_disk_full: Callable[[], None] = lambda: None,
                 on_end: Callable[["RecordingSession"], None] = lambda s: None, audio: bool = True) -> None:
        self.path = os.fspath(path)
        self.title = title
        self.config = config
        self.clock = clock
        self.wall = wall
        self.on_disk_full = on_disk_full      # called on the writer thread before finishing a full-disk file
        self.on_end = on_end                  # called on the writer thread when it stopped by itself (error)
        self.queue: deque[tuple[str, Any, bytes, float, Any]] = deque()
        self.sender = SenderClock()
        self.with_audio = audio   # False: a video-only file (the screen share)
        kinds = ("video", "audio") if audio else ("video",)
        self.inputs = {k: TrackInput(k, self.sender, config.sr_wait) for k in kinds}
        self.interleaver = Interleaver()
        self.writer: Optional[WebmWriter] = None
        self._specs: list[TrackSpec] = []
        self.t0: Optional[float] = None
        self.started_at: Optional[float] = None
        self.video_codec: Optional[str] = None
        self.preroll: deque[Frame] = deque()
        self.last_ms: dict[int, int] = {}
        self.closed = False
        self.error: Optional[str] = None
        self.outcome: Optional[Outcome] = None
        self.dropped_queue = self.late_frames = self.dropped_codec = self.silence_frames = 0
        self.created = clock()
        self._last_add = 0.0
        self._last_sync = self.created
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"recorder {os.path.basename(self.path)}",
                                        daemon=True)

    # ---- event loop side ---------------------------------------------------------------------------------

    def start(self) -> None:
        self._thread.start()

    def enqueue(self, kind: str, source: Any, data: bytes, now: float) -> None:
        if len(self.queue) >= self.config.max_queue:
            self.dropped_queue += 1
            return
        self.queue.append((kind, source, data, now, source.sr))

    def stop(self, timeout: float = 30.0) -> Outcome:
        """Finish the file (blocking: call it in a worker thread). Idempotent."""
        self.closed = True
        self._stop.set()
        if self._thread.is_alive() or self._thread.ident is not None:
            self._thread.join(timeout)
        if self.outcome is None:  # the thread never ran or is stuck: finish what can be finished here
            self.outcome = Outcome(None, self.started_at, self.tracks(), self.error or "writer did not stop",
                                   self.stats())
        return self.outcome

    # ---- writer thread -----------------------------------------------------------------------------------

    def _run(self) -> None:
        try:
            while True:
                stopping = self._stop.wait(self.config.tick)
                now = self.clock()
                self._drain()
                self._emit(now, final=stopping)
                if stopping:
                    break
                self._housekeeping(now)
        except WriteFailed as exc:
            self.error = f"recording stopped: {exc.strerror or exc}"
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                self.error = "recording stopped: the disk is full (no space left on device)"
            log.error("%s: %s", self.path, self.error)
        except Exception as exc:  # a bug must not leave the file unfinished nor the loop waiting
            log.exception("recorder thread failed for %s", self.path)
            self.error = f"recording stopped: internal error ({type(exc).__name__})"
        self.closed = True
        self.outcome = self._finish()
        if self.error is not None:
            try:
                self.on_end(self)
            except Exception:
                log.exception("recorder end callback failed")

    def _drain(self) -> None:
        q = self.queue
        inputs = self.inputs
        while q:
            kind, source, data, arrival, sr = q.popleft()
            inp = inputs.get(kind)
            if inp is not None:   # (a screen-share recording has no audio input)
                inp.push(source, source.codec, source.clock_rate, data, arrival, sr)

    def _emit(self, now: float, final: bool) -> None:
        for inp in self.inputs.values():
            for f in (inp.flush(now) if final else inp.take(now)):
                self.interleaver.push(f)
        watermark = float("inf") if final else now - self.config.latency
        for inp in self.inputs.values():
            b = inp.blocking_since()
            if b is not None:
                watermark = min(watermark, b - 0.5)
        for f in self.interleaver.pop(watermark):
            self._write(f, now)
        waited = final or (bool(self.preroll) and self.preroll[0].local < watermark - self.config.video_wait)
        if self.writer is None and self.preroll and waited:   # no keyframe came: the file starts with the audio
            video = self.inputs.get("video")
            codec = video.codec if video is not None and video.codec in VIDEO_CODECS else None
            if codec == "H264" and not video.codec_private:
                codec = None   # no parameter sets seen: an H.264 track could not be declared decodable
            self._open(self.preroll[0].local, with_video=codec is not None, codec=codec)
            while self.preroll:
                self._write(self.preroll.popleft(), now)

    def _write(self, f: Frame, now: float) -> None:
        if self.writer is None:
            if f.kind == "audio":
                self.preroll.append(f)   # until the first video keyframe (A/V start together)
                if len(self.preroll) > 1000:
                    self.preroll.popleft()
                return
            if not f.keyframe:
                return
            self.preroll.clear()
            self._open(f.local, with_video=True, codec=f.codec)
        assert self.t0 is not None and self.writer is not None
        if f.kind == "video":
            if self.video_codec is None or f.codec != self.video_codec:
                self.dropped_codec += 1   # a reconnect with another codec cannot join this file's track
                return
            track = VIDEO_TRACK
        else:
            track = AUDIO_TRACK
        ms = round((f.local - self.t0) * 1000)
        if self.with_audio:
            self._fill_audio(ms, now)
        last = self.last_ms.get(track)
        if last is not None and ms <= last:
            if ms < last - 200:
                self.late_frames += 1
            ms = last + 1
        if ms < 0:
            return
        self.last_ms[track] = ms
        self.writer.add(track, ms, f.data, f.keyframe)
        self._last_add = now

    def _fill_audio(self, until_ms: int, now: float) -> None:
        """Silence in the audio track up to `until_ms` (the next frame written) where no audio came: a gap
        (publisher gone, microphone off) stays real time in every player, and the audio track is continuous from
        the file's start. Only ever up to real media: a file does not end on the silence after the lesson."""
        assert self.writer is not None
        last = self.last_ms.get(AUDIO_TRACK)
        nxt = 0 if last is None else last + OPUS_FRAME_MS
        while nxt <= until_ms - FILL_SLACK_MS:
            self.writer.add(AUDIO_TRACK, nxt, OPUS_SILENCE, True)
            self.last_ms[AUDIO_TRACK] = nxt
            self.silence_frames += 1
            self._last_add = now
            nxt += OPUS_FRAME_MS

    def _open(self, t0: float, with_video: bool, codec: Optional[str] = None) -> None:
        specs = []
        video = self.inputs["video"]
        if with_video:
            self.video_codec = codec
            w, h = video.size or (0, 0)
            specs.append(TrackSpec(VIDEO_TRACK, "video", codec or "VP8", w, h, video.codec_private))
        if self.with_audio:
            specs.append(TrackSpec(AUDIO_TRACK, "audio", "opus", codec_private=opus_head()))
        self.t0 = t0
        self.started_at = self.wall() - (self.clock() - t0)
        self.writer = WebmWriter(self.path, specs, self.title, self.started_at, self.config.max_cluster_ms)
        self._specs = specs

    def _housekeeping(self, now: float) -> None:
        w = self.writer
        if w is None:
            return
        if now - self._last_add > self.config.max_cluster_ms / 1000:
            w.flush()   # nothing new for a while (publisher gone): put the last Cluster on disk
        if now - self._last_sync >= self.config.sync_every:
            self._last_sync = now
            try:
                os.fdatasync(w._fd)
            except OSError as exc:
                raise WriteFailed(exc.errno, exc.strerror) from exc

    def _finish(self) -> Outcome:
        w = self.writer
        finished = None
        if w is not None:
            if w.failed is not None or self.error:
                try:
                    self.on_disk_full()
                except Exception:
                    log.exception("freeing reserve space failed")
            try:
                finished = w.finish()
            except OSError as exc:
                w.abandon()
                self.error = self.error or f"finishing the file failed: {exc.strerror or exc}"
                log.error("%s: %s (the file stays playable; repaired at next start)", self.path, self.error)
        return Outcome(finished, self.started_at, self.tracks(), self.error, self.stats())

    def tracks(self) -> list[dict]:
        out = []
        for spec in self._specs:
            d: dict = {"kind": spec.kind, "codec": spec.codec}
            if spec.kind == "video":
                d.update(width=spec.width or None, height=spec.height or None)
            out.append(d)
        return out

    def stats(self) -> dict:
        return {"dropped_queue": self.dropped_queue, "late_frames": self.late_frames,
                "dropped_codec": self.dropped_codec, "silence_frames": self.silence_frames,
                "resyncs": self.sender.resyncs,
                **{f"{k}_{n}": getattr(inp, n) for k, inp in self.inputs.items()
                   for n in ("packets", "frames", "waited_for_keyframe", "sources", "unsupported", "sr_frames",
                            "arrival_frames")}}
