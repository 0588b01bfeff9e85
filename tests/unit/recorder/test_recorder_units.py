"""Recorder pieces on their own, time passed in: the WebM writer and its repair after a crash at any byte, the
RTP-to-timeline mapping from sender reports, frame assembly across loss and reconnects, chapters from slide
changes, the catalogue's search and the library's paths."""
from __future__ import annotations

import os
import resource
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import av
import numpy as np
import pytest

from recorder.webm import ebml
from recorder.analysis import analyze, scene_changes
from recorder.media.assembler import Interleaver, TrackInput
from recorder.store.catalogue import Catalogue, Query
from recorder.media.h264 import avcc_record, split_annexb, to_avcc
from recorder.store.library import Library, LibraryBusy
from recorder.media.timeline import NTP_FRACTION, SenderClock, StreamTimeline
from recorder.webm.webm_writer import WebmWriter, WriteFailed, repair, scan
from sfu.ingest.inbound import InboundStream
from testkit.rtp_clip import vp8_clip_rtp
from testkit.sync_clip import make_slides_clip
from testkit.webm_files import Packet, clip_packets, lesson_tracks, track_number, write_lesson_file

CACHE = Path.home() / ".cache" / "liveclass-tests"


def write(path: Path, packets: list[Packet], seconds: float = 99.0, finish: bool = True) -> WebmWriter:
    return write_lesson_file(path, packets, seconds, finish, title="unit")


def decoded_video(path: Path) -> int:
    with av.open(str(path)) as c:
        return sum(1 for _ in c.decode(video=0))


@contextmanager
def disk_full_past(size: int) -> Iterator[None]:
    """The kernel refuses to grow any file past `size` bytes (RLIMIT_FSIZE), as a full disk refuses: a write that
    crosses it is cut short, the next fails (EFBIG: Python ignores SIGXFSZ)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (size, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))


# ---- the file ------------------------------------------------------------------------------------------------

def test_a_finished_file_plays_and_seeks_with_cues_on_every_keyframe(tmp_path, clip):
    w = write(tmp_path / "a.webm", clip_packets(clip))
    info = scan(tmp_path / "a.webm")
    assert info.finalized and len(info.cues) == 12 and info.duration_ms == w.duration_ms
    assert [c.time_ms for c in info.cues] == list(range(0, 12000, 1000))   # the clip's keyframes, one a second
    with av.open(str(tmp_path / "a.webm")) as c:
        assert abs(c.duration / 1e6 - 12.0) < 0.05
        c.seek(7_500_000)
        assert 7.0 <= next(c.decode(video=0)).time <= 7.5
    assert decoded_video(tmp_path / "a.webm") == 360
    assert repair(tmp_path / "a.webm").duration_ms == w.duration_ms   # repairing a finished file changes nothing


def test_finishing_costs_the_same_for_any_length(tmp_path, clip):
    """The seek index and header patches are written at the end; no media is copied."""
    import time
    packets = clip_packets(clip)
    w = WebmWriter(tmp_path / "long.webm", lesson_tracks())
    for loop in range(25):   # 5 minutes
        for t, kind, data, key in packets:
            w.add(track_number(kind), round((t + loop * 12.0) * 1000), data, key)
    t0 = time.perf_counter()
    done = w.finish()
    assert time.perf_counter() - t0 < 0.5
    assert done.cues == 300 and abs(done.duration_ms - 300_000) < 100


def test_a_file_cut_anywhere_is_playable_and_repairs_to_its_last_cluster(tmp_path, clip):
    live = tmp_path / "live.webm"
    write(live, clip_packets(clip), seconds=6.0, finish=False)   # the writer died: never finished
    size = live.stat().st_size
    rng = np.random.default_rng(1)
    cuts = sorted({*rng.integers(0, size, 40).tolist(), size, size - 1, 1, 200, 600})
    last_duration = -1
    for cut in cuts:
        path = tmp_path / "cut.webm"
        shutil.copy(live, path)
        os.truncate(path, cut)
        try:
            done = repair(path)
        except ebml.EbmlError:
            assert cut < 1000, f"only a file cut inside its header is beyond repair (cut at {cut})"
            continue
        again = repair(path)                         # idempotent
        assert again.duration_ms == done.duration_ms and again.size == done.size == path.stat().st_size
        assert done.duration_ms >= last_duration    # a longer file never repairs to less
        last_duration = done.duration_ms
        if done.clusters:
            with av.open(str(path)) as c:
                assert abs(c.duration / 1e6 - done.duration_ms / 1000) < 0.05
            assert decoded_video(path) >= 25 * (done.clusters - 1)
    assert last_duration >= 5900


def test_a_failed_write_leaves_the_file_ending_on_a_whole_cluster(tmp_path, clip):
    path = tmp_path / "full.webm"
    w = WebmWriter(path, lesson_tracks())
    packets = clip_packets(clip)
    for t, kind, data, key in packets[:300]:
        w.add(track_number(kind), round(t * 1000), data, key)
    w.flush()
    good = w.end
    with disk_full_past(good + 4096), pytest.raises(WriteFailed):   # the next Cluster is written in part
        for t, kind, data, key in packets[300:]:
            w.add(track_number(kind), round(t * 1000), data, key)
    assert path.stat().st_size == w.end and w.end < good + 4096      # the part written is gone again
    done = w.finish()
    assert path.stat().st_size == done.size and done.size > good
    with av.open(str(path)) as c:
        assert abs(c.duration / 1e6 - done.duration_ms / 1000) < 0.05
    assert decoded_video(path) > 100


def test_ebml_sizes_round_trip():
    for n in (0, 1, 126, 127, 128, 16382, 16383, 2 ** 40):
        enc = ebml.encode_size(n)
        assert ebml.read_vint(enc, 0) == (n, len(enc))
    assert len(ebml.void(11)) == 11 and len(ebml.void(300)) == 300
    with pytest.raises(ebml.EbmlError):
        ebml.read_vint(b"\x00\x01", 0)


# ---- the timeline --------------------------------------------------------------------------------------------

def sr(sender_t: float, rtp: int, at: float) -> tuple[int, int, float]:
    return int(sender_t * NTP_FRACTION), rtp & 0xFFFFFFFF, at


def test_sender_reports_keep_audio_and_video_in_sync_whatever_their_rtp_clocks_do():
    clock = SenderClock()
    video = StreamTimeline(90000, clock)
    audio = StreamTimeline(48000, clock)
    base_v, base_a = 3_000_000_000, 123_456          # random starts; video wraps past 2^32 during the test
    sender0 = 3_900_000_000.0                        # the publisher's NTP clock
    local0 = 1000.0
    # the audio device runs 200 ppm fast against the publisher's clock: RTP alone would drift 0.2 ms/s
    for second in range(0, 600, 60):
        t = sender0 + second
        video.on_packet(0, local0 + second, sr(t, base_v + second * 90000, local0 + second))
        audio.on_packet(0, local0 + second, sr(t, base_a + int(second * 48000 * 1.0002), local0 + second))
        tv = video.to_local((base_v + second * 90000 + 45000) & 0xFFFFFFFF, local0 + second + 0.5)
        ta = audio.to_local((base_a + int((second + 0.5) * 48000 * 1.0002)) & 0xFFFFFFFF, local0 + second + 0.5)
        assert abs(tv - ta) < 0.001 and abs(tv - (local0 + second + 0.5)) < 0.001


def test_without_sender_reports_a_stream_waits_then_is_placed_by_arrival():
    clock = SenderClock()
    tl = StreamTimeline(48000, clock, sr_wait=2.0)
    tl.on_packet(1000, 50.0, None)
    assert not tl.ready(51.0) and tl.ready(52.0)
    assert tl.to_local(1000 + 48000 * 3, 53.2) == pytest.approx(53.0)


def test_a_publisher_on_another_machine_gets_its_own_clock_offset():
    clock = SenderClock()
    a = StreamTimeline(90000, clock)
    a.on_packet(0, 10.0, sr(5000.0, 0, 10.0))
    assert a.to_local(90000, 11.0) == pytest.approx(11.0)
    b = StreamTimeline(90000, clock)                 # reconnect from a laptop whose clock is 1 h off
    b.on_packet(0, 20.0, sr(5000.0 + 3600 + 10.0, 0, 20.0))
    assert b.to_local(0, 20.0) == pytest.approx(20.0) and clock.resyncs == 1


# ---- frames --------------------------------------------------------------------------------------------------

def video_source(ssrc: int = 4321) -> InboundStream:
    return InboundStream("video", "VP8", 90000, ssrc, 96)


def test_video_waits_for_a_keyframe_after_loss_and_after_a_new_stream(clip):
    frames = vp8_clip_rtp(clip, ts0=1000)
    inp = TrackInput("video", SenderClock(), sr_wait=0.0)
    src = video_source()
    now = 0.0
    out = []
    for i, packets in enumerate(frames[:90]):        # 3 s at 30 fps, keyframes at 0, 30, 60
        now = i / 30
        for j, p in enumerate(packets):
            if i == 40 and j == 0:
                continue                             # a packet lost for good in frame 40
            inp.push(src, "VP8", 90000, p, now, None)
        out += inp.take(now + 1)
    out += inp.flush(now + 1)
    kinds = [(round(f.local * 30), f.keyframe) for f in out]
    assert kinds[0] == (0, True)
    written = [k for k, _ in kinds]
    assert 40 not in written and 41 not in written and 59 not in written   # nothing until the next keyframe
    assert (60, True) in kinds and written[-1] == 89 and inp.keyframe_wanted is False
    assert inp.waited_for_keyframe >= 19
    # the teacher reconnects: a new stream, whose first frames are not keyframes
    inp2_src = video_source(9999)
    for i, packets in enumerate(frames[95:125]):
        for p in packets:
            inp.push(inp2_src, "VP8", 90000, p, 10 + i / 30, None)
    got = inp.flush(12)
    assert got and got[0].keyframe and inp.sources == 2                      # frame 120 is the first kept


def test_interleaving_is_by_capture_time_and_waits_for_the_watermark():
    from recorder.media.assembler import Frame
    il = Interleaver()
    for t, kind in ((0.10, "video"), (0.02, "audio"), (0.04, "audio"), (0.133, "video"), (0.06, "audio")):
        il.push(Frame(t, int(t * 1000), kind, b"", True))
    assert [f.local for f in il.pop(0.05)] == [0.02, 0.04]
    assert [f.local for f in il.pop(1.0)] == [0.06, 0.10, 0.133] and len(il) == 0


def test_h264_annexb_to_avcc():
    sps, pps, idr = b"\x67\x42\xc0\x1e\xab", b"\x68\xce\x3c\x80", b"\x65\x88\x84" + b"\x00" * 10
    au = b"\x00\x00\x00\x01" + sps + b"\x00\x00\x01" + pps + b"\x00\x00\x00\x01" + idr
    assert split_annexb(au) == [sps, pps, idr]
    avcc = to_avcc(au)
    assert avcc[:4] == len(sps).to_bytes(4, "big") and avcc.endswith(idr)
    rec = avcc_record(au)
    assert rec is not None and rec[:4] == b"\x01\x42\xc0\x1e" and sps in rec and pps in rec
    assert avcc_record(b"\x00\x00\x01" + idr) is None


# ---- chapters ------------------------------------------------------------------------------------------------

def test_chapters_are_found_at_three_slide_changes_on_decoded_keyframes(tmp_path):
    clip = make_slides_clip(CACHE / "slides-640x360-v1.webm", changes=(6.0, 12.0, 18.0))
    result = analyze(str(clip), str(tmp_path))
    times = [c["t"] for c in result["chapters"]]
    assert len(times) == 4 and times[0] == 0.0
    for found, real in zip(times[1:], (6.0, 12.0, 18.0)):
        assert real <= found <= real + 1.0, times     # at the first keyframe after the change
    assert result["keyframes"] == 24                   # keyframes only: the other 336 frames were never decoded
    for c in result["chapters"]:
        img = (tmp_path / c["thumbnail"]).read_bytes()
        assert img[:2] == b"\xff\xd8" and len(img) < 20_000
    assert (tmp_path / "poster.jpg").read_bytes()[:2] == b"\xff\xd8"


def test_small_changes_do_not_make_chapters():
    rng = np.random.default_rng(3)
    base = rng.integers(0, 255, (36, 64)).astype(np.uint8)
    frames = []
    for i in range(30):
        f = base.copy()
        f[10:14, i:i + 4] = 255                      # a pointer moving
        frames.append((i * 2.0, np.clip(f.astype(int) + rng.integers(-8, 9, f.shape), 0, 255).astype(np.uint8)))
    assert scene_changes(frames) == [0.0]
    frames.append((61.0, 255 - base))
    frames.append((62.0, base))                       # back too soon: one chapter, not two
    assert scene_changes(frames) == [0.0, 61.0]


# ---- catalogue and library -----------------------------------------------------------------------------------

def test_catalogue_search_escapes_wildcards_and_pages(tmp_path):
    cat = Catalogue(str(tmp_path / "c.sqlite"))
    for i in range(25):
        cat.add({"id": f"{i:016x}", "title": f"Lesson {i}" + (" 100% fun" if i == 3 else ""),
                 "teacher": "T_1" if i % 2 else "T1",
                 "started_at": 1000.0 + i, "state": "ready"})
    rows, total = cat.search(Query(limit=10, offset=20))
    assert total == 25 and [r["id"][-2:] for r in rows] == ["04", "03", "02", "01", "00"]
    assert cat.search(Query(text="100%"))[1] == 1
    assert cat.search(Query(teacher="T_1"))[1] == 12      # _ is a character, not a wildcard
    assert cat.search(Query(date_from=1010, date_to=1015))[1] == 5
    with pytest.raises(ValueError):
        cat.add({"id": "x", "started_at": 0, "state": "lost"})
    cat.close()


def test_library_paths_stay_inside(tmp_path):
    lib = Library(tmp_path / "lib")
    assert lib.reserve_path.stat().st_size == 1 << 20
    for bad in ("../x", "a" * 15, "A" * 16, "a" * 16 + "/..", "", "0" * 16 + "\x00"):
        with pytest.raises(ValueError):
            lib.lesson_dir(bad)
        assert lib.file(bad, "lesson.webm") is None
    d = lib.lesson_dir("a" * 16, create=True)
    (d / "lesson.webm").write_bytes(b"x")
    assert lib.file("a" * 16, "lesson.webm") == d / "lesson.webm"
    for name in ("../../catalogue.sqlite", "/etc/passwd", "lesson.webm/..", ".reserve", "x.py"):
        assert lib.file("a" * 16, name) is None
    lib.release_reserve()
    assert not lib.reserve_path.exists() and lib.ensure_reserve()
    with pytest.raises(LibraryBusy):   # a second server on the same folder would "recover" live recordings
        Library(tmp_path / "lib")
    lib.close()
    Library(tmp_path / "lib").close()


def test_the_sink_asks_for_keyframes_at_start_new_streams_and_every_few_seconds(tmp_path, clip):
    from recorder.session import KindSink, RecordingSession, SessionConfig
    from sfu.rtp.rtp_header import RtpView

    session = RecordingSession(tmp_path / "x.webm", config=SessionConfig(keyframe_interval=5.0))  # not started
    asked: list[tuple[float, int]] = []
    sink = KindSink(session, "video", lambda now, src: asked.append((now, src.ssrc)))
    frames = vp8_clip_rtp(clip, ts0=0)
    first, second = video_source(1), video_source(2)
    for i in range(360):                               # 12 s from one stream: keyframes every second
        for p in frames[i]:
            sink.on_rtp(first.classify(RtpView(p), i / 30), first, i / 30)
    assert asked == [(0.0, 1)]                         # at the start only: keyframes keep coming
    delta = [f for j, f in enumerate(frames) if j % 30][:60]
    for i, f in enumerate(delta):                      # a stream that never sends one by itself
        for p in f:
            sink.on_rtp(second.classify(RtpView(p), 12 + i / 10), second, 12 + i / 10)
    assert asked[1] == (12.0, 2) and 17.0 < asked[2][0] <= 17.2   # the new stream, then 5 s without a keyframe
    later = [t for t, _ in asked[2:]]
    assert len(later) == 2 and all(b - a >= 0.5 for a, b in zip(later, later[1:]))   # again, at most each 0.5 s
    assert len(session.queue) == sum(len(f) for f in frames[:360]) + sum(len(f) for f in delta)
    session.closed = True
    sink.on_rtp(first.classify(RtpView(frames[0][0]), 30.0), first, 30.0)
    assert len(asked) == 4                             # a stopped recording takes nothing more
