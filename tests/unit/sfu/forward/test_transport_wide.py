"""Transport-wide sequence numbers on everything a viewer is sent: forwarded media, repairs, probes."""
from __future__ import annotations

from sfu.forward.transport_wide import TransportWideSequencer
from sfu.rtp.rtp_header import RtpView
from tests.unit.sfu.forward.simulcast_rig import Rig, set_target

TWCC_ID, AST_ID = 5, 3


def extensions_of(data: bytes) -> dict[int, bytes]:
    view = RtpView(data)
    assert data[0] & 0x10 and data[12:14] == b"\xbe\xde"      # a one-byte extension block
    out, pos, end = {}, 16, view.payload_start
    while pos < end and data[pos]:
        xid, length = data[pos] >> 4, (data[pos] & 0x0F) + 1
        out[xid] = data[pos + 1:pos + 1 + length]
        pos += 1 + length
    return out


def test_every_packet_sent_carries_the_next_transport_sequence_number():
    sent: list[tuple[float, int, int, bool]] = []
    rig = Rig(keyframe_every=1000, transport=TransportWideSequencer(TWCC_ID, lambda *a: sent.append(a), 65530),
              abs_send_time_id=AST_ID)
    set_target(rig, 2, 2)
    rig.run(6)
    media = len(rig.tap.sent)
    rig.consumer.on_nack([RtpView(rig.tap.sent[-1]).seq], rig.now)        # a repair
    rig.consumer.allocator.state.probe_bps, rig.consumer.allocator.state.probe_until = 400_000, rig.now + 1
    rig.consumer.fast_tick(rig.now, 0.05)                                  # probes (RTX copies)
    assert len(rig.tap.sent) > media + 1
    seqs = [int.from_bytes(extensions_of(p)[TWCC_ID], "big") for p in rig.tap.sent]
    assert seqs == [(65530 + i) & 0xFFFF for i in range(len(seqs))]        # consecutive, wrapping, no gaps
    assert all(len(extensions_of(p)[AST_ID]) == 3 for p in rig.tap.sent)   # abs-send-time kept beside it
    assert [s for _, s, _, _ in sent] == seqs                              # the estimator heard of each one
    assert [size for _, _, size, _ in sent] == [len(p) for p in rig.tap.sent]
    assert [probe for *_, probe in sent].count(True) == len(rig.tap.sent) - media - 1
    assert RtpView(rig.tap.sent[0]).payload_size > 0 and rig.output()[0][1].keyframe   # payload intact


def test_a_viewer_not_yet_connected_uses_no_numbers():
    sent: list = []
    rig = Rig(keyframe_every=1000, transport=TransportWideSequencer(TWCC_ID, lambda *a: sent.append(a)))
    rig.tap.ready = False
    set_target(rig, 2, 2)
    rig.consumer.on_nack([1, 2, 3], 0.0)
    rig.run(3)
    assert sent == [] and rig.consumer.out.transport.next_seq == 1   # a number skipped would read as a loss
