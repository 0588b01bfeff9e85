"""The stream munger's pieces: renumbering around dropped packets."""
from __future__ import annotations

from sfu.forward.munger import DropCounter


def test_drop_counter_renumbers_late_values():
    c = DropCounter(16)
    for v in (10, 11):
        c.see(v)
    assert c.drop(12)
    c.see(13)
    assert c.before(13) == 1 and c.before(11) == 0
    assert not c.drop(12)                          # already past it: a hole to fill
    assert c.drop(65535 + 20 & 0xFFFF) is True     # far ahead (wraps): absorbed
