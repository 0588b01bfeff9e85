"""Priority among one classroom's sessions: the secondary ones yield to the teacher's picture."""
from __future__ import annotations

from types import SimpleNamespace

from sfu.allocation import priority
from sfu.allocation.allocator import LinkReport
from sfu.room.feed import Slot
from tests.unit.sfu.forward.simulcast_rig import RATES, Rig, set_target


def test_a_classrooms_second_session_yields_to_the_teachers_picture():
    main, screen, other = Rig(keyframe_every=1000), Rig(keyframe_every=1000), Rig(keyframe_every=1000)
    set_target(screen, 2, 2)
    screen.run(4)
    sessions = [SimpleNamespace(owner="school-1", slot=Slot("camera"), consumers=[("video", main.consumer)]),
                SimpleNamespace(owner="school-1", slot=Slot("screen"), consumers=[("video", screen.consumer)]),
                SimpleNamespace(owner="school-2", slot=Slot("screen"), consumers=[]),
                SimpleNamespace(owner="school-1", slot=Slot("camera"), consumers=[("video", other.consumer)])]
    alloc = main.consumer.allocator
    alloc.update(0.0, LinkReport(5e6, 0.0, 0.0, RATES))
    priority.apply(sessions, 0.0)
    assert screen.consumer.yield_level == priority.YIELD_NONE      # the main picture is whole: no yielding
    alloc.update(0.5, LinkReport(500e3, 0.0, 1.5e6, RATES))                     # the link is short: the main is trimmed
    priority.apply(sessions, 0.5)
    assert screen.consumer.yield_level == priority.YIELD_LOWEST
    screen.tap.sent.clear()
    screen.run(8)
    out = screen.output()
    assert {v.ssrc for v, _ in out} == {5555} and {d.tid for _, d in out} == {0}
    assert screen.consumer.planner.source is screen.streams[0]       # the smallest layer, a quarter rate
    alloc.update(1.0, LinkReport(40e3, 0.0, 450e3, RATES))                       # the main at its smallest: pause
    priority.apply(sessions, 1.0)
    paused_from = screen.output()
    screen.tap.sent.clear()
    screen.run(8)
    assert screen.tap.sent == []
    assert other.consumer.yield_level == priority.YIELD_NONE        # a second page of the same classroom
    alloc.update(30.0, LinkReport(5e6, 0.0, 40e3, RATES))                        # recovered (after the hold)
    alloc.update(33.0, LinkReport(5e6, 0.0, 40e3, RATES))
    priority.apply(sessions, 33.0)
    assert screen.consumer.yield_level == priority.YIELD_NONE
    screen.run(6)
    after = screen.output()
    assert after and after[0][1].keyframe                          # back on a keyframe, numbering unbroken
    assert (after[0][0].seq - paused_from[-1][0].seq) & 0xFFFF == 1
