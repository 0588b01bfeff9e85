"""A link's own steady loss: the random loss of a lossy radio or copper link, which lowering the rate would not
cure. A slow average of loss intervals seen while no queue was building and the loss was not heavy (the caller
says which intervals qualify); a plain mean until TIME_CONSTANT_S of history, an exponential average after."""
from __future__ import annotations

TIME_CONSTANT_S = 10.0
HEAVY = 0.10     # intervals lossier than this say congestion, never the link's own level


class LossLevel:
    __slots__ = ("level", "_seconds")

    def __init__(self) -> None:
        self.level = 0.0
        self._seconds = 0.0   # how much history the average holds so far

    def learn(self, elapsed: float, loss: float) -> None:
        """One interval of `elapsed` seconds that lost the share `loss` with no queue building."""
        if loss > HEAVY or elapsed <= 0:
            return
        self._seconds = min(self._seconds + elapsed, TIME_CONSTANT_S)
        self.level += (loss - self.level) * min(1.0, elapsed / self._seconds)
