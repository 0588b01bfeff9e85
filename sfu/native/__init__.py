"""The forwarding kernel's native half (forward.c), when it was built and is not switched off.

`LIVECLASS_NATIVE=0` switches it off: the SFU then sends packet by packet from Python (sfu/native/reference.py
does what forward.c does, step by step, for the tests to compare)."""
from __future__ import annotations

import os
from types import ModuleType
from typing import Optional


def native_forward() -> Optional[ModuleType]:
    """The compiled module, or None (not built, or switched off)."""
    if os.environ.get("LIVECLASS_NATIVE", "1") == "0":
        return None
    try:
        from sfu.native import _forward  # type: ignore[attr-defined]
    except ImportError:
        return None
    return _forward
