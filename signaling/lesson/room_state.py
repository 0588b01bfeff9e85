"""One room's lesson: who is here, hands, who is on stage, who is muted, chat, live or not.

Pure and synchronous: time comes in as an argument, nothing is sent. Every transition returns the events to
deliver (each with its audience) and the errors for the sender; a transport (room_hub + room_ws today, Redis
pub/sub later) delivers them. The media plane follows the lesson through `on_change` and the query methods.
"""
from __future__ import annotations

import logging
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Literal, Optional, Union

from signaling.lesson.room_protocol import MAX_ID_CHARS, ClientMessage, Close, Code, ProtocolError, check_rights, error
from signaling.auth.tokens import Grant

log = logging.getLogger(__name__)

CONSOLE_ROLES = frozenset({"teacher", "admin"})  # run the lesson; see every classroom
SFU_LINK_HOLD = 10.0  # s an SFU-measured link quality wins over what the client reports
MAX_NAME_CHARS = 64


@dataclass(frozen=True)
class Limits:
    max_participants: int = 300
    chat_history: int = 200
    resume_grace: float = 30.0  # s a dropped participant keeps its place, hand and stage


@dataclass
class Link:
    quality: str = "unknown"  # good | fair | poor | unknown
    loss: Optional[float] = None      # fraction 0..1
    rtt: Optional[float] = None       # ms
    bitrate: Optional[float] = None   # bit/s
    jitter: Optional[float] = None    # ms
    source: str = "none"              # client | sfu | none
    at: float = 0.0

    def public(self) -> dict[str, Any]:
        return {"quality": self.quality, "loss": self.loss, "rtt": self.rtt, "bitrate": self.bitrate,
                "jitter": self.jitter, "source": self.source}


def link_quality(loss: Optional[float], rtt: Optional[float]) -> str:
    """Three named classes, as a teacher reads them: poor = stalls likely, fair = degraded, good."""
    if loss is None and rtt is None:
        return "unknown"
    loss, rtt = loss or 0.0, rtt or 0.0
    if loss >= 0.10 or rtt >= 1000:
        return "poor"
    if loss >= 0.02 or rtt >= 300:
        return "fair"
    return "good"


@dataclass
class Participant:
    grant: Grant
    since: float                      # joined, resumed or dropped at
    connected: bool = True
    publishing: set[str] = field(default_factory=set)
    link: Link = field(default_factory=Link)

    @property
    def identity(self) -> str:
        return self.grant.identity

    @property
    def role(self) -> str:
        return self.grant.role

    def public(self) -> dict[str, Any]:
        return {"identity": self.identity, "name": self.grant.name[:MAX_NAME_CHARS], "role": self.role,
                "connected": self.connected, "publishing": sorted(self.publishing), "link": self.link.public()}


@dataclass(frozen=True)
class Event:
    """A message for the room. Audience: everyone connected, narrowed by `to` (identities) and `roles`."""
    payload: dict[str, Any]
    to: Optional[frozenset[str]] = None
    roles: Optional[frozenset[str]] = None
    exclude: Optional[str] = None

    def reaches(self, identity: str, role: str) -> bool:
        return (identity != self.exclude and (self.to is None or identity in self.to)
                and (self.roles is None or role in self.roles))


@dataclass(frozen=True)
class Disconnect:
    """Close this identity's connection with `code`, after sending it `error` if any."""
    identity: str
    code: int
    error: Optional[dict[str, Any]]


ChangeKind = Literal["live", "stage", "muted", "publishing", "joined", "connected", "left", "removed",
                     "link", "recording", "closed"]


@dataclass(frozen=True)
class Change:
    """A notification for the media plane, after the transition is complete (read the state freely).
    value: live/muted/connected/recording -> bool; stage -> identity or None; publishing -> frozenset of
    sources; left -> reason ("leave" | "timeout"); link -> Link; others None."""
    kind: ChangeKind
    identity: Optional[str] = None
    value: Any = None


Outcome = tuple[list[Union[Event, Disconnect]], list[ProtocolError]]
Audience = Literal["everyone", "console", "none"]


class LessonState:
    def __init__(self, room: str, limits: Limits = Limits()) -> None:
        self.room = room
        self.limits = limits
        self.live = False
        self.live_since: Optional[float] = None  # when the running lesson started (epoch s)
        self.on_stage: Optional[str] = None
        self.muted: set[str] = set()          # terminals whose microphone is closed (all, until called)
        self.hands: list[str] = []            # raised hands, first raised first
        self.participants: dict[str, Participant] = {}
        self.removed: set[str] = set()        # identities the teacher removed: they may not rejoin
        self.recording = False
        self.chat: deque[dict[str, Any]] = deque(maxlen=limits.chat_history)
        self.seq = 0                          # numbers every room event, for ordering across nodes
        self.chat_seq = 0                     # ids chat messages; kept across a takeover (room_snapshot)
        self._listeners: list[Callable[[Change], None]] = []
        self._events: list[Union[Event, Disconnect]] = []
        self._errors: list[ProtocolError] = []
        self._changes: list[Change] = []

    # ---- observers (the media plane) -------------------------------------------------------------------

    def on_change(self, callback: Callable[[Change], None]) -> Callable[[], None]:
        """Call `callback(change)` after every transition that changes something; returns an unsubscribe."""
        self._listeners.append(callback)
        return lambda: self._listeners.remove(callback) if callback in self._listeners else None

    def audience(self, identity: str, kind: Literal["audio", "video"]) -> Audience:
        """Who should get this participant's audio or video now: teachers and admins reach everyone; a
        terminal reaches everyone on stage, else only the console (its return video, its audio if unmuted),
        and nobody outside a live lesson or while muted (audio)."""
        p = self.participants.get(identity)
        if p is None:
            return "none"
        if p.role in CONSOLE_ROLES:
            return "everyone"
        if p.role != "terminal" or not self.live or (kind == "audio" and identity in self.muted):
            return "none"
        return "everyone" if identity == self.on_stage else "console"

    def publish_refusal(self, grant: Grant, sources: Iterable[str]) -> Optional[ProtocolError]:
        """Why `grant` may not publish `sources` in this lesson now (None: it may). For WHIP as well as `publish`:
        the grant must name each source, a removed identity may not, and classrooms only during the lesson."""
        refused = [s for s in sources if not grant.may_publish(s)]
        if refused:
            return ProtocolError(Code.FORBIDDEN, f"this {grant.role} token may not publish {', '.join(refused)}")
        if grant.identity in self.removed:
            return ProtocolError(Code.REMOVED, "you were removed from this lesson")
        if not self.live and grant.role not in CONSOLE_ROLES:
            return ProtocolError(Code.NOT_LIVE, "classrooms publish only during the lesson")
        return None

    # ---- transitions -------------------------------------------------------------------------------------

    def join(self, grant: Grant, now: float) -> Outcome:
        """A connection with `grant` arrives. The same identity within the grace period resumes its place."""
        self._begin()
        p = self.participants.get(grant.identity)
        if grant.identity in self.removed:
            self._errors.append(ProtocolError(Code.REMOVED, "you were removed from this lesson"))
        elif p is not None and p.role != grant.role:
            self._drop(p.identity, "replaced")  # same name, other role: a new participant, nothing kept
            return self._join_new(grant, now)
        elif p is not None:
            p.grant, p.connected, p.since = grant, True, now
            self._to(grant.identity, self.welcome(grant.identity, resumed=True))
            self._emit({"type": "participant", "participant": p.public()}, exclude=grant.identity)
            self._changed("connected", p.identity, True)
        elif len(self.participants) >= self.limits.max_participants:
            self._errors.append(ProtocolError(Code.ROOM_FULL, f"the room is full ({self.limits.max_participants})"))
        else:
            return self._join_new(grant, now)
        return self._end()

    def _join_new(self, grant: Grant, now: float) -> Outcome:
        p = self.participants[grant.identity] = Participant(grant, since=now)
        if p.role == "terminal":
            self.muted.add(p.identity)  # a classroom's microphone stays closed until the teacher calls it
        self._to(p.identity, self.welcome(p.identity, resumed=False))
        self._emit({"type": "joined", "participant": p.public()}, exclude=p.identity)
        self._changed("joined", p.identity)
        return self._end()

    def disconnect(self, identity: str, now: float) -> Outcome:
        """The connection dropped without `leave`: keep the place for `resume_grace` seconds."""
        self._begin()
        p = self.participants.get(identity)
        if p is not None and p.connected:
            p.connected, p.since = False, now
            self._emit({"type": "participant", "participant": p.public()})
            self._changed("connected", identity, False)
        return self._end()

    def expire(self, now: float) -> Outcome:
        """Drop the participants whose grace period has passed."""
        self._begin()
        for p in list(self.participants.values()):
            if not p.connected and now - p.since >= self.limits.resume_grace:
                self._drop(p.identity, "timeout")
        return self._end()

    def next_deadline(self) -> Optional[float]:
        times = [p.since + self.limits.resume_grace for p in self.participants.values() if not p.connected]
        return min(times) if times else None

    def close(self, now: float) -> Outcome:
        """The room is being discarded (nobody left): end the lesson so the media plane stops too."""
        self._begin()
        if self.live:
            self._end_lesson(None)
        self._changed("closed")
        return self._end()

    def refresh_grant(self, grant: Grant) -> None:
        p = self.participants.get(grant.identity)
        if p is not None and p.role == grant.role:
            p.grant = grant

    def set_recording(self, active: bool, by: Optional[str]) -> Outcome:
        self._begin()
        if active != self.recording:
            self.recording = active
            self._emit({"type": "recording", "active": active, "by": by})
            self._changed("recording", None, active)
        return self._end()

    def set_link(self, identity: str, now: float, source: str = "sfu", **stats: Optional[float]) -> Outcome:
        """Record a participant's link measurements (from its own `stats` or from the SFU)."""
        self._begin()
        self._set_link(identity, now, source, stats)
        return self._end()

    def apply(self, msg: ClientMessage, sender: Grant, now: float) -> Outcome:
        """One client message from `sender` (already parsed and validated)."""
        self._begin()
        try:
            p = self.participants.get(sender.identity)
            if p is None or not p.connected:
                raise ProtocolError(Code.FORBIDDEN, "not in the room")
            check_rights(msg, sender)
            handler = getattr(self, "_on_" + msg.type, None)
            if handler is None:
                raise ProtocolError(Code.UNKNOWN_TYPE, f"{msg.type} is not a lesson message")
            handler(msg.fields, sender, now)
        except ProtocolError as exc:
            exc.ref = msg.ref if exc.ref is None else exc.ref
            self._errors.append(exc)
        return self._end()

    # ---- message handlers: validate everything first, then change state -----------------------------------

    def _on_leave(self, f: dict[str, Any], sender: Grant, now: float) -> None:
        self._drop(sender.identity, "leave")
        self._events.append(Disconnect(sender.identity, Close.NORMAL, None))

    def _on_hand_raise(self, f: dict[str, Any], sender: Grant, now: float) -> None:
        if sender.identity != self.on_stage and sender.identity not in self.hands:
            self.hands.append(sender.identity)
            self._emit_hands()

    def _on_hand_lower(self, f: dict[str, Any], sender: Grant, now: float) -> None:
        target = f.get("identity", sender.identity)
        if target != sender.identity and sender.role not in CONSOLE_ROLES:
            raise ProtocolError(Code.FORBIDDEN, "only the teacher may lower another participant's hand")
        if target in self.hands:
            self.hands.remove(target)
            self._emit_hands(by=sender.identity)

    def _on_stage_call(self, f: dict[str, Any], sender: Grant, now: float) -> None:
        target = self._terminal(f["identity"])
        if not target.connected:
            raise ProtocolError(Code.INVALID_TARGET, f"{target.identity} is reconnecting")
        if not self.live:
            raise ProtocolError(Code.NOT_LIVE, "start the lesson before calling a classroom on stage")
        if self.on_stage == target.identity:
            return
        previous, self.on_stage = self.on_stage, target.identity
        if previous is not None:
            self._set_muted(previous, True, sender.identity)  # the one leaving the stage first: never two voices
        if target.identity in self.hands:
            self.hands.remove(target.identity)
            self._emit_hands(by=sender.identity)
        self._emit({"type": "stage", "identity": target.identity, "previous": previous, "by": sender.identity})
        self._changed("stage", None, target.identity)
        if target.grant.may_publish("microphone"):
            self._set_muted(target.identity, False, sender.identity)

    def _on_stage_end(self, f: dict[str, Any], sender: Grant, now: float) -> None:
        self._clear_stage(sender.identity)

    def _on_mute(self, f: dict[str, Any], sender: Grant, now: float) -> None:
        if sender.role not in CONSOLE_ROLES and f["identity"] != sender.identity:
            raise ProtocolError(Code.FORBIDDEN, "a classroom may mute only its own microphone")
        self._set_muted(self._terminal(f["identity"]).identity, True, sender.identity)

    def _on_unmute(self, f: dict[str, Any], sender: Grant, now: float) -> None:
        target = self._terminal(f["identity"])
        if not target.grant.may_publish("microphone"):
            raise ProtocolError(Code.INVALID_TARGET, f"{target.identity} has no microphone right")
        self._set_muted(target.identity, False, sender.identity)

    def _on_chat(self, f: dict[str, Any], sender: Grant, now: float) -> None:
        self.chat_seq += 1
        entry = {"id": self.chat_seq, "from": sender.identity, "name": sender.name[:MAX_NAME_CHARS],
                 "role": sender.role, "text": f["text"], "ts": round(now * 1000)}
        self.chat.append(entry)
        self._emit({"type": "chat", **entry})

    def _on_lesson_start(self, f: dict[str, Any], sender: Grant, now: float) -> None:
        if not self.live:
            self.live, self.live_since = True, now
            self._emit({"type": "lesson", "live": True, "by": sender.identity})
            self._changed("live", None, True)

    def _on_lesson_end(self, f: dict[str, Any], sender: Grant, now: float) -> None:
        if self.live:
            self._end_lesson(sender.identity)

    def _on_remove(self, f: dict[str, Any], sender: Grant, now: float) -> None:
        target = self._participant(f["identity"])
        if target.identity == sender.identity:
            raise ProtocolError(Code.INVALID_TARGET, "use leave to leave")
        if target.role == "admin" or (target.role == "teacher" and sender.role != "admin"):
            raise ProtocolError(Code.FORBIDDEN, f"a {sender.role} may not remove a {target.role}")
        reason = f.get("reason") or "removed by the teacher"
        self._drop(target.identity, "removed")
        self.removed.add(target.identity)
        self._events.append(Disconnect(target.identity, Close.REMOVED, error(Code.REMOVED, reason)))

    def _on_publish(self, f: dict[str, Any], sender: Grant, now: float) -> None:
        refusal = self.publish_refusal(sender, f["sources"])
        if refusal is not None:
            raise refusal
        self._set_publishing(sender.identity, self.participants[sender.identity].publishing | set(f["sources"]))

    def _on_unpublish(self, f: dict[str, Any], sender: Grant, now: float) -> None:
        p = self.participants[sender.identity]
        self._set_publishing(sender.identity, p.publishing - set(f.get("sources") or p.publishing))

    def _on_stats(self, f: dict[str, Any], sender: Grant, now: float) -> None:
        self._set_link(sender.identity, now, "client", f)

    # ---- helpers ---------------------------------------------------------------------------------------------

    def _participant(self, identity: str) -> Participant:
        p = self.participants.get(identity)
        if p is None:
            raise ProtocolError(Code.NOT_FOUND, f"{identity[:MAX_ID_CHARS]!r} is not in the room")
        return p

    def _terminal(self, identity: str) -> Participant:
        p = self._participant(identity)
        if p.role != "terminal":
            raise ProtocolError(Code.INVALID_TARGET, f"{identity} is a {p.role}, not a classroom terminal")
        return p

    def _set_muted(self, identity: str, muted: bool, by: Optional[str]) -> None:
        if (identity in self.muted) == muted:
            return
        (self.muted.add if muted else self.muted.discard)(identity)
        self._emit({"type": "mute", "identity": identity, "muted": muted, "by": by})
        self._changed("muted", identity, muted)

    def _set_link(self, identity: str, now: float, source: str, stats: dict[str, Optional[float]]) -> None:
        p = self.participants.get(identity)
        if p is None or (source == "client" and p.link.source == "sfu" and now - p.link.at < SFU_LINK_HOLD):
            return
        before = p.link.quality
        p.link = Link(quality=link_quality(stats.get("loss"), stats.get("rtt")), source=source, at=now,
                      **{k: stats.get(k) for k in ("loss", "rtt", "bitrate", "jitter")})
        # numbers go to the console on every report; everyone else hears only of a change of class
        self._emit({"type": "participant", "participant": p.public()},
                   roles=None if p.link.quality != before else CONSOLE_ROLES)
        self._changed("link", identity, p.link)

    def _set_publishing(self, identity: str, sources: set[str]) -> None:
        p = self.participants[identity]
        if sources != p.publishing:
            p.publishing = sources
            self._emit({"type": "participant", "participant": p.public()})
            self._changed("publishing", identity, frozenset(sources))

    def _clear_stage(self, by: Optional[str]) -> None:
        previous = self.on_stage
        if previous is None:
            return
        self.on_stage = None
        if previous in self.participants:  # not when it is leaving for good
            self._set_muted(previous, True, by)
        self._emit({"type": "stage", "identity": None, "previous": previous, "by": by})
        self._changed("stage", None, None)

    def _emit_hands(self, by: Optional[str] = None) -> None:
        self._emit({"type": "hands", "queue": list(self.hands), "by": by})

    def _end_lesson(self, by: Optional[str]) -> None:
        """End stops everything: stage, hands, every microphone, every publication."""
        self._clear_stage(by)
        if self.hands:
            self.hands.clear()
            self._emit_hands(by)
        for p in self.participants.values():
            if p.role == "terminal":
                self._set_muted(p.identity, True, by)
            self._set_publishing(p.identity, set())
        self.live, self.live_since = False, None
        self._emit({"type": "lesson", "live": False, "by": by})
        self._changed("live", None, False)

    def _drop(self, identity: str, reason: str) -> None:
        """Forget a participant for good (left, timed out, removed or replaced)."""
        self.participants.pop(identity)
        self.muted.discard(identity)
        if identity in self.hands:
            self.hands.remove(identity)
            self._emit_hands()
        if self.on_stage == identity:
            self._clear_stage(None)
        self._emit({"type": "left", "identity": identity, "reason": reason})
        self._changed("removed" if reason == "removed" else "left", identity, reason)

    def welcome(self, identity: str, resumed: bool) -> dict[str, Any]:
        g = self.participants[identity].grant
        return {
            "type": "welcome", "room": self.room, "resumed": resumed, "seq": self.seq,
            "you": {"identity": g.identity, "name": g.name[:MAX_NAME_CHARS], "role": g.role,
                    "can_publish": g.can_publish, "can_subscribe": g.can_subscribe,
                    "sources": list(g.sources), "expires": g.expires},
            "state": {"live": self.live,
                      "live_since": None if self.live_since is None else round(self.live_since * 1000),
                      "on_stage": self.on_stage, "hands": list(self.hands),
                      "muted": sorted(self.muted), "recording": self.recording,
                      "participants": [p.public() for p in self.participants.values()],
                      "chat": list(self.chat)},
        }

    # ---- transition bookkeeping --------------------------------------------------------------------------

    def _begin(self) -> None:
        self._events, self._errors, self._changes = [], [], []

    def _emit(self, payload: dict[str, Any], roles: Optional[frozenset[str]] = None,
              exclude: Optional[str] = None) -> None:
        self.seq += 1
        payload["seq"] = self.seq
        self._events.append(Event(payload, roles=roles, exclude=exclude))

    def _to(self, identity: str, payload: dict[str, Any]) -> None:
        self._events.append(Event(payload, to=frozenset({identity})))

    def _changed(self, kind: ChangeKind, identity: Optional[str] = None, value: Any = None) -> None:
        self._changes.append(Change(kind, identity, value))

    def _end(self) -> Outcome:
        events, errors, changes = self._events, self._errors, self._changes
        self._events, self._errors, self._changes = [], [], []
        for change in changes:
            for listener in list(self._listeners):
                try:
                    listener(change)
                except Exception:  # a listener's bug must not break the lesson
                    log.exception("lesson change listener failed on %s", change)
        return events, errors
