"""Every lesson of this node followed as it runs: from `lesson_start` to `lesson_end`, which classrooms
(terminals on the room WebSocket) are present, and every few seconds the SFU's measurements of their viewer
sessions; the changed rows are written then (the store survives `kill -9`). A lesson on the timetable is
recognised when it starts: its recording starts by itself with the course's metadata. Webhooks hear of it all."""
from __future__ import annotations

import asyncio
import logging
import secrets
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

from recorder.store.attendance import AttendanceStore
from recorder.store.timetable import TimetableStore
from signaling.http.lifetime import TaskSet
from signaling.lesson.room_state import Change
from signaling.live.room_hub import RoomHub
from signaling.school.attendance import LessonLog
from signaling.school.quality import VideoSample
from signaling.school.report import lesson_report
from signaling.school.timetable import Occurrence, course_from_json, iso, lesson_on
from signaling.school.webhooks import Webhooks

log = logging.getLogger(__name__)

SAMPLE_S = 2.0   # SFU samples and writes: what a `kill -9` may lose, and the chart's resolution
CLASSROOM_ROLE = "terminal"
MIN_SOURCE_S = 0.5   # a shorter look at the teacher's camera cannot tell a paused one from the gap between frames


@dataclass
class Live:
    log: LessonLog
    room: str
    occurrence: Optional[Occurrence]
    recording_id: str = ""
    announced: set[str] = field(default_factory=set)   # classrooms whose classroom_joined went out
    sample_due: bool = False                           # a sample is coming (a classroom arrived: its baseline)
    video_forwarded: int = -1                          # the teacher's camera's packets forwarded, at the last sample
    source_live: bool = False                          # ... and whether it had moved then
    sampled_at: float = 0.0


class LessonTracker:
    def __init__(self, hub: RoomHub, node: Any, store: AttendanceStore, timetable: TimetableStore,
                 recorder: Any = None, webhooks: Optional[Webhooks] = None, node_id: str = "",
                 sample_s: float = SAMPLE_S, clock: Callable[[], float] = time.time) -> None:
        self.hub, self.node, self.store, self.timetable = hub, node, store, timetable
        self.recorder = recorder          # recorder.service.Recorder, for timetabled lessons' recordings
        self.webhooks = webhooks
        self.node_id = node_id
        self.sample_s = sample_s
        self.clock = clock
        self.live: dict[str, Live] = {}
        self._tasks = TaskSet()
        self._sampler: Optional[asyncio.Task] = None
        self._unsubscribe: Optional[Callable[[], None]] = None

    # ---- lifetime ------------------------------------------------------------------------------------------

    def start(self) -> None:
        interrupted = self.store.interrupt_unfinished(self.node_id)
        if interrupted:
            log.warning("lessons cut short when this node last stopped, reports kept: %s", ", ".join(interrupted))
        self._unsubscribe = self.hub.on_change(self.on_change)
        self._sampler = asyncio.get_running_loop().create_task(self._sample_loop(), name="lesson attendance")

    async def close(self) -> None:
        """Shutdown: lessons still running end here (their reports say when)."""
        if self._unsubscribe:
            self._unsubscribe()
        if self._sampler is not None:
            self._sampler.cancel()
            await asyncio.gather(self._sampler, return_exceptions=True)
        for room in list(self.live):
            self._finish(room)
        await self._tasks.wait()

    # ---- the room's changes --------------------------------------------------------------------------------

    def on_change(self, room: str, change: Change) -> None:
        try:
            if change.kind == "live":
                (self._begin if change.value else self._finish)(room)
            elif change.kind == "closed":
                self._finish(room)
            elif room in self.live and change.identity:
                self._presence(self.live[room], change)
        except Exception:   # a report's trouble must never break the lesson
            log.exception("attendance of %s: %s failed", room, change.kind)

    def _begin(self, room: str) -> None:
        if room in self.live:
            return
        now = self.clock()
        courses = [course_from_json(d) for d in self.timetable.all(room)]
        occ = lesson_on(courses, room, now)
        lesson_id = secrets.token_hex(8)
        fields: dict[str, Any] = {"room": room, "node": self.node_id, "started_at": now, "state": "live"}
        if occ is not None:
            c = occ.course
            fields.update(course_id=c.id, slot_id=occ.slot.id, occurrence_start=occ.start, **c.meta(),
                          expected=[x.to_json() for x in c.classrooms])
        self.store.open_lesson(lesson_id, fields)
        live = self.live[room] = Live(LessonLog(lesson_id, now), room, occ)
        state = self.hub.state(room)
        for p in list(state.participants.values()) if state is not None else []:
            if p.role == CLASSROOM_ROLE and p.connected:
                self._arrive(live, p.identity, p.grant.name, now)
        self._emit("lesson_started", {"lesson_id": lesson_id, "room": room, "started_at": iso(now),
                                      "course": occ.to_json() if occ is not None else None})
        self._sample_soon(live)
        if occ is not None and self.recorder is not None:
            self._tasks.spawn(self._record(live), f"record timetabled lesson in {room}")

    def _presence(self, live: Live, change: Change) -> None:
        identity, now = change.identity, self.clock()
        assert identity is not None
        if change.kind in ("joined", "connected") and change.value is not False:
            state = self.hub.state(live.room)
            p = state.participants.get(identity) if state is not None else None
            if p is not None and p.role == CLASSROOM_ROLE and p.connected:
                self._arrive(live, identity, p.grant.name, now)
        elif change.kind == "connected":   # dropped: back within the grace, or `left` (timeout) follows
            live.log.depart(identity, now)
        elif change.kind in ("left", "removed") and identity in live.log.classrooms:
            live.log.depart(identity, now)
            self._announce_left(live, identity, str(change.value or change.kind))

    def _arrive(self, live: Live, identity: str, name: str, now: float) -> None:
        if live.log.arrive(identity, name, now):
            self._sample_soon(live)   # its quality counts from its arrival, not from the next regular sample
        if identity not in live.announced:
            live.announced.add(identity)
            self._emit("classroom_joined", {"lesson_id": live.log.lesson_id, "room": live.room,
                                            "identity": identity, "name": name, "at": iso(now)})

    def _announce_left(self, live: Live, identity: str, reason: str) -> None:
        if identity in live.announced:
            live.announced.discard(identity)
            p = live.log.classrooms[identity]
            at = p.spans[-1][1] if p.spans and p.spans[-1][1] is not None else self.clock()
            self._emit("classroom_left", {"lesson_id": live.log.lesson_id, "room": live.room, "identity": identity,
                                          "name": p.name, "at": iso(at), "reason": reason})

    def _finish(self, room: str) -> None:
        if room not in self.live:
            return
        try:
            self.sample(room)   # the last seconds' quality
        except Exception:
            log.exception("sampling the lesson in %s failed", room)
        live = self.live.pop(room)
        now = self.clock()
        live.log.end(now)
        for identity in sorted(live.announced):
            self._announce_left(live, identity, "lesson_ended")
        lesson_id = live.log.lesson_id
        self.store.write(lesson_id, live.log.take_dirty(now), state="ended", ended_at=now)
        lesson = self.store.lesson(lesson_id)
        if lesson is not None:
            self._emit("lesson_ended", {"lesson_id": lesson_id, "room": room,
                                        "report": lesson_report(lesson, self.store.rows(lesson_id), now)})

    # ---- recording a timetabled lesson ---------------------------------------------------------------------

    async def _record(self, live: Live) -> None:
        occ = live.occurrence
        assert occ is not None
        state = self.hub.state(live.room)
        teachers = [p.grant for p in (state.participants.values() if state else []) if p.role == "teacher"]
        links = {"course_id": occ.course.id, "lesson_id": live.log.lesson_id}
        meta = {k: v for k, v in occ.course.meta().items() if v}
        try:
            rec = await self.recorder.start(live.room, teachers[0] if teachers else None, meta, links)
        except Exception as exc:
            log.warning("recording the timetabled lesson in %s did not start: %s", live.room, exc)
            return
        rec_id = rec.get("id", "")
        if rec and rec.get("lesson_id") != live.log.lesson_id:   # already recorded (--record, the teacher)
            self.recorder.library.catalogue.update(rec_id, **meta, **links)
        live.recording_id = rec_id
        self.store.write(live.log.lesson_id, [], recording_id=rec_id)
        state = self.hub.state(live.room)
        if state is None or not state.live:   # the lesson ended while the recording started: nobody stops it else
            await self.recorder.stop(live.room)

    def recording_event(self, event: dict[str, Any], present: Callable[[dict], dict]) -> None:
        """The recorder's events: a finished recording is `recording_ready` (with its held lesson, if any)."""
        if event.get("type") not in ("recording_stopped", "recording_recovered") or self.recorder is None:
            return
        lesson = self.recorder.library.catalogue.get(event.get("id", ""))
        if lesson is not None:
            self._emit("recording_ready", {"recording": present(lesson), "lesson_id": lesson.get("lesson_id") or None,
                                           "room": lesson.get("room")})

    # ---- samples and writes ----------------------------------------------------------------------------------

    async def _sample_loop(self) -> None:
        while True:
            await asyncio.sleep(self.sample_s)
            for room in list(self.live):
                try:
                    self.sample(room)
                except Exception:
                    log.exception("sampling the lesson in %s failed", room)

    def _sample_soon(self, live: Live) -> None:
        """One sample shortly (many classrooms arriving together share it: a sample reads the whole room)."""
        if live.sample_due:
            return
        live.sample_due = True

        def run() -> None:
            live.sample_due = False
            if self.live.get(live.room) is live:
                try:
                    self.sample(live.room)
                except Exception:
                    log.exception("sampling the lesson in %s failed", live.room)

        asyncio.get_running_loop().call_later(0.05, run)

    def sample(self, room: str) -> None:
        """The SFU's view of each present classroom's viewer of the teacher's camera; then write."""
        live = self.live[room]
        now = self.clock()
        # the teacher's camera is live if its video moved through the SFU since the last sample: a classroom
        # sent nothing meanwhile is frozen only then (a camera off or a teacher gone is nobody's link)
        forwarded = self.node.camera_forwarded(room)
        if now - live.sampled_at < MIN_SOURCE_S:   # too short to tell (a sample soon after an arrival)
            source_live = live.source_live
        else:
            source_live = forwarded is not None and forwarded > live.video_forwarded >= 0
            live.video_forwarded, live.source_live, live.sampled_at = forwarded or 0, source_live, now
        # every classroom's viewer of it, whether this node or an edge serves it (a big lesson's are spread)
        viewers = {owner: VideoSample(r.session, r.packets, r.height, r.loss, r.rtt_ms, r.bitrate)
                   for owner, r in self.node.camera_reach(room).items()}
        for identity, p in live.log.classrooms.items():
            if p.here:
                live.log.sample(identity, now, viewers.get(identity), source_live)
        self.store.write(live.log.lesson_id, live.log.take_dirty(now))

    # ---- helpers ---------------------------------------------------------------------------------------------

    def _emit(self, event: str, data: dict[str, Any]) -> None:
        if self.webhooks is not None:
            self.webhooks.emit(event, data)

