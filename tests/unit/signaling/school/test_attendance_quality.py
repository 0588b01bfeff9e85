"""Presence with reconnects merged, and the picture's quality from SFU samples: time passed in, no sleeping."""
from __future__ import annotations

from signaling.school.attendance import LessonLog, visits
from signaling.school.quality import MAX_GAP_S, QualityTrack, VideoSample

T0 = 1_800_000_000.0


def test_presence_counts_only_time_here_and_merges_short_gaps():
    log = LessonLog("l" * 16, T0)
    assert log.arrive("a", "A", T0) and not log.arrive("a", "A", T0 + 1)
    log.depart("a", T0 + 100)          # a dropped connection ...
    log.arrive("a", "A", T0 + 110)     # ... back 10 s later: a reconnect
    log.depart("a", T0 + 200)
    log.arrive("a", "A", T0 + 400)     # gone 200 s: a second visit
    log.end(T0 + 500)
    row = log.take_dirty(T0 + 500)[0]
    assert row["present_s"] == 100 + 90 + 100 and row["reconnects"] == 2
    assert visits(row["spans"]) == [[T0, T0 + 200], [T0 + 400, T0 + 500]]


def test_rows_of_classrooms_still_here_grow_and_are_always_written():
    log = LessonLog("l" * 16, T0)
    log.arrive("a", "A", T0)
    assert log.take_dirty(T0 + 10)[0]["present_s"] == 10
    rows = log.take_dirty(T0 + 20)
    assert rows[0]["present_s"] == 20 and rows[0]["spans"] == [[T0, None]]
    log.depart("a", T0 + 25)
    assert log.take_dirty(T0 + 30)[0]["present_s"] == 25
    assert log.take_dirty(T0 + 40) == []


def s(session, packets, height=360, loss=0.01, rtt=50.0):
    return VideoSample(session, packets, height, loss, rtt, 500_000.0)


def test_time_at_each_resolution_frozen_no_video_and_restarts():
    q = QualityTrack(T0)
    q.add(T0, s("v1", 0), True)            # the baseline
    q.add(T0 + 2, s("v1", 100), True)      # 360p
    q.add(T0 + 4, s("v1", 250, 720), True)  # 720p
    q.add(T0 + 6, s("v1", 250, 720), True)  # nothing sent: frozen
    q.add(T0 + 8, None, True)              # no session
    q.add(T0 + 10, s("v2", 40, 180), True)  # a new session: a media reconnect, video again
    q.add(T0 + 12, s("v2", 40, 180), False)  # the teacher's camera is off: not the classroom's problem
    j = q.to_json()
    assert j["time_at_resolution"] == {"180p": 2.0, "360p": 2.0, "720p": 2.0}
    assert (j["frozen_s"], j["no_video_s"], j["teacher_idle_s"], j["media_restarts"]) == (2.0, 2.0, 2.0, 1)
    assert j["segments"] == [[0, 2, "360p"], [2, 4, "720p"], [4, 6, "frozen"], [6, 8, "none"], [8, 10, "180p"],
                             [10, 12, "idle"]]
    assert j["loss_avg"] == 0.01 and j["rtt_avg_ms"] == 50.0 and j["bitrate_avg"] == 500000


def test_no_receiver_report_yet_is_no_measurement():
    q = QualityTrack(T0)
    q.add(T0, s("v1", 0), True)
    q.add(T0 + 2, VideoSample("v1", 10, 360, None, None, None), True)
    assert (q.to_json()["loss_avg"], q.to_json()["rtt_avg_ms"], q.to_json()["bitrate_avg"]) == (None, None, None)
    q.add(T0 + 4, s("v1", 20, rtt=80.0), True)
    assert q.to_json()["rtt_avg_ms"] == 80.0 and q.to_json()["rtt_max_ms"] == 80.0


def test_absence_and_stalls_are_nobody_s_picture():
    q = QualityTrack(T0)
    q.add(T0, s("v1", 0), True)
    q.add(T0 + 2, s("v1", 10), True)
    q.pause(T0 + 3)                         # the classroom left a second later: as its last sample showed
    q.add(T0 + 60, s("v1", 20), True)       # back: a new baseline
    q.add(T0 + 62, s("v1", 30), True)
    q.add(T0 + 62 + MAX_GAP_S + 1, s("v1", 40), True)   # the node stalled: not credited
    assert q.to_json()["time_at_resolution"] == {"360p": 5.0}
    assert q.segments == [[0, 3, "360p"], [60, 62, "360p"]]
