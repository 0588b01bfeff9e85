"""Choosing one viewer's layer: a pure function of its bandwidth estimate, loss, the layers' bitrates and time.

Qualities are ordered (spatial, temporal) lexicographically, so stepping down drops frame rate before
resolution. The rules, in the spirit of Galene's short rule set:
- down at once (on the estimate that shows it) to the best quality that fits in DOWN_FILL of the estimate;
- up one step only after the next quality has fitted in UP_FILL of the estimate for `hold` seconds;
- if the next step does not fit, probe (padding up to its rate) while the link is clean; an upgrade that is
  followed by a downgrade within FAILED_UP_WINDOW doubles `hold` (back-off), a quiet period resets it.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Sequence

Quality = tuple[int, int]  # (spatial index, temporal id): higher is better

DOWN_FILL = 0.95
UP_FILL = 0.85
START_BPS = 2_000_000        # before the first estimate: optimistic (the first REMB corrects it within 1 s)
LOSS_HEAVY = 0.10            # receiver-reported loss above this cuts the usable rate
LOSS_CLEAN = 0.02            # probing only below this
HOLD_MIN = 2.0
HOLD_MAX = 16.0
FAILED_UP_WINDOW = 4.0
PROBE_MAX_S = 3.0
PROBE_OVERSHOOT = 1.15


@dataclass
class AllocatorState:
    current: Optional[Quality] = None
    fits_since: Optional[float] = None   # since when the next step up has fitted
    hold: float = HOLD_MIN
    last_up: float = -1e9
    last_down: float = -1e9
    probe_until: float = 0.0
    probe_bps: int = 0
    switches_up: int = 0
    switches_down: int = 0
    reason: str = "start"
    history: list[tuple[float, Quality, str]] = field(default_factory=list)


def qualities(rates: Sequence[Sequence[float]]) -> list[tuple[Quality, float]]:
    """Every (spatial, temporal) quality with a known bitrate, worst first."""
    out = []
    for s, per_tid in enumerate(rates):
        for t, bps in enumerate(per_tid):
            if bps > 0:
                out.append(((s, t), bps))
    return out


def usable_bps(estimate_bps: Optional[float], loss: float, sending_bps: float) -> float:
    """What the link is believed to carry: the viewer's estimate, cut back when it reports heavy loss
    (loss-based control as in GCC: the delay-based REMB can lag a policer that simply drops)."""
    usable = float(estimate_bps) if estimate_bps is not None else START_BPS
    if loss > LOSS_HEAVY and sending_bps > 0:
        usable = min(usable, sending_bps * (1 - 0.5 * loss))
    return usable


class Allocator:
    def __init__(self) -> None:
        self.state = AllocatorState()

    def update(self, now: float, estimate_bps: Optional[float], loss: float, sending_bps: float,
               rates: Sequence[Sequence[float]], cap: Optional[int] = None) -> Optional[Quality]:
        """The quality to forward now. `rates[s][t]` is layer s's bitrate with temporal layers 0..t;
        `cap` is the highest spatial index the viewer accepts."""
        st = self.state
        options = [(q, bps) for q, bps in qualities(rates) if cap is None or q[0] <= cap]
        if not options:
            st.current = None
            return None
        usable = usable_bps(estimate_bps, loss, sending_bps)
        cost = dict(options)
        if st.current not in cost:  # first decision, or the layer went away: best that fits
            st.current = self._best_fitting(options, usable * DOWN_FILL) or options[0][0]
            st.fits_since = None
            st.reason = "start" if st.reason == "start" else "layers changed"
            self._log(now)
            return st.current
        index = [q for q, _ in options].index(st.current)
        if cost[st.current] > usable * DOWN_FILL:
            lower = self._best_fitting(options[:index], usable * DOWN_FILL) or options[0][0]
            if lower != st.current:
                if now - st.last_up < FAILED_UP_WINDOW:
                    st.hold = min(HOLD_MAX, st.hold * 2)
                st.last_down = now
                st.switches_down += 1
                self._move(now, lower, f"down: {cost[lower]:.0f} fits {usable:.0f}")
            return st.current
        if now - st.last_down > 3 * HOLD_MAX:
            st.hold = HOLD_MIN
        if index + 1 >= len(options):
            st.fits_since = None
            return st.current
        nxt, nxt_bps = options[index + 1]
        if nxt_bps <= usable * UP_FILL:
            st.fits_since = st.fits_since if st.fits_since is not None else now
            if now - st.fits_since >= st.hold and now - st.last_down >= st.hold:
                st.last_up = now
                st.switches_up += 1
                self._move(now, nxt, f"up: {nxt_bps:.0f} fits {usable:.0f}")
        else:
            st.fits_since = None
            self._plan_probe(now, loss, nxt_bps, cost[st.current])
        return st.current

    def _move(self, now: float, quality: Quality, reason: str) -> None:
        st = self.state
        st.current = quality
        st.fits_since = None
        st.probe_until = 0.0
        st.reason = reason
        self._log(now)

    def probe_rate(self, now: float) -> int:
        """Padding to send now (bit/s) so the viewer's estimate can grow to the next step."""
        return self.state.probe_bps if now < self.state.probe_until else 0

    def _plan_probe(self, now: float, loss: float, next_bps: float, current_bps: float) -> None:
        st = self.state
        if now < st.probe_until or loss > LOSS_CLEAN:
            if loss > LOSS_CLEAN:
                st.probe_until = 0.0
            return
        if now - st.last_down < st.hold or now - st.probe_until < st.hold:
            return
        st.probe_bps = int(max(0.0, next_bps * PROBE_OVERSHOOT - current_bps))
        st.probe_until = now + PROBE_MAX_S

    @staticmethod
    def _best_fitting(options: list[tuple[Quality, float]], budget: float) -> Optional[Quality]:
        best = None
        for q, bps in options:
            if bps <= budget:
                best = q
        return best

    def _log(self, now: float) -> None:
        self.state.history.append((now, self.state.current, self.state.reason))  # type: ignore[arg-type]
        del self.state.history[:-20]
