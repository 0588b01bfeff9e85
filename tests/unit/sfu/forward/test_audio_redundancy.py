"""Redundant audio per viewer: off on a clean link, one or two earlier frames per packet as loss grows."""
from __future__ import annotations

from sfu.forward.audio_redundancy import AudioRedundancy
from sfu.rtp.red import RedBlock, parse_red

OPUS, RED = 111, 63


def frames(r: AudioRedundancy, start: int, count: int) -> list:
    return [r.wrap(OPUS, (start + i * 960) & 0xFFFFFFFF, bytes([i]) * 50) for i in range(count)]


def test_plain_opus_on_a_clean_link_then_redundancy_as_loss_shows():
    r = AudioRedundancy(RED)
    r.set_loss(0.001)
    assert frames(r, 0, 3) == [None, None, None]                 # clean: plain Opus
    r.set_loss(0.015)
    assert r.distance == 1
    out = parse_red(frames(r, 3 * 960, 1)[0])                    # the frame before comes along at once
    assert out == [RedBlock(OPUS, 960, bytes([2]) * 50), RedBlock(OPUS, 0, bytes([0]) * 50)]
    r.set_loss(0.05)
    assert r.distance == 2 and len(parse_red(frames(r, 4 * 960, 1)[0])) == 3


def test_the_choice_holds_steady_around_its_thresholds():
    r = AudioRedundancy(RED)
    seen = []
    for loss in (0.004, 0.002, 0.0015, 0.025, 0.015, 0.018, 0.01, 0.0005):
        r.set_loss(loss)
        seen.append(r.distance)
    assert seen == [1, 1, 1, 2, 2, 2, 1, 0]


def test_copies_only_where_the_link_affords_them():
    voice = 32_000
    thin = AudioRedundancy(RED)
    thin.set_loss(0.05, voice, 150_000)            # one copy is 21 % of a 150 kbit/s link: taken
    assert thin.distance == 1
    thin.set_loss(0.05, 2 * voice, 150_000)        # (measured with its copy) a second would take 43 %: not
    assert thin.distance == 1
    thin.set_loss(0.05, 2 * voice, 300_000)        # a second on 300 kbit/s: 21 %, the picture's frame rate: not
    assert thin.distance == 1
    thin.set_loss(0.05, 2 * voice, 1_000_000)      # on 1 Mbit/s both are
    assert thin.distance == 2
    music = AudioRedundancy(RED)
    music.set_loss(0.05, 180_000, 500_000)         # a copy of a 180 kbit/s stream would starve the picture
    assert music.distance == 0 and frames(music, 0, 1) == [None]
    music.set_loss(0.05, 180_000, 4_000_000)       # 9 % for both copies on 4 Mbit/s
    assert music.distance == 2


def test_no_redundancy_across_a_restart_or_a_timestamp_jump():
    r = AudioRedundancy(RED)
    r.set_loss(0.05)
    frames(r, 0, 2)
    r.restart()
    assert len(parse_red(frames(r, 5000, 1)[0])) == 1             # only its own frame
    assert len(parse_red(frames(r, 5000 + 40000, 1)[0])) == 1     # too far back for a 14-bit offset
    wrapped = frames(r, 0xFFFFFFFF - 959, 2)                      # across the timestamp wrap
    assert parse_red(wrapped[1])[0].timestamp_offset == 960
