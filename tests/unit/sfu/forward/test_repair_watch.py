"""A retransmission that the viewer's transport feedback reports lost is resent at once, not when the viewer's
next NACK comes (Chromium's retry interval: a 100-400 ms freeze on a link losing 3 % at random)."""
from __future__ import annotations

from sfu.forward.repair_watch import RepairWatch, Resent
from sfu.forward.transport_wide import SEQ_OFFSET, TransportWideSequencer
from sfu.rtp.transport_feedback import TransportFeedback
from tests.unit.sfu.forward.simulcast_rig import Rig, set_target


def feedback(base: int, arrived: list[bool]) -> TransportFeedback:
    return TransportFeedback(1, 2, base & 0xFFFF, 0, 0, [0.001 * i if a else None for i, a in enumerate(arrived)])


def test_the_watch_names_each_lost_retransmission_once_and_forgets_the_ones_that_arrived():
    w: RepairWatch[str] = RepairWatch()
    w.sent(10, Resent("a", 100))
    w.sent(12, Resent("b", 200))
    w.sent(65535, Resent("c", 300))                            # around the 16-bit wrap
    assert w.on_feedback(feedback(9, [True, True, True, False])) == [Resent("b", 200)]   # 10 arrived, 12 lost
    assert len(w) == 1 and w.on_feedback(feedback(9, [False] * 4)) == []                 # each named once
    assert w.on_feedback(feedback(65534, [True, False, True])) == [Resent("c", 300)]
    assert len(w) == 0 and w.lost == 2


def test_a_viewer_that_sends_no_feedback_does_not_grow_the_watch():
    w: RepairWatch[int] = RepairWatch(capacity=8)
    for seq in range(100):
        w.sent(seq, Resent(seq, seq))
    assert len(w) == 8
    assert [r.owner for r in w.on_feedback(feedback(90, [False] * 10))] == list(range(92, 100))


def test_a_retransmission_reported_lost_is_resent_at_once_within_the_per_packet_limit():
    noted: list[int] = []
    rig = Rig(keyframe_every=1000, transport=TransportWideSequencer(3, lambda now, seq, size, probe: noted.append(seq)))
    set_target(rig, 2, 2)
    rig.run(31)
    out = rig.consumer.out
    seq = [v.seq for v, _ in rig.output() if v.ssrc == 5555][-3]
    rig.tap.sent.clear()
    rig.consumer.on_nack([seq], rig.now)                      # the viewer asks once ...
    assert len(rig.tap.sent) == 1
    rtx_tw = int.from_bytes(rig.tap.sent[0][SEQ_OFFSET:SEQ_OFFSET + 2], "big")
    nacks = rig.consumer.nacks
    # ... its feedback says that retransmission was lost too: resent now, without another NACK
    for lost in out.repairs.on_feedback(feedback(rtx_tw, [False])):
        lost.owner.on_repair_lost(lost.out_seq, rig.now + 0.05)
    assert len(rig.tap.sent) == 2 and rig.tap.sent[1][-20:] == rig.tap.sent[0][-20:]   # the same packet again
    assert rig.consumer.repairs_lost == 1 and rig.consumer.nacks == nacks   # not taken for a NACK (congestion)
    # lost every time: resent no more than the limiter allows any packet (3), then left to the viewer
    for i in range(3):
        tw = int.from_bytes(rig.tap.sent[-1][SEQ_OFFSET:SEQ_OFFSET + 2], "big")
        for lost in out.repairs.on_feedback(feedback(tw, [False])):
            lost.owner.on_repair_lost(lost.out_seq, rig.now + 0.1 * (i + 2))
    assert len(rig.tap.sent) == 3 and rig.consumer.rtx_packets == 3
    # one that arrived is not resent
    rig.tap.sent.clear()
    rig.consumer.on_nack([seq - 5], rig.now + 1)
    tw = int.from_bytes(rig.tap.sent[-1][SEQ_OFFSET:SEQ_OFFSET + 2], "big")
    assert out.repairs.on_feedback(feedback(tw, [True])) == [] and len(rig.tap.sent) == 1
