"""Choosing one viewer's layer: a pure function of its bandwidth estimate, loss, the layers' bitrates and time.

Qualities are ordered (spatial, temporal) lexicographically, so stepping down halves the frame rate before
it lowers the resolution. The rules, in the spirit of Galene's short rule set:
- down at once to the best quality that fits in DOWN_FILL of the estimate, but only on a sign of congestion:
  the estimate fell under what we send, the layer plainly does not fit, or heavy loss beyond the link's own.
  (Chromium's REMB never exceeds 1.5x the rate it receives, so an estimate hovering near a well-received
  layer's rate is not congestion; trimming on it would leave uncapped viewers a step below what their link
  carries.)
- up after the next quality has fitted in UP_FILL of the estimate (SPATIAL_UP_FILL for a higher resolution,
  whose first frame is a keyframe) for `hold` seconds, straight to the best quality that fits (a viewer whose
  link came back should not climb nine steps one hold at a time);
- while the next step does not fit and the link is clean, probe: for PROBE_S pad the stream up to
  PROBE_GAIN times the estimate (at least the next step's rate), so the viewer's estimator sees more arrive
  than it believes the link carries. Chromium's REMB cannot rise above 1.5x what arrives, and near its last
  known capacity it climbs only additively (~20 kbit/s per s) until what arrives exceeds that capacity;
  then it resets and climbs 8 %/s — in practice REMB often stays flat well after a link recovers. So a probe
  that ends with the link clean (no reported loss, the estimate not cut) *proves* its rate: the viewer took
  it all without complaint, as a delivery-rate estimate (BBR's idea) says. The proven rate counts as usable
  until loss or a cut estimate disproves it, and the next probe starts from it, so a recovered link is found
  in a few probes. A probe that met loss or a cut estimate blocks probing for a back-off that doubles up to
  PROBE_BACKOFF_MAX.
  An upgrade followed by a downgrade within FAILED_UP_WINDOW doubles `hold`; a quiet period resets it.
- random loss is not congestion: a rural link may lose a few per cent of packets at any rate, with no queue
  behind it. The report's `loss_floor` is that link's own steady loss; a probe is judged by the loss and the
  NACKs *above* it (a queue that overflows adds loss as the rate rises), never by "any loss" (libwebrtc's GoogCC
  likewise leaves loss under 10 % to its delay-based controller).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Sequence

Quality = tuple[int, int]  # (spatial index, temporal id): higher is better

DOWN_FILL = 0.95
UP_FILL = 0.85
SPATIAL_UP_FILL = 0.75       # a higher resolution starts with a keyframe several frames big: more headroom
CONGESTED_BELOW_SENT = 0.9   # an estimate under this share of what we send means the link is full
PLAINLY_TOO_BIG = 1.15       # a layer this much above the estimate is moved off even without congestion
START_BPS = 2_000_000        # before the first estimate: optimistic (the first REMB corrects it within 1 s)
LOSS_HEAVY = 0.10            # receiver-reported loss above this cuts the usable rate
LOSS_CLEAN = 0.02            # probing only below this
MIN_FPS = 14.0               # above the lowest resolution, no frame rate slower than this (if the layer has one)
HOLD_MIN = 2.0
HOLD_MAX = 16.0
FAILED_UP_WINDOW = 4.0
BIG_STEP = 0.5              # a step down to less than this share of the rate is a big one ...
SHALLOW_DIP = 0.7           # ... and is not taken while the estimate is above this share, with no loss
NACKED_RECENTLY_S = 2.0
NACK_FLOOR_MARGIN = 2.0      # NACKs beyond this multiple of what the link's own loss explains are a queue's
FALLING_WINDOW_S = 2.0       # the estimate is falling when under FALLING_SHARE of its peak over this window
FALLING_SHARE = 0.95
PROBE_S = 1.0               # short: a probe into a full link must stop before the queue overflows
PROBE_RAMP_S = 0.5          # its padding rises over this much of it, and holds its aim for the rest: a probe
                            # into a full link is stopped by the first delay growth while its excess is still
                            # small (a step to the aim queued its whole excess until the feedback showed it,
                            # ~100 ms of a thin link's audio); it is judged by what arrived while held
PROBE_GAIN = 1.2             # a probe brings what arrives to this multiple of the estimate; after each
PROBE_GAIN_MAX = 2.0         # proven probe the step above 1 doubles (slow start), up to this
PROBE_OVERSHOOT = 1.1        # ... and to at least this multiple of the next step's rate
PROBE_CUT = 0.9              # the estimate fell under this share of its start: the probe hurt, stop
PROBE_GRACE_S = 0.5          # after the padding, feedback about it may still come: judge it only then
PROBE_NACKS = 2              # more packets than this NACKed during a probe: it overflowed a queue
PROBE_BACKOFF_MAX = 16.0     # on a thin link every failed probe is a queue the audio waits in: a link that keeps
                             # failing them is probed every 16 s at most
PROBE_MIN_STEP = 1.1         # a probe aims at least this much above the usable rate
NEAR_CAPACITY_PROBE = 1.1    # ... and no further than this above a known capacity: past it the excess queues up
                             # and delays the audio until the feedback shows it (a slow-start probe at twice a
                             # thin link's rate held the voice back ~100 ms); one held there that succeeds shows
                             # the capacity out of date, and frees the next probes from it
UNCHECKED_ROOM = 1.2         # a probe steps from at most this multiple of what arrived (unless a probe proved more)
PROBE_CEILING_S = 20.0       # a failed probe's rate caps the next probes (halfway to it) this long, or until
CEILING_RISE = 2.0           # the estimate passes it; each proven probe lifts that ceiling (the link may have
                             # grown since)
KEYFRAME_MARGIN = 0.5        # leaving a layer without temporal layers on congestion: aim this much lower, as the
                             # estimate still lags the link and the lower layer's keyframe must get through
REFLEX_SHARE = 0.15          # a NACK burst on a layer without temporal layers: down to what fits in this share
                             # (a small keyframe gets through the full link at once; probes climb back soon)


@dataclass
class AllocatorState:
    current: Optional[Quality] = None
    best: Optional[Quality] = None       # the best and the worst quality on offer at the last update
    worst: Optional[Quality] = None
    fits_since: Optional[float] = None   # since when the next step up has fitted
    hold: float = HOLD_MIN
    last_up: float = -1e9
    last_down: float = -1e9
    probe_started_at: float = 0.0
    probe_until: float = 0.0             # padding until then
    probe_judge_at: float = 0.0          # the probe's outcome is judged then (0: no probe under way)
    probe_start_nacks: int = 0
    probe_start_sent: int = 0
    probe_bps: int = 0
    probe_blocked_until: float = 0.0
    probe_backoff: float = HOLD_MIN
    probe_wins: int = 0                  # probes proven in a row
    nacks_seen: int = 0                  # the viewer's NACK count, and when it last grew beyond what the
    nacked_at: float = -1e9              # link's own loss explains
    sent_seen: int = 0
    ceiling_bps: float = 0.0             # the rate of the last probe that failed, and when
    ceiling_at: float = -1e9
    failed_bps: float = 0.0              # the rate of the last probe that failed (its ceiling rises; this does not)
    probe_capped: bool = False           # the probe under way was held at the link's known capacity
    capacity_passed_until: float = -1e9  # a probe held there succeeded: the capacity does not hold probes till then
    probe_start_estimate: float = 0.0
    probe_total_bps: float = 0.0         # what a probe brings the stream to
    proven_bps: float = 0.0              # a rate the viewer was seen to take cleanly
    proven_estimate: float = 0.0         # its estimate then: a cut below PROBE_CUT of it disproves the rate
    switches_up: int = 0
    switches_down: int = 0
    reason: str = "start"
    history: list[tuple[float, Quality, str]] = field(default_factory=list)
    recent_estimates: list[tuple[float, float]] = field(default_factory=list)


def qualities(rates: Sequence[Sequence[float]],
              frame_rates: Sequence[Sequence[float]] = ()) -> list[tuple[Quality, float]]:
    """Every (spatial, temporal) quality with a known bitrate, worst first. Above the lowest spatial layer a
    frame rate under MIN_FPS is left out (a teacher at 10 fps from a 20 fps camera looks jerky; the next lower
    resolution at full rate serves a classroom better), unless the layer has no faster rate; with the frame
    rates not measured yet, its base temporal layer alone (a quarter of the rate) is."""
    out = []
    for s, per_tid in enumerate(rates):
        fps = frame_rates[s] if s < len(frame_rates) else ()
        for t, bps in enumerate(per_tid):
            if bps <= 0 or s > 0 and _too_slow(t, per_tid, fps):
                continue
            out.append(((s, t), bps))
    return out


def _too_slow(tid: int, per_tid: Sequence[float], fps: Sequence[float]) -> bool:
    if len(fps) == len(per_tid) and fps[-1] > 0:
        return tid < len(per_tid) - 1 and fps[tid] < MIN_FPS
    return tid == 0 and len(per_tid) > 2


def usable_bps(estimate_bps: Optional[float], loss: float, sending_bps: float) -> float:
    """What the link is believed to carry: the viewer's estimate, cut back when it reports heavy loss beyond
    the link's own (loss-based control as in GCC: the delay-based REMB can lag a policer that simply drops; one
    half-second's loss on a 3 % link reads 10 % now and then, and that is no reason to move)."""
    usable = float(estimate_bps) if estimate_bps is not None else START_BPS
    if loss > LOSS_HEAVY and sending_bps > 0:
        usable = min(usable, sending_bps * (1 - 0.5 * loss))
    return usable


def congested(usable: float, loss: float, sending_bps: float, current_bps: float, falling: bool) -> bool:
    """Whether the link shows it cannot carry what we send now. Sending more than the estimate counts only
    while the estimate falls: a keyframe someone else asked for briefly lifts what every viewer of the layer
    is sent, and a viewer whose estimate keeps rising is not congested by it."""
    return (loss > LOSS_HEAVY or sending_bps <= 0 or current_bps > PLAINLY_TOO_BIG * usable
            or falling and usable < CONGESTED_BELOW_SENT * sending_bps)



def unexplained_nacks(loss_floor: float, sent: int) -> float:
    """NACKs above this many, over `sent` packets, are more than the link's own random loss explains (a margin
    for its randomness: 3 % of 100 packets is 3 on average, 7 now and then)."""
    return NACK_FLOOR_MARGIN * loss_floor * max(0, sent)


@dataclass(frozen=True)
class LinkReport:
    """What the allocator decides from, each tick. `rates[s][t]` is layer s's bitrate with temporal layers
    0..t; `sending_bps` what this viewer has been sent lately; `cap` the highest spatial index it accepts;
    `nacks` how many packets the viewer has NACKed so far (the quickest sign that a probe overflowed);
    `reflex` whether a burst of NACKs just showed an overflow (before any estimate can); `forwarding_single`
    whether the viewer is still sent a layer without temporal layers (a switch away from it waits for the
    lower layer's keyframe): a reflex then re-aims the switch as if that layer were current, since nothing can
    be thinned meanwhile; `unrepaired` whether a loss just proved beyond repair (resent until the limit, lost
    again): the viewer needs a keyframe, and on a full link the next lower resolution's is the one that gets
    through. `loss_floor` is the link's own steady random loss (0..1), `sent_packets` how many packets the
    viewer has been sent so far: together they say how many NACKs plain random loss explains."""
    estimate_bps: Optional[float]
    loss: float
    sending_bps: float
    rates: Sequence[Sequence[float]]
    cap: Optional[int] = None
    nacks: int = 0
    reflex: bool = False
    forwarding_single: bool = False
    unrepaired: bool = False
    loss_floor: float = 0.0
    sent_packets: int = 0
    frame_rates: Sequence[Sequence[float]] = ()   # [s][t]: pictures/s with temporal layers 0..t, where measured
    capacity_bps: Optional[float] = None          # what the link is known to carry for this stream (where a queue
                                                  # last built); None: not known
    arrived_bps: Optional[float] = None           # what the viewer's feedback says arrived of this stream lately
                                                  # (None: no transport feedback)

class Allocator:
    def __init__(self) -> None:
        self.state = AllocatorState()

    def update(self, now: float, link: "LinkReport") -> Optional[Quality]:
        """The quality to forward now, from what is known of the viewer's link (LinkReport)."""
        estimate_bps, loss, sending_bps, rates = link.estimate_bps, link.loss, link.sending_bps, link.rates
        cap, nacks, reflex = link.cap, link.nacks, link.reflex
        forwarding_single, unrepaired = link.forwarding_single, link.unrepaired
        st = self.state
        options = [(q, bps) for q, bps in qualities(rates, link.frame_rates) if cap is None or q[0] <= cap]
        if not options:
            st.current = st.best = st.worst = None
            return None
        st.best, st.worst = options[-1][0], options[0][0]
        excess = max(0.0, loss - link.loss_floor)   # loss the link's own random loss does not explain
        measured = usable_bps(estimate_bps, excess, sending_bps)
        falling = self._falling(now, measured)
        if nacks - st.nacks_seen > unexplained_nacks(link.loss_floor, link.sent_packets - st.sent_seen):
            st.nacked_at = now
        st.nacks_seen, st.sent_seen = nacks, link.sent_packets
        if st.proven_bps and (excess > LOSS_CLEAN or measured < st.proven_estimate * PROBE_CUT):
            st.proven_bps = 0.0
        just_proven = self._end_probe(now, measured, excess, link)
        usable = max(measured, st.proven_bps)
        cost = dict(options)
        single = st.current in cost and (len(rates[st.current[0]]) == 1 or forwarding_single)
        if reflex and single and sending_bps > 0:
            # no temporal layer to shed (the consumer thins those itself): shed resolution now
            usable = min(usable, REFLEX_SHARE * sending_bps)
            falling = True
        if st.current not in cost:  # first decision, or the layer went away: best that fits
            st.current = self._best_fitting(options, usable * DOWN_FILL) or options[0][0]
            st.fits_since = None
            st.reason = "start" if st.reason == "start" else "layers changed"
            self._log(now)
            return st.current
        if unrepaired and st.current[0] > 0:
            lower_spatial = [(q, bps) for q, bps in options if q[0] < st.current[0]]
            self._step_down(now, self._best_fitting(lower_spatial, usable * DOWN_FILL) or lower_spatial[0][0],
                            "down: a loss beyond repair")
            return st.current
        index = [q for q, _ in options].index(st.current)
        if cost[st.current] > usable * DOWN_FILL and congested(usable, excess, sending_bps, cost[st.current], falling):
            budget = usable * DOWN_FILL
            if single:  # nothing to thin while the lower layer's keyframe comes
                budget *= KEYFRAME_MARGIN
            lower = self._best_fitting(options[:index], budget) or options[0][0]
            if lower != st.current and self._big_step_unproven(now, cost[lower], cost[st.current], usable, excess,
                                                                reflex):
                lower = st.current  # hold: a dip of the delay-based estimate alone, no loss anywhere
            if lower != st.current:
                self._step_down(now, lower, f"down: {cost[lower]:.0f} fits {usable:.0f}")
                return st.current
            # already at the bottom: fall through, a probe may still lift the estimate
        if now - st.last_down > 3 * HOLD_MAX:
            st.hold = HOLD_MIN
        if index + 1 >= len(options):
            st.fits_since = None
            self._stop_probe()
            return st.current
        best_up = None
        for q, bps in options[index + 1:]:
            if bps <= usable * (UP_FILL if q[0] == st.current[0] else SPATIAL_UP_FILL):
                best_up = q
        if best_up is not None:
            self._stop_probe()
            st.fits_since = st.fits_since if st.fits_since is not None else now
            if just_proven:  # the probe held the link at this rate for PROBE_S: that was the hold
                st.fits_since = min(st.fits_since, now - st.hold)
            if now - st.fits_since >= st.hold and now - st.last_down >= st.hold:
                st.last_up = now
                st.switches_up += 1
                st.probe_backoff = HOLD_MIN
                self._move(now, best_up, f"up: {cost[best_up]:.0f} fits {usable:.0f}")
            return st.current
        st.fits_since = None
        nxt, nxt_bps = options[index + 1]
        fill = UP_FILL if nxt[0] == st.current[0] else SPATIAL_UP_FILL
        self._plan_probe(now, measured, usable, excess, link, nxt_bps / fill, cost[st.current], index == 0)
        return st.current

    def _step_down(self, now: float, lower: Quality, reason: str) -> None:
        st = self.state
        if st.probe_judge_at:
            self._probe_failed(now)
        self._stop_probe()
        st.proven_bps = 0.0
        if now - st.last_up < FAILED_UP_WINDOW:
            st.hold = min(HOLD_MAX, st.hold * 2)
        st.last_down = now
        st.switches_down += 1
        self._move(now, lower, reason)

    def _big_step_unproven(self, now: float, lower_bps: float, current_bps: float, usable: float, loss: float,
                           reflex: bool) -> bool:
        """A step down to less than BIG_STEP of the rate (a ladder rung below the original, say) on nothing
        but a shallow dip of the delay-based estimate: receivers on a busy machine report such dips when their
        own processing lags. It waits for loss, NACKs or a deeper cut."""
        if lower_bps >= BIG_STEP * current_bps or reflex or loss > 0 or now - self.state.nacked_at < NACKED_RECENTLY_S:
            return False
        return usable >= SHALLOW_DIP * current_bps

    def _falling(self, now: float, measured: float) -> bool:
        recent = self.state.recent_estimates
        recent.append((now, measured))
        while recent and recent[0][0] < now - FALLING_WINDOW_S:
            recent.pop(0)
        return measured < FALLING_SHARE * max(e for _, e in recent)

    def _move(self, now: float, quality: Quality, reason: str) -> None:
        st = self.state
        st.current = quality
        st.fits_since = None
        st.reason = reason
        self._log(now)

    def probe_rate(self, now: float) -> int:
        """Padding to send now (bit/s) so the viewer's estimate can grow to the next step: ramping up to the
        probe's aim over PROBE_RAMP_S, then held."""
        st = self.state
        if now >= st.probe_until:
            return 0
        return int(st.probe_bps * min(1.0, max(0.0, now - st.probe_started_at) / PROBE_RAMP_S))

    def probe_window(self, now: float) -> Optional[tuple[float, float, float]]:
        """The probe not yet judged: when its padding started, from when it held its aim, and when it ends
        (None: no probe). A queue is looked for from its start; what arrived is judged while it was held."""
        st = self.state
        if not st.probe_judge_at:
            return None
        return st.probe_started_at, st.probe_started_at + PROBE_RAMP_S, st.probe_until

    def probe_arrived(self, bps: float) -> None:
        """What the viewer's feedback says arrived of the probe (its stream and padding, bit/s): a probe proves
        no more than that, whatever it aimed at (the pacer may have sent less, the link carried less)."""
        if self.state.probe_judge_at:
            self.state.probe_total_bps = min(self.state.probe_total_bps, bps)

    def abort_probe(self, now: float) -> None:
        """The viewer's estimator judged the probe failed (a queue building, loss above the link's own, or less
        arriving than was sent): stop it, before a queue delays the audio, and count it failed (its rate caps
        the next probes, which back off)."""
        if self.state.probe_judge_at:
            self._probe_failed(now)
            self._stop_probe()

    def _stop_probe(self) -> None:
        self.state.probe_until = self.state.probe_judge_at = 0.0

    def _probe_hurt(self, measured: float, excess_loss: float, link: LinkReport) -> bool:
        st = self.state
        allowed = PROBE_NACKS + unexplained_nacks(link.loss_floor, link.sent_packets - st.probe_start_sent)
        return (excess_loss > LOSS_CLEAN or measured < st.probe_start_estimate * PROBE_CUT
                or link.nacks - st.probe_start_nacks > allowed)

    def _end_probe(self, now: float, measured: float, excess_loss: float, link: LinkReport) -> bool:
        """Judge a probe: one that hurt stops at once and backs off; one that left the link clean until its
        judgement proves its rate. True when a rate was just proven."""
        st = self.state
        if not st.probe_judge_at:
            return False
        if self._probe_hurt(measured, excess_loss, link):
            self._probe_failed(now)
            self._stop_probe()
            return False
        if now < st.probe_judge_at:
            return False
        self._stop_probe()
        if st.probe_capped:
            # the link took more than its known capacity: that capacity is out of date (a cap was lifted, or it
            # was measured on a start's burst), and probes held at it would only push the link to its limit
            # again and again; the next ones go by slow start until a failure or a new capacity says otherwise
            st.capacity_passed_until = now + PROBE_CEILING_S
        if st.probe_total_bps > st.failed_bps:
            # past the rate that last failed: the link grew. One under it only found the same limit again, and
            # the next probe past it would fail as the last did: the back-off stands
            st.probe_backoff = HOLD_MIN
        if not st.probe_capped:
            st.probe_wins += 1   # (one held near the capacity proved little: the next steps as gently)
        st.ceiling_bps = max(st.ceiling_bps, st.probe_total_bps) * CEILING_RISE
        if st.probe_total_bps <= st.proven_bps:
            return False
        st.proven_bps, st.proven_estimate = st.probe_total_bps, measured
        return True

    def _plan_probe(self, now: float, measured: float, usable: float, excess_loss: float, link: LinkReport,
                    needed_bps: float, current_bps: float, at_bottom: bool) -> None:
        """Probe toward `needed_bps` (the usable rate at which the next step fits), in slow-start steps,
        and never past halfway to the rate of a recent failed probe."""
        st = self.state
        if st.probe_judge_at:  # one under way (its harm was checked in _end_probe)
            return
        if excess_loss > LOSS_CLEAN or now < st.probe_blocked_until or now - st.last_down < st.hold:
            return
        gain = min(PROBE_GAIN_MAX, 1 + (PROBE_GAIN - 1) * 2 ** st.probe_wins)
        if current_bps > usable and not at_bottom:
            return  # sending more than the estimate already: that is probe enough
        base = max(usable, current_bps)  # an estimate starved under the lowest layer probes from what is sent
        if link.arrived_bps:
            # a delay-based estimate climbs unchecked while the stream sends less than it (to 1.5x what arrives),
            # and a step from there can overshoot a thin link by half (the voice waits in the queue it builds):
            # step from what was seen to arrive, or was proven by a probe, with a little room, or from the
            # link's known capacity (a probe stops just past it)
            known = link.capacity_bps if link.capacity_bps and now >= st.capacity_passed_until else 0.0
            base = min(base, max(current_bps, st.proven_bps, UNCHECKED_ROOM * link.arrived_bps, known))
        total = max(base * PROBE_MIN_STEP, min(needed_bps * PROBE_OVERSHOOT, base * gain))
        st.probe_capped = False
        if link.capacity_bps and now >= st.capacity_passed_until:
            # from what is sent, not from the estimate: while the stream sends less than it, the estimate may
            # climb past the capacity unchecked (to 1.5x what arrives), and that proves nothing
            capped = max(current_bps * PROBE_MIN_STEP, link.capacity_bps * NEAR_CAPACITY_PROBE)
            st.probe_capped = capped < total
            total = min(total, capped)
        if now - st.ceiling_at < PROBE_CEILING_S and base >= st.ceiling_bps:
            st.ceiling_at = -1e9  # the estimate has passed the failed probe's rate since: that failure is old news
        if now - st.ceiling_at < PROBE_CEILING_S and total >= st.ceiling_bps:
            total = (base + st.ceiling_bps) / 2
            if total < base * 1.03:
                return  # the link is as full as probing can tell
        st.probe_total_bps = total
        st.probe_bps = int(max(0.0, st.probe_total_bps - current_bps))
        st.probe_start_estimate = measured
        st.probe_start_nacks = link.nacks
        st.probe_start_sent = link.sent_packets
        st.probe_started_at = now
        st.probe_until = now + PROBE_S
        st.probe_judge_at = st.probe_until + PROBE_GRACE_S

    def _probe_failed(self, now: float) -> None:
        st = self.state
        if st.probe_judge_at:
            st.ceiling_bps, st.ceiling_at = st.probe_total_bps, now
            st.failed_bps = st.probe_total_bps
        st.probe_wins = 0
        st.probe_blocked_until = now + st.probe_backoff
        st.probe_backoff = min(PROBE_BACKOFF_MAX, st.probe_backoff * 2)

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
