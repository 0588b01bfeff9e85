"""A publisher's RED (RFC 2198) back to plain Opus at ingest: primaries unwrapped with their own header, lost
packets rebuilt once from later redundancy, malformed RED dropped by reason. Then the same through the real
ingest: what the recorder's sink gets, and what the publisher is told it lost."""
from __future__ import annotations

import random

from sfu.ingest.publisher import PayloadInfo, PublisherIngest
from sfu.ingest.red_unwrap import MAX_REDUNDANT, WINDOW, RedUnwrap, Unwrapped
from sfu.room.room import Room
from sfu.rtp.red import RedBlock, build_red
from sfu.rtp.rtp_header import RtpView, build_header, one_byte_extensions

OPUS, RED = 111, 63
SSRC = 4242
FRAME = 960            # 20 ms at 48 kHz
AUDIO_LEVEL = (1, b"\x85")


def frame(seq: int) -> bytes:
    return bytes([seq & 0xFF]) * (20 + seq % 7)


def ts(seq: int) -> int:
    return (1000 + seq * FRAME) & 0xFFFFFFFF


def red_packet(seq: int, distance: int = 2, marker: int = 0, pt: int = RED, ssrc: int = SSRC) -> bytes:
    """What Chromium sends for `seq`: its frame after those of the `distance` packets before it."""
    blocks = [RedBlock(OPUS, (ts(seq) - ts(seq - k)) & 0xFFFFFFFF, frame(seq - k)) for k in range(distance, 0, -1)]
    header = build_header(marker, pt, seq, ts(seq), ssrc, one_byte_extensions([AUDIO_LEVEL]))
    return bytes(header) + build_red(OPUS, frame(seq), blocks)


def push(u: RedUnwrap, data: bytes) -> list[Unwrapped]:
    return u.push(RtpView(data))


def seqs(out: list[Unwrapped]) -> list[int]:
    return [o.view.seq for o in out]


def check_plain(o: Unwrapped, seq: int) -> None:
    """A plain Opus packet for `seq`: its frame, its timestamp, the RED packet's SSRC and extensions."""
    v = o.view
    assert (v.payload_type, v.seq, v.timestamp, v.ssrc) == (OPUS, seq, ts(seq), SSRC)
    assert v.payload == frame(seq)
    assert v.extension(AUDIO_LEVEL[0]) == AUDIO_LEVEL[1]


def test_primary_unwrapped_with_zero_one_or_two_redundant_blocks():
    for distance in (0, 1, 2):
        u = RedUnwrap(RED, OPUS)
        for seq in range(10, 15):
            out = push(u, red_packet(seq, distance, marker=int(seq == 10)))
            assert len(out) == 1 and not out[0].recovered
            check_plain(out[0], seq)
            assert out[0].view.marker == int(seq == 10)
        assert (u.unwrapped, u.recovered, dict(u.dropped)) == (5, 0, {})


def test_one_lost_packet_is_recovered_before_the_next_one():
    u = RedUnwrap(RED, OPUS)
    for seq in range(10, 13):
        push(u, red_packet(seq, 1))
    out = push(u, red_packet(14, 1))                     # 13 lost on the way
    assert seqs(out) == [13, 14] and [o.recovered for o in out] == [True, False]
    check_plain(out[0], 13)
    check_plain(out[1], 14)
    assert out[0].view.marker == 0 and u.recovered == 1


def test_two_lost_packets_are_recovered_from_distance_two():
    u = RedUnwrap(RED, OPUS)
    for seq in range(10, 13):
        push(u, red_packet(seq))
    out = push(u, red_packet(15))                        # 13 and 14 lost
    assert seqs(out) == [13, 14, 15] and [o.recovered for o in out] == [True, True, False]
    for o in out:
        check_plain(o, o.view.seq)
    assert u.recovered == 2


def test_a_sequence_is_never_emitted_twice():
    u = RedUnwrap(RED, OPUS)
    for seq in range(10, 13):
        push(u, red_packet(seq))
    lost = red_packet(13)
    assert seqs(push(u, red_packet(14))) == [13, 14]     # recovered from 14's redundancy ...
    assert seqs(push(u, red_packet(15))) == [15]         # ... not again from 15's
    assert push(u, lost) == []                           # and the original, arriving late, is a duplicate
    assert push(u, red_packet(15)) == []                 # as is a packet the network doubled
    assert u.dropped["duplicate"] == 2 and u.recovered == 1


def test_a_late_packet_not_yet_recovered_still_passes():
    u = RedUnwrap(RED, OPUS)
    for seq in (10, 11, 12):
        push(u, red_packet(seq, 0))
    assert seqs(push(u, red_packet(14, 0))) == [14]      # no redundancy: 13 stays missing
    assert seqs(push(u, red_packet(13, 0))) == [13]      # reordered, not lost


def test_nothing_is_recovered_from_before_the_stream_began_or_after_a_restart():
    u = RedUnwrap(RED, OPUS)
    assert seqs(push(u, red_packet(100))) == [100]       # 98 and 99 were before us
    for seq in range(101, 110):
        push(u, red_packet(seq))
    assert seqs(push(u, red_packet(5000))) == [5000]     # a jump: not 2 recoveries ...
    assert seqs(push(u, red_packet(111))) == [110, 111]  # ... and a stray until the next packet confirms it
    assert seqs(push(u, red_packet(5002))) == [5002]
    assert seqs(push(u, red_packet(5003))) == [5003]     # the restart confirmed
    assert seqs(push(u, red_packet(5005))) == [5004, 5005]
    assert u.recovered == 2


def test_nothing_older_than_the_window_is_recovered():
    for newest, recovered in ((WINDOW + 98, [99, 100, 101]), (WINDOW + 100, [101])):
        u = RedUnwrap(RED, OPUS)
        for seq in range(95, newest + 1):
            if seq not in (99, 100, 101):
                push(u, red_packet(seq, 0))
        assert seqs(push(u, red_packet(101))) == recovered   # late, carrying 99 and 100


def test_stray_ssrcs_do_not_push_the_live_stream_out():
    u = RedUnwrap(RED, OPUS)
    for seq in (10, 11):
        push(u, red_packet(seq))
        for stray in range(3):
            push(u, red_packet(seq, ssrc=9000 + 10 * seq + stray))
    assert seqs(push(u, red_packet(14))) == [12, 13, 14]
    assert push(u, red_packet(13)) == []


def test_a_block_whose_timestamp_does_not_fit_is_not_used():
    u = RedUnwrap(RED, OPUS)
    for seq in range(10, 13):
        push(u, red_packet(seq))
    # 14's nearest block claims 12's timestamp (the sender left a block out): 13 cannot be told from it
    header = bytes(build_header(0, RED, 14, ts(14), SSRC))
    skewed = header + build_red(OPUS, frame(14), [RedBlock(OPUS, 2 * FRAME, frame(12))])
    assert seqs(push(u, skewed)) == [14]
    assert u.recovered == 0 and u.dropped["unaligned_block"] == 1


def test_plain_opus_passes_and_is_deduped_once_the_stream_sends_red():
    u = RedUnwrap(RED, OPUS)
    plain = bytes(build_header(0, OPUS, 7, ts(7), SSRC)) + frame(7)
    assert seqs(push(u, plain)) == [7] and seqs(push(u, plain)) == [7]   # not a RED stream: untouched
    push(u, red_packet(8, 0))
    assert push(u, bytes(build_header(0, OPUS, 8, ts(8), SSRC)) + frame(8)) == []


def test_malformed_red_is_dropped_by_reason():
    u = RedUnwrap(RED, OPUS)
    header = bytes(build_header(0, RED, 1, ts(1), SSRC))
    block = (0x80 | OPUS).to_bytes(1, "big")
    cases = {
        "malformed": [header + block + b"\x00",                                  # redundant header truncated
                      header + block + (960 << 10 | 500).to_bytes(3, "big") + bytes([OPUS]) + b"x" * 10],
        "too_many_blocks": [header + build_red(OPUS, b"p", [RedBlock(OPUS, 960 * (k + 1), b"r")
                                                            for k in range(MAX_REDUNDANT + 1, 0, -1)])],
        "not_opus": [header + build_red(OPUS, b"p", [RedBlock(0, 960, b"r")]), header + build_red(9, b"p", [])],
    }
    for reason, packets in cases.items():
        for data in packets:
            assert push(u, data) == [], reason
        assert u.dropped[reason] == len(packets)
    assert u.unwrapped == 0


def test_mutated_red_gives_clean_drops_or_plain_opus_never_an_exception():
    rng = random.Random(2198)
    u = RedUnwrap(RED, OPUS)
    emitted: set[int] = set()
    for i in range(5000):
        if i % 200 == 0:   # the sequence numbers start again, far behind: a restart
            emitted.clear()
        data = bytearray(red_packet(i % 200 + 10, rng.randrange(MAX_REDUNDANT + 2)))
        for _ in range(rng.randrange(1, 6)):
            at = rng.randrange(12, len(data))   # the payload and header extension (RTP itself is parsed before)
            data[at] = rng.randrange(256)
        if rng.random() < 0.3:
            data = data[:rng.randrange(12, len(data) + 1)]
        try:
            view = RtpView(bytes(data))
        except ValueError:
            continue
        for o in u.push(view):
            assert o.view.payload_type == OPUS and o.view.ssrc == SSRC and o.view.seq not in emitted
            emitted.add(o.view.seq)
            if not o.recovered:
                assert o.view.seq == view.seq and o.view.timestamp == view.timestamp
    assert u.dropped["malformed"] > 100 and u.unwrapped > 100


def test_each_sequence_is_emitted_at_most_once_under_loss_duplication_and_reordering():
    rng = random.Random(5)
    u = RedUnwrap(RED, OPUS)
    sent = [red_packet(seq) for seq in range(1000, 3000)]
    arriving = [p for p in sent if rng.random() > 0.1]
    for i in range(0, len(arriving) - 3, 7):                      # some reordering ...
        arriving[i], arriving[i + 2] = arriving[i + 2], arriving[i]
    for i in sorted(rng.sample(range(len(arriving) - 60), 100), reverse=True):
        arriving.insert(i + rng.randrange(1, 60), arriving[i])    # ... and duplicates, up to a second late
    out = [o for p in arriving for o in push(u, p)]
    got = seqs(out)
    assert len(got) == len(set(got))
    for o in out:
        check_plain(o, o.view.seq)
    assert len(got) > 0.98 * len(sent) and u.recovered > 150    # a loss next to a reordering is out of reach


# --- through the real ingest -------------------------------------------------------------------------------------

class Recorded:
    """A recorder's place on the track: the packets it would write."""

    def __init__(self) -> None:
        self.views: list[RtpView] = []

    def on_rtp(self, pkt, source, now: float) -> None:
        self.views.append(pkt.view)


def test_the_ingest_hands_on_plain_opus_and_tells_the_publisher_its_real_loss():
    room = Room("unit")
    ing = PublisherIngest(room.main, {OPUS: PayloadInfo("audio", "opus", 48000, None)}, rtcp_ssrc=1,
                          red_pts={RED: OPUS})
    recorded = Recorded()
    room.tracks["audio"].add_sink(recorded, 0.0)
    for seq in range(10, 40):
        if seq not in (20, 30, 31):                      # lost on the publisher's uplink
            ing.on_rtp(red_packet(seq), seq * 0.02)
    assert [v.seq for v in recorded.views] == list(range(10, 40))
    assert all(v.payload_type == OPUS and v.payload == frame(v.seq) for v in recorded.views)
    stream = room.tracks["audio"].source
    assert (stream.codec, stream.payload_type) == ("opus", OPUS)
    assert stream.stats.lost == 3                        # the receiver report says what the network lost
    dump = ing.dump()
    assert dump["red"] == [{"red_pt": RED, "opus_pt": OPUS, "unwrapped": 27, "recovered": 3, "dropped": {}}]
    assert ing.unknown == 0 and ing.malformed == 0

