"""Server-side simulcast ladder for publishers that send one layer (OBS/FFmpeg over WHIP, terminals).

Once per room, not per viewer: the event loop depacketizes the source (cheap) and hands complete frames
to one worker thread, which decodes once, scales once per rung and encodes each rung that some viewer
needs as VP8 L1T3, so the SFU forwards the rungs like a browser's simulcast layers (including dropping
temporal layers per viewer). PyAV releases the GIL inside codec and scaler calls, so the loop keeps running.

Backpressure without memory growth: when the worker is a few frames behind it decodes but skips encoding
(the decoder's reference chain stays intact); when the bounded queue overflows, frames are dropped so that
what is queued still decodes (see _make_room), and the source is asked for a keyframe where needed.
"""
from __future__ import annotations

import asyncio
import collections
import logging
import threading
import time
from typing import Callable, Optional

import av

from sfu.rtp.depacketizer import CODECS, Depacketizer, EncodedFrame
from sfu.ingest.keyframe_requester import KeyframeRequester
from sfu.ladder.ladder_rung import Rung, RungEncoder, fit_within

__all__ = ["Rung", "RoomLadder"]

log = logging.getLogger(__name__)

QUEUE_LIMIT = 30   # frames (1 s at 30 fps): the most the worker may lag before frames are dropped
BEHIND = 3         # frames queued behind the current one: decode only, skip encoding


class _Job:
    __slots__ = ("frame", "pts", "codec")

    def __init__(self, frame: EncodedFrame, pts: int, codec: str) -> None:
        self.frame = frame
        self.pts = pts
        self.codec = codec


def _current_loop() -> asyncio.AbstractEventLoop:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.get_event_loop_policy().get_event_loop()


class RoomLadder:
    def __init__(self, rungs: list[Rung], emit: Callable[[int, bytes], None],
                 request_source_keyframe: Callable[[], None], loop: Optional[asyncio.AbstractEventLoop] = None,
                 queue_limit: int = QUEUE_LIMIT) -> None:
        self.rungs = list(rungs)
        self._emit = emit
        self._request_source_keyframe = request_source_keyframe
        self._loop = loop or _current_loop()
        self.queue_limit = queue_limit
        self._encoders = [RungEncoder(r) for r in self.rungs]
        # scale the biggest rung from the source and each smaller one from the next bigger: cheaper, less aliasing
        self._order = sorted(range(len(self.rungs)), key=lambda i: -self.rungs[i].width * self.rungs[i].height)
        # loop side
        self._depack: Optional[Depacketizer] = None
        self._source_keyframes = KeyframeRequester()
        self._need_keyframe = True
        self._last_arrival = 0.0
        self._ts_ext: Optional[int] = None
        self._active: frozenset[int] = frozenset()
        self._warm = False  # decode even with no rung active, so a rung can start at once with a keyframe
        self._kf_requests = [0] * len(self.rungs)   # written by the loop only; the worker compares counts
        self._closed = False
        self.frames_in = self.dropped_idle = self.dropped_waiting_keyframe = self.dropped_overflow = 0
        self.keyframe_requests_sent = 0
        # shared: the queue, under the condition's lock
        self._queue: collections.deque[_Job] = collections.deque()
        self._cv = threading.Condition()
        # worker side
        self._decoder: Optional[av.CodecContext] = None
        self._decoder_codec = ""
        self._decoder_needs_keyframe = False
        self.frames_processed = self.frames_decoded = self.decode_errors = self.encode_skipped = 0
        self.decode_seconds = self.scale_seconds = self.worker_cpu = 0.0
        self._thread = threading.Thread(target=self._run, name="room-ladder", daemon=True)
        self._thread.start()

    @property
    def ssrcs(self) -> list[int]:
        return [e.ssrc for e in self._encoders]

    # ---- event loop side ----

    def on_packet(self, data: bytes, payload_type_codec: str, clock_rate: int, arrival: float) -> None:
        if self._closed or clock_rate != 90000:  # RFC 7741 and RFC 6184 both fix the clock at 90 kHz
            return
        if self._depack is None or self._depack.codec != payload_type_codec:
            if payload_type_codec not in CODECS:
                return
            self._depack = Depacketizer(payload_type_codec)
            self._need_keyframe = True
        self._last_arrival = arrival
        for frame in self._depack.push(data, arrival):
            self._on_frame(frame, arrival)
        if self._decoding and self._source_keyframes.poll(arrival):
            self._ask_source_keyframe()

    @property
    def _decoding(self) -> bool:
        return bool(self._active) or self._warm

    def set_warm(self, warm: bool) -> None:
        """Keep decoding while no rung is encoded (a viewer may need one any moment): switching to a rung
        then waits for nothing, not even the source's next keyframe. Costs one decode of the source."""
        if warm == self._warm:
            return
        was_decoding = self._decoding
        self._warm = warm
        self._apply_active(self._active, was_decoding)

    def set_active(self, rung_indexes: set[int]) -> None:
        self._apply_active(frozenset(i for i in rung_indexes if 0 <= i < len(self.rungs)), self._decoding)

    def _apply_active(self, active: frozenset[int], was_decoding: bool) -> None:
        was_idle = not was_decoding
        self._active = active
        if not self._decoding:
            self._need_keyframe = True  # the decoder idles: it restarts from a keyframe
            with self._cv:
                self.dropped_idle += len(self._queue)
                self._queue.clear()
        elif was_idle and self._need_keyframe:
            self._want_keyframe(self._last_arrival)
        with self._cv:
            self._cv.notify()  # lets the worker close encoders of rungs no longer used

    def request_keyframe(self, rung_index: int) -> None:
        if 0 <= rung_index < len(self.rungs):
            self._kf_requests[rung_index] += 1

    def _on_frame(self, frame: EncodedFrame, now: float) -> None:
        self.frames_in += 1
        if frame.keyframe:
            self._source_keyframes.on_keyframe(now)
        if not self._decoding:
            self._need_keyframe = True
            self.dropped_idle += 1
            return
        if frame.after_loss:
            self._need_keyframe = True
        if self._need_keyframe and not frame.keyframe:
            self.dropped_waiting_keyframe += 1
            self._want_keyframe(now)
            return
        job = _Job(frame, self._unwrap(frame.timestamp), self._depack.codec)  # type: ignore[union-attr]
        with self._cv:
            queued = len(self._queue) < self.queue_limit or self._make_room(frame)
            if queued:
                self._queue.append(job)
                self._cv.notify()
        self._need_keyframe = not queued
        if not queued:
            self._want_keyframe(now)

    def _make_room(self, incoming: EncodedFrame) -> bool:
        """The queue is full. A keyframe replaces it all (fresh start, latency reset); otherwise drop what
        precedes the newest queued keyframe (the chain from there stays whole) or, with none, the incoming
        frame (the worker drains what it has; the loop waits for a keyframe). True when `incoming` may be
        queued. Called with the lock held."""
        q = self._queue
        newest_key = max((i for i, j in enumerate(q) if j.frame.keyframe), default=0)
        drop = len(q) if incoming.keyframe else newest_key
        for _ in range(drop):
            q.popleft()
        self.dropped_overflow += drop
        if drop:
            return True
        self.dropped_overflow += 1
        return False

    def _want_keyframe(self, now: float) -> None:
        if self._source_keyframes.request(now):
            self._ask_source_keyframe()

    def _ask_source_keyframe(self) -> None:
        self.keyframe_requests_sent += 1
        try:
            self._request_source_keyframe()
        except Exception:  # the SFU's callback must not break ingest
            log.exception("request_source_keyframe failed")

    def _unwrap(self, ts: int) -> int:
        """32-bit RTP timestamp -> monotonic 64-bit pts (starting one wrap up, so it never goes negative)."""
        if self._ts_ext is None:
            self._ts_ext = ts + (1 << 32)
        else:
            d = (ts - self._ts_ext) & 0xFFFFFFFF
            self._ts_ext += d - (1 << 32) if d >= 1 << 31 else d
        return self._ts_ext

    def _deliver(self, rung: int, packets: list[bytes]) -> None:
        if self._closed:
            return
        try:
            for p in packets:
                self._emit(rung, p)
        except Exception:
            log.exception("ladder emit failed")

    def _on_decode_error(self) -> None:
        self._need_keyframe = True
        self._want_keyframe(self._last_arrival)

    # ---- worker thread ----

    def _run(self) -> None:
        applied: frozenset[int] = frozenset()
        while True:
            with self._cv:
                while not self._queue and not self._closed and self._active == applied:
                    self._cv.wait()
                if self._closed:
                    return
                job = self._queue.popleft() if self._queue else None
                behind = len(self._queue) >= BEHIND
            if self._active != applied:
                applied = self._active
                for i, enc in enumerate(self._encoders):
                    if i not in applied:
                        enc.close()  # free what no viewer needs
            if job is None:
                continue
            try:
                self._process(job, behind)
            except Exception:
                log.exception("ladder worker failed on a frame")
                self._decoder_needs_keyframe = True
            self.frames_processed += 1
            self.worker_cpu = time.thread_time()

    def _process(self, job: _Job, behind: bool) -> None:
        active = self._active
        if not self._decoding:
            return
        if self._decoder is None or self._decoder_codec != job.codec:
            self._decoder = av.CodecContext.create({"VP8": "vp8", "H264": "h264"}[job.codec], "r")
            self._decoder.thread_count = 1  # no frame threading: it would delay output by frames
            self._decoder_codec = job.codec
            self._decoder_needs_keyframe = True
        if self._decoder_needs_keyframe and not job.frame.keyframe:
            return
        self._decoder_needs_keyframe = False
        packet = av.Packet(job.frame.data)
        packet.pts = job.pts
        started = time.perf_counter()
        try:
            pictures = self._decoder.decode(packet)
        except av.FFmpegError:
            self.decode_errors += 1
            self._decoder_needs_keyframe = True
            self._loop.call_soon_threadsafe(self._on_decode_error)
            return
        finally:
            self.decode_seconds += time.perf_counter() - started
        for picture in pictures:
            self.frames_decoded += 1
            if behind and not job.frame.keyframe:
                self.encode_skipped += 1
                continue
            self._encode(picture, active)

    def _encode(self, picture: av.VideoFrame, active: frozenset[int]) -> None:
        pts = picture.pts
        scaled: Optional[av.VideoFrame] = None
        for i in self._order:
            enc = self._encoders[i]
            if i not in active:
                continue
            if not enc.gate.take(pts):
                continue
            rung = self.rungs[i]
            w, h = fit_within(picture.width, picture.height, rung.width, rung.height)
            started = time.perf_counter()
            base = scaled if scaled is not None and scaled.width >= w else picture
            scaled = base.reformat(w, h, format="yuv420p")
            self.scale_seconds += time.perf_counter() - started
            packets = enc.encode(scaled, pts, self._kf_requests[i])
            if packets:
                self._loop.call_soon_threadsafe(self._deliver, i, packets)

    # ---- both ----

    def stats(self) -> dict:
        decoded = self.frames_decoded or 1
        return {
            "frames_in": self.frames_in, "frames_processed": self.frames_processed,
            "frames_decoded": self.frames_decoded,
            "dropped": {"idle": self.dropped_idle, "waiting_keyframe": self.dropped_waiting_keyframe,
                        "overflow": self.dropped_overflow, "encode_skipped": self.encode_skipped,
                        "decode_errors": self.decode_errors},
            "queue_depth": len(self._queue), "active": sorted(self._active), "warm": self._warm,
            "source_keyframe_requests": self.keyframe_requests_sent,
            "worker_cpu_seconds": round(self.worker_cpu, 3),
            "decode_ms": round(self.decode_seconds / decoded * 1000, 3),
            "scale_ms": round(self.scale_seconds / decoded * 1000, 3),
            "rungs": [e.stats() for e in self._encoders],
            "depacketizer": self._depack.stats() if self._depack else None,
        }

    async def close(self) -> None:
        with self._cv:
            self._closed = True
            self._queue.clear()
            self._cv.notify()
        await asyncio.get_running_loop().run_in_executor(None, self._thread.join, 5.0)
        self._decoder = None
        for enc in self._encoders:
            enc.close()
