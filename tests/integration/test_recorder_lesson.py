"""A 20 s lesson recorded for real: `liveclass serve`, an aiortc teacher publishing a clip with sync marks (a flash
and a beep at the same instants), leaving for 3 s and coming back. What a student gets must be right: both
streams, the real duration with the gap kept, lip sync, a seek index, and a lesson in the library."""
from __future__ import annotations

from pathlib import Path

import av
import pytest

from testkit.lessons import RecordedLesson, shared_lesson
from testkit.sync_clip import av_offsets, flash_times

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def lesson(tmp_path_factory) -> RecordedLesson:
    return shared_lesson(tmp_path_factory)


def top_level(path: Path) -> dict[int, list[int]]:
    """Independent of recorder/: top-level Matroska element ids -> their offsets, and CuePoint cluster positions."""
    data = path.read_bytes()

    def vint(pos: int, keep_marker: bool) -> tuple[int, int]:
        n = 9 - data[pos].bit_length()
        v = int.from_bytes(data[pos:pos + n], "big")
        return (v if keep_marker else v & ((1 << (7 * n)) - 1)), pos + n

    pos = 0
    eid, pos = vint(pos, True)
    size, pos = vint(pos, False)
    pos += size                                  # EBML header
    eid, pos = vint(pos, True)
    assert eid == 0x18538067
    seg_size, pos = vint(pos, False)
    seg_start = pos
    assert seg_start + seg_size == len(data), "finished file: the Segment size is known and exact"
    found: dict[int, list[int]] = {}
    while pos < len(data):
        start = pos
        eid, pos = vint(pos, True)
        size, pos = vint(pos, False)
        found.setdefault(eid, []).append(start - seg_start)
        if eid == 0x1C53BB6B:                      # Cues: collect CueClusterPosition values
            end, p = pos + size, pos
            while p < end:
                cid, p = vint(p, True)
                csize, p = vint(p, False)
                body_end = p + csize
                if cid == 0xBB:
                    q = p
                    while q < body_end:
                        xid, q = vint(q, True)
                        xsize, q = vint(q, False)
                        if xid == 0xB7:
                            r = q
                            while r < q + xsize:
                                yid, r = vint(r, True)
                                ysize, r = vint(r, False)
                                if yid == 0xF1:
                                    found.setdefault(-1, []).append(int.from_bytes(data[r:r + ysize], "big"))
                                r += ysize
                        q += xsize
                p = body_end
        pos += size
    return found


def test_the_lesson_has_both_streams_its_real_duration_and_the_gap(lesson):
    with av.open(str(lesson.media)) as c:
        kinds = sorted((s.type, s.codec_context.name) for s in c.streams)
        assert kinds == [("audio", "opus"), ("video", "vp8")]
        duration = c.duration / 1e6
        video = [float(p.pts * p.time_base) for p in c.demux(video=0) if p.size]
    assert abs(duration - lesson.real_time) <= 0.5, (duration, lesson.real_time)
    assert abs(lesson.lesson["duration_s"] - duration) < 0.05
    gaps = [(a, b) for a, b in zip(video, video[1:]) if b - a > 1.0]
    assert len(gaps) == 1, gaps
    gap = gaps[0][1] - gaps[0][0]
    expected = lesson.segments[1][0] - lesson.segments[0][1]
    assert abs(gap - expected) <= 0.5, (gap, expected)   # the teacher's absence stays in real time
    assert abs(gaps[0][0] - (lesson.segments[0][1] - lesson.segments[0][0])) <= 0.5


def test_lip_sync_and_start_offset_within_40ms(lesson):
    offsets = av_offsets(str(lesson.media))
    assert len(offsets) >= 15, offsets                  # a flash a second, both visits
    assert max(abs(x) for x in offsets) <= 0.040, offsets
    with av.open(str(lesson.media)) as c:
        first = {s.type: None for s in c.streams}
        for p in c.demux():
            if p.size and first[p.stream.type] is None:
                first[p.stream.type] = float(p.pts * p.time_base)
            if all(v is not None for v in first.values()):
                break
    assert abs(first["video"] - first["audio"]) <= 0.040, first


def test_the_file_has_a_seek_index_and_seeks(lesson):
    found = top_level(lesson.media)
    assert 0x1C53BB6B in found, "Cues element"
    assert 0x114D9B74 in found and found[0x114D9B74][0] < found[0x1549A966][0], "SeekHead before Info"
    clusters = set(found[0x1F43B675])
    cue_positions = found[-1]
    assert len(cue_positions) >= 15 and set(cue_positions) <= clusters   # a cue per second or so, on Clusters
    with av.open(str(lesson.media)) as c:
        c.seek(15_000_000)                             # 15 s, in the second visit
        t = next(f.time for f in c.decode(video=0))
    assert 14.0 <= t <= 15.01, t
    flashes = flash_times(str(lesson.media), start=14.0)
    assert flashes and flashes[0] < 16.0


def test_the_library_lists_it_ready_with_poster_and_chapter(lesson):
    le = lesson.lesson
    assert le["state"] == "ready" and le["error"] is None
    assert (le["title"], le["teacher"], le["subject"], le["school"], le["grade"], le["room"]) == (
        "Optics: lenses", "Ada Teacher", "Physics", "No. 1 Middle", "7", "physics-7")
    assert le["media_url"] == f"/api/library/{le['id']}/media"
    assert le["thumbnail_url"] and le["chapters"] and le["chapters"][0]["t"] == 0.0
    assert le["thumbnail_url"] == f"/api/library/{le['id']}/thumbnail"
    camera = [t for t in le["tracks"] if t.get("source") != "screen"]
    assert [t["kind"] for t in camera] == ["video", "audio"] and camera[0]["width"] == 320
    assert [(t["kind"], t["source"], t["width"]) for t in le["tracks"] if t.get("source") == "screen"] == [
        ("video", "screen", 640)]
    assert le["size"] == lesson.media.stat().st_size + lesson.screen_media.stat().st_size
    assert lesson.stop_took < 2.0   # finalized and in the library within 2 s of the stop


def test_the_screen_share_is_recorded_beside_it_and_its_slides_make_the_chapters(lesson):
    le = lesson.lesson
    assert lesson.screen is not None and le["screen_url"] == f"/api/library/{le['id']}/screen"
    expected_offset = lesson.screen[0] - lesson.segments[0][0]
    assert abs(le["screen_offset_s"] - expected_offset) <= 0.15, (le["screen_offset_s"], expected_offset)
    with av.open(str(lesson.screen_media)) as c:
        assert [(s.type, s.codec_context.name) for s in c.streams] == [("video", "vp8")]
        duration = c.duration / 1e6
        assert c.streams.video[0].codec_context.width == 640
    assert abs(duration - (lesson.screen[1] - lesson.screen[0])) <= 0.5
    assert 0x1C53BB6B in top_level(lesson.screen_media)
    # the slides changed 6, 12 and 18 s into the share: chapters at the first keyframe after each (1 s apart)
    times = [c["t"] for c in le["chapters"]]
    assert times[0] == 0.0 and len(times) == 4, times
    for found, change in zip(times[1:], (6.0, 12.0, 18.0)):
        at = le["screen_offset_s"] + change
        assert at - 0.1 <= found <= at + 1.2, (times, le["screen_offset_s"])
    assert all(c["thumbnail_url"] for c in le["chapters"])
