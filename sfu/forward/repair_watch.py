"""Retransmissions watched until the viewer's transport feedback reports them: one reported lost is resent at
once, instead of when the viewer asks again. Chromium re-sends a NACK only after its retry interval (100-400 ms
seen), so a retransmission lost on a link that drops 3 % of packets at random froze the picture for that long,
about once a minute at 1 Mbit/s. The feedback that names the loss comes within ~50 ms.

Pure bookkeeping: what was resent under which transport-wide number, and which of those a feedback reports lost.
"""
from __future__ import annotations

from typing import Generic, NamedTuple, TypeVar

from sfu.rtp.transport_feedback import TransportFeedback

C = TypeVar("C")
WATCHED_MAX = 512   # retransmissions awaiting their feedback (a viewer that sends none must not grow this)


class Resent(NamedTuple, Generic[C]):
    """A retransmission: whose (the consumer), and the sequence number it repairs on that consumer's stream."""
    owner: C
    out_seq: int


class RepairWatch(Generic[C]):
    def __init__(self, capacity: int = WATCHED_MAX) -> None:
        self.capacity = capacity
        self._by_seq: dict[int, Resent[C]] = {}
        self.lost = 0

    def __len__(self) -> int:
        return len(self._by_seq)

    def sent(self, transport_seq: int, resent: Resent[C]) -> None:
        watched = self._by_seq
        watched[transport_seq & 0xFFFF] = resent
        if len(watched) > self.capacity:
            del watched[next(iter(watched))]   # the oldest: its feedback is long overdue

    def on_feedback(self, feedback: TransportFeedback) -> list[Resent[C]]:
        """The watched retransmissions this feedback reports lost (each once; the received ones are forgotten)."""
        watched = self._by_seq
        if not watched:
            return []
        lost = []
        base = feedback.base_seq
        for offset, arrival in enumerate(feedback.arrivals):
            resent = watched.pop((base + offset) & 0xFFFF, None)
            if resent is not None and arrival is None:
                lost.append(resent)
        self.lost += len(lost)
        return lost
