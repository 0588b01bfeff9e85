"""Coalescing keyframe requests (PLI) toward a publisher: at most one per `min_interval`.

A request while one is outstanding is served by the keyframe already coming; a request arriving just after
a keyframe is deferred to the end of the interval instead of being lost.
"""
from __future__ import annotations


class KeyframeRequester:
    def __init__(self, min_interval: float = 0.5, give_up_after: float = 1.0) -> None:
        self.min_interval = min_interval
        self.give_up_after = give_up_after
        self.last_sent: float | None = None
        self.outstanding = False
        self.deferred = False
        self.sent_count = 0

    def request(self, now: float) -> bool:
        """A consumer needs a keyframe; True means send a PLI now."""
        if self.outstanding and self.last_sent is not None and now - self.last_sent < self.give_up_after:
            return False
        if self.last_sent is None or now - self.last_sent >= self.min_interval:
            return self._send(now)
        self.deferred = True
        return False

    def on_keyframe(self, now: float) -> None:
        self.outstanding = False

    def poll(self, now: float) -> bool:
        """Call periodically; True means a deferred request is due now."""
        if self.deferred and self.last_sent is not None and now - self.last_sent >= self.min_interval:
            return self._send(now)
        if self.outstanding and self.last_sent is not None and now - self.last_sent >= self.give_up_after:
            return self._send(now)  # the PLI or its keyframe was lost: ask again
        return False

    def _send(self, now: float) -> bool:
        self.last_sent = now
        self.outstanding = True
        self.deferred = False
        self.sent_count += 1
        return True
