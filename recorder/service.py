"""The recorder as the server sees it: `start(room, grant)` / `stop(room)` (the room WebSocket and the HTTP API
call these), recovery of unfinished recordings at start, and the background analysis (poster, chapters).

It consumes media like any viewer, through the SFU's packet sinks (`SfuNode.attach_sink`); it never touches a
publisher connection. Events (started, stopped, failed, recovered, analysed) go to `on_event` listeners.
"""
from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Awaitable, Callable, Optional, Protocol

from recorder.store.catalogue import EDITABLE, LINKS
from recorder.store.library import Library
from recorder.session import KindSink, Outcome, RecordingSession, SessionConfig
from recorder.webm.webm_writer import Finished, repair

log = logging.getLogger(__name__)

KINDS = ("video", "audio")
MEDIA_NAME = "lesson.webm"          # the teacher's camera and microphone
SCREEN_NAME = "screen.webm"         # the teacher's screen share (video), on the same timeline
MIN_FREE_BYTES = 8 << 20          # refuse to start a recording with less free space than this
ANALYSIS_TIMEOUT = 600.0
ANALYSIS_NICE = 10
REPO = Path(__file__).resolve().parent.parent
MAX_TEXT = 200
MAX_RECORDINGS = 100              # rooms recorded at once on one server (two writer threads each)


class RecorderError(Exception):
    """A recording cannot be started or stopped; `status` is the HTTP status that says why."""

    def __init__(self, message: str, status: int = 409) -> None:
        super().__init__(message)
        self.status = status


class MediaNode(Protocol):
    """What the recorder needs of the SFU (sfu.node.SfuNode)."""
    rooms: dict

    def attach_sink(self, room_id: str, kind: str, sink: Any) -> None: ...

    def detach_sink(self, room_id: str, kind: str, sink: Any) -> None: ...


@dataclass
class Active:
    lesson_id: str
    room: str
    session: RecordingSession                       # camera + microphone
    screen: Optional[RecordingSession] = None       # the screen share
    sinks: list[tuple[str, str, KindSink]] = field(default_factory=list)   # (source, kind, sink)

    def sessions(self) -> list[RecordingSession]:
        return [s for s in (self.session, self.screen) if s is not None]


def clean_text(value: Any, name: str) -> str:
    if value is None:
        return ""
    if not isinstance(value, (str, int)) or isinstance(value, bool):
        raise ValueError(f"{name} must be text")
    text = str(value).strip()
    if len(text) > MAX_TEXT or any(ord(c) < 32 for c in text):
        raise ValueError(f"{name} must be at most {MAX_TEXT} printable characters")
    return text


class Recorder:
    def __init__(self, library: Library, node: MediaNode, config: SessionConfig = SessionConfig(),
                 analyze: bool = True, analysis_timeout: float = ANALYSIS_TIMEOUT,
                 max_recordings: int = MAX_RECORDINGS, node_id: str = "") -> None:
        self.library = library
        self.node_id = node_id            # cluster mode: written on our lessons, so only we (or, once we are
        self._dead_since: dict[str, float] = {}   # gone, another node) recover them; lesson id -> first seen
        self.max_recordings = max_recordings
        self.node = node
        self.config = config
        self.analyze_enabled = analyze
        self.analysis_timeout = analysis_timeout
        self.active: dict[str, Active] = {}
        self._listeners: list[Callable[[dict], None]] = []
        self._locks: dict[str, asyncio.Lock] = {}
        self._jobs: set[asyncio.Task] = set()
        self._analysis_slot: Optional[asyncio.Semaphore] = None
        self._procs: set[asyncio.subprocess.Process] = set()

    # ---- events ------------------------------------------------------------------------------------------

    def on_event(self, callback: Callable[[dict], None]) -> Callable[[], None]:
        self._listeners.append(callback)
        return lambda: self._listeners.remove(callback) if callback in self._listeners else None

    def _emit(self, event: dict) -> None:
        log.info("recorder event: %s", event)
        for cb in list(self._listeners):
            try:
                cb(event)
            except Exception:
                log.exception("recorder event listener failed")

    # ---- the interface the room WebSocket calls ------------------------------------------------------------

    async def start(self, room: str, grant: Any = None, meta: Optional[dict] = None,
                    links: Optional[dict] = None) -> dict:
        """Start recording `room` (no-op returning the lesson if it is already being recorded). `links`: the
        course and held lesson a timetabled lesson's recording belongs to (catalogue.LINKS), set by the server."""
        async with self._lock(room):
            a = self.active.get(room)
            if a is not None:
                return self.library.catalogue.get(a.lesson_id) or {}
            fields = self._metadata(room, grant, meta or {})
            fields.update({k: str(v) for k, v in (links or {}).items() if k in LINKS})
            if len(self.active) >= self.max_recordings:
                raise RecorderError(f"this server records {self.max_recordings} rooms already; try later", 503)
            if self.library.free_bytes() < MIN_FREE_BYTES:
                raise RecorderError("not enough free disk space in the library to record", 507)
            self.library.ensure_reserve()
            lesson_id = self.library.new_id()
            folder = self.library.lesson_dir(lesson_id, create=True)
            loop = asyncio.get_running_loop()

            def session(name: str, audio: bool) -> RecordingSession:
                return RecordingSession(
                    folder / name, fields["title"], self.config, on_disk_full=self.library.release_reserve,
                    on_end=lambda s: loop.call_soon_threadsafe(self._ended_by_itself, room, s), audio=audio)

            self.library.catalogue.add({"id": lesson_id, **fields, "started_at": time.time(), "state": "recording",
                                        "media_file": f"lessons/{lesson_id}/{MEDIA_NAME}", "node": self.node_id})
            a = Active(lesson_id, room, session(MEDIA_NAME, True), session(SCREEN_NAME, False))
            for s in a.sessions():
                s.start()
            self.active[room] = a
            for kind in KINDS:
                self._attach(a, a.session, "camera", kind)
            if a.screen is not None and not self._attach(a, a.screen, "screen", "video"):
                await asyncio.to_thread(a.screen.stop)   # this SFU has no screen feed
                a.screen = None
            self._emit({"type": "recording_started", "room": room, "id": lesson_id})
            return self.library.catalogue.get(lesson_id) or {}

    async def stop(self, room: str) -> Optional[dict]:
        """Stop and finalize `room`'s recording; None when it is not being recorded."""
        async with self._lock(room):
            a = self.active.pop(room, None)
            if a is None:
                return None
            self._detach(a)
            outcomes = await asyncio.gather(*(asyncio.to_thread(s.stop) for s in a.sessions()))
            return self._complete(a, outcomes[0], outcomes[1] if len(outcomes) > 1 else None)

    def recording(self, room: str) -> Optional[str]:
        a = self.active.get(room)
        return a.lesson_id if a else None

    # ---- internals ---------------------------------------------------------------------------------------

    def _lock(self, room: str) -> asyncio.Lock:
        lock = self._locks.get(room)
        if lock is None:
            lock = self._locks[room] = asyncio.Lock()
        return lock

    def _metadata(self, room: str, grant: Any, meta: dict) -> dict:
        unknown = set(meta) - set(EDITABLE)
        if unknown:
            raise RecorderError(f"unknown field(s): {', '.join(sorted(unknown))}", 400)
        try:
            fields = {k: clean_text(meta.get(k), k) for k in EDITABLE}
        except ValueError as exc:
            raise RecorderError(str(exc), 400) from None
        if not fields["teacher"] and grant is not None:
            fields["teacher"] = getattr(grant, "name", "") or getattr(grant, "identity", "")
        if not fields["title"]:
            fields["title"] = f"Lesson in {room}, {time.strftime('%Y-%m-%d %H:%M', time.gmtime())} UTC"
        return {**fields, "room": room}

    def _attach(self, a: Active, session: RecordingSession, source: str, kind: str) -> bool:
        def request_keyframe(now: float, stream: Any) -> None:
            self.node.request_keyframe(a.room, kind, stream, source)

        sink = KindSink(session, kind, request_keyframe)
        try:
            if source == "camera":
                self.node.attach_sink(a.room, kind, sink)
            else:
                self.node.attach_sink(a.room, kind, sink, source=source)
        except (TypeError, ValueError) as exc:
            log.warning("cannot record the %s %s of %s: %s", source, kind, a.room, exc)
            return False
        a.sinks.append((source, kind, sink))
        return True

    def _detach(self, a: Active) -> None:
        for source, kind, sink in a.sinks:
            try:
                if source == "camera":
                    self.node.detach_sink(a.room, kind, sink)
                else:
                    self.node.detach_sink(a.room, kind, sink, source=source)
            except Exception:
                log.exception("detaching the recorder from %s failed", a.room)
        a.sinks.clear()

    def _ended_by_itself(self, room: str, session: RecordingSession) -> None:
        """A writer thread stopped on an error (full disk): on the event loop. The whole recording stops."""
        a = self.active.get(room)
        if a is None or session not in a.sessions():
            return
        del self.active[room]
        self._detach(a)
        task = asyncio.get_running_loop().create_task(self._stop_after_failure(a), name=f"recording end {room}")
        self._jobs.add(task)
        task.add_done_callback(self._jobs.discard)

    async def _stop_after_failure(self, a: Active) -> None:
        async with self._lock(a.room):
            outcomes = await asyncio.gather(*(asyncio.to_thread(s.stop) for s in a.sessions()))
            self._complete(a, outcomes[0], outcomes[1] if len(outcomes) > 1 else None)

    def _complete(self, a: Active, outcome: Outcome, screen: Optional[Outcome] = None) -> dict:
        cat = self.library.catalogue
        main = _media(outcome, MEDIA_NAME)
        shown = _media(screen, SCREEN_NAME) if screen is not None else None
        fields = _layout(a.lesson_id, main, shown)
        errors = [o.error for o in (outcome, screen) if o is not None and o.error]   # full disk, ...
        error = errors[0] if errors else None
        if fields["duration_s"] <= 0:
            fields["state"], fields["error"] = "failed", error or "nothing was recorded (no media arrived)"
        else:
            fields["state"], fields["error"] = ("failed" if error else "ready"), error
        fields["tracks"] = ((outcome.tracks if main else [])
                            + ([{**t, "source": "screen"} for t in screen.tracks] if screen and shown else []))
        state, duration = fields["state"], fields["duration_s"]
        try:
            lesson = cat.update(a.lesson_id, **fields) or {}
        except Exception:
            log.exception("catalogue update failed for %s", a.lesson_id)
            lesson = {"id": a.lesson_id, **fields}
        log.info("recording %s of %s ended: %s, %.1f s, %d bytes, %s", a.lesson_id, a.room, state, duration,
                 fields["size"], outcome.stats)
        if state == "failed":
            self._emit({"type": "recording_failed", "room": a.room, "id": a.lesson_id,
                        "reason": fields["error"] or "failed"})
        else:
            self._emit({"type": "recording_stopped", "room": a.room, "id": a.lesson_id, "duration_s": duration})
        if duration > 0:
            self._schedule_analysis(a.lesson_id)
        return lesson

    # ---- recovery ----------------------------------------------------------------------------------------

    async def recover(self, is_alive: Optional[Callable[[str], Awaitable[bool]]] = None,
                      confirm_s: float = 0.0) -> list[dict]:
        """Finish the lessons the catalogue still says are being recorded while their recording server is gone.

        Alone (is_alive None, the library locked for this server): every such lesson, at start. In a cluster
        (a shared library): ours (an earlier run of this node), those recorded before cluster mode, and those of
        a node that has been dead (`is_alive` False) for `confirm_s`: one look is not enough, since right after
        a Redis restart every node looks dead until its next heartbeat. A lesson is claimed in the catalogue
        first, so two nodes never finish the same one."""
        out = []
        now = time.monotonic()
        for lesson in self.library.catalogue.in_state(["recording"]):
            lesson_id, owner = lesson["id"], lesson.get("node") or ""
            if any(a.lesson_id == lesson_id for a in self.active.values()):
                continue
            if is_alive is not None and owner and owner != self.node_id:
                try:
                    alive = await is_alive(owner)
                except Exception as exc:  # Redis unreachable: cannot tell, leave it for a later look
                    log.info("cannot tell whether node %s is live (%s): lesson %s left for now", owner, exc,
                             lesson_id)
                    continue
                if alive:
                    self._dead_since.pop(lesson_id, None)
                    continue
                first = self._dead_since.setdefault(lesson_id, now)
                if now - first < confirm_s:
                    continue
            if owner != self.node_id and not self.library.catalogue.claim(lesson_id, owner, self.node_id):
                continue  # another node took it over meanwhile
            self._dead_since.pop(lesson_id, None)
            if owner != self.node_id:
                log.warning("recovering lesson %s: its recording node %s is gone", lesson_id, owner or "(none)")
            out.append(await self._recover_one(lesson))
        return out

    async def _recover_one(self, lesson: dict) -> dict:
        cat = self.library.catalogue
        lesson_id = lesson["id"]
        try:
            folder = self.library.lesson_dir(lesson_id)
        except ValueError:
            return cat.update(lesson_id, state="failed", error="invalid lesson id in the catalogue") or lesson
        found: dict[str, Optional[tuple[str, Finished]]] = {}
        problem = "no media file was written"
        for name in (MEDIA_NAME, SCREEN_NAME):
            path = folder / name
            found[name] = None
            if not path.exists():
                continue
            try:
                finished = await asyncio.to_thread(repair, path)
            except Exception as exc:
                log.warning("%s of lesson %s could not be recovered: %s", name, lesson_id, exc)
                problem = str(exc)
                continue
            if finished.duration_ms > 0:
                found[name] = (name, finished)
            elif problem == "no media file was written":
                problem = "nothing was recorded before the server stopped"
        fields = _layout(lesson_id, found[MEDIA_NAME], found[SCREEN_NAME])
        if fields["duration_s"] <= 0:
            self._emit({"type": "recording_failed", "room": lesson["room"], "id": lesson_id, "reason": problem})
            return cat.update(lesson_id, **fields, state="failed", error=f"not recoverable: {problem}") or lesson
        fields["tracks"] = ((_probe_tracks(folder / MEDIA_NAME) if found[MEDIA_NAME] else [])
                            + ([{**t, "source": "screen"} for t in _probe_tracks(folder / SCREEN_NAME)]
                               if found[SCREEN_NAME] else []))
        duration = fields["duration_s"]
        note = "the server stopped during the recording; recovered up to its last seconds"
        updated = cat.update(lesson_id, **fields, state="recovered", error=note) or lesson
        self._emit({"type": "recording_recovered", "room": lesson["room"], "id": lesson_id, "duration_s": duration})
        if duration > 0:
            self._schedule_analysis(lesson_id)
        return updated

    # ---- background analysis -----------------------------------------------------------------------------

    def _schedule_analysis(self, lesson_id: str) -> None:
        if not self.analyze_enabled:
            return
        task = asyncio.get_running_loop().create_task(self._analyze(lesson_id), name=f"analyse {lesson_id}")
        self._jobs.add(task)
        task.add_done_callback(self._jobs.discard)

    async def _analyze(self, lesson_id: str) -> None:
        if self._analysis_slot is None:
            self._analysis_slot = asyncio.Semaphore(1)   # one at a time: bounded CPU, whatever the backlog
        async with self._analysis_slot:
            try:
                out_dir = self.library.lesson_dir(lesson_id)
                lesson = self.library.catalogue.get(lesson_id)
                if lesson is None:
                    return
                media = out_dir / Path(lesson["media_file"]).name
                if not media.exists():
                    return
                extra = []   # slides change on the screen share: chapters come from it when there is one
                if lesson.get("screen_file"):
                    extra = ["--chapters", str(out_dir / lesson["screen_file"]),
                             "--offset", f"{lesson.get('screen_offset_s') or 0.0:.3f}"]
                proc = await asyncio.create_subprocess_exec(
                    sys.executable, "-m", "recorder.analysis", str(media), str(out_dir), *extra,
                    stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, cwd=str(REPO))
                self._procs.add(proc)
                try:   # low priority: live media first (it is still importing: nothing to compete with yet)
                    os.setpriority(os.PRIO_PROCESS, proc.pid, ANALYSIS_NICE)
                except OSError:
                    pass
                try:
                    out, err = await asyncio.wait_for(proc.communicate(), self.analysis_timeout)
                except (asyncio.TimeoutError, asyncio.CancelledError):
                    proc.kill()
                    await proc.wait()
                    raise
                finally:
                    self._procs.discard(proc)
                if proc.returncode != 0:
                    log.warning("analysis of %s failed: %s", lesson_id, err.decode(errors="replace")[-500:])
                    return
                result = json.loads(out.decode())
                chapters = [{"index": i, "t": c["t"], "title": f"Chapter {i + 1}", "thumbnail": c["thumbnail"]}
                            for i, c in enumerate(result.get("chapters", []))]
                if self.library.catalogue.get(lesson_id) is None:
                    return   # deleted meanwhile
                self.library.catalogue.update(lesson_id, thumbnail=result.get("poster") or "", chapters=chapters)
                self._emit({"type": "lesson_analysed", "id": lesson_id, "chapters": len(chapters)})
            except asyncio.TimeoutError:
                log.warning("analysis of %s took longer than %.0f s: abandoned", lesson_id, self.analysis_timeout)
            except Exception:
                log.exception("analysis of %s failed", lesson_id)

    async def idle(self) -> None:
        """Wait for the background analyses (tests, shutdown)."""
        while self._jobs:
            await asyncio.gather(*list(self._jobs), return_exceptions=True)

    # ---- library edits -----------------------------------------------------------------------------------

    def edit(self, lesson_id: str, changes: dict) -> Optional[dict]:
        unknown = set(changes) - set(EDITABLE)
        if unknown:
            raise RecorderError(f"unknown or read-only field(s): {', '.join(sorted(unknown))}", 400)
        try:
            fields = {k: clean_text(v, k) for k, v in changes.items()}
        except ValueError as exc:
            raise RecorderError(str(exc), 400) from None
        if "title" in fields and not fields["title"]:
            raise RecorderError("title must not be empty", 400)
        if self.library.catalogue.get(lesson_id) is None:
            return None
        return self.library.catalogue.update(lesson_id, **fields) if fields else self.library.catalogue.get(lesson_id)

    def delete(self, lesson_id: str) -> bool:
        lesson = self.library.catalogue.get(lesson_id)
        if lesson is None:
            return False
        if any(a.lesson_id == lesson_id for a in self.active.values()):
            raise RecorderError("the lesson is still being recorded: stop the recording first", 409)
        self.library.catalogue.delete(lesson_id)
        self.library.remove_lesson_files(lesson_id)
        self._emit({"type": "lesson_deleted", "id": lesson_id})
        return True

    # ---- shutdown ----------------------------------------------------------------------------------------

    async def close(self) -> None:
        """Server shutdown: finalize every recording (they end as `ready`), stop analyses."""
        for room in list(self.active):
            try:
                await self.stop(room)
            except Exception:
                log.exception("finalizing the recording of %s failed", room)
        for proc in list(self._procs):
            if proc.returncode is None:
                proc.kill()
        for task in list(self._jobs):
            task.cancel()
        await asyncio.gather(*list(self._jobs), return_exceptions=True)


def _probe_tracks(path: Path) -> list[dict]:
    try:
        import av
        with av.open(str(path)) as c:
            out = []
            for s in c.streams:
                if s.type == "video":
                    out.append({"kind": "video", "codec": s.codec_context.name.upper(),
                                "width": s.codec_context.width or None, "height": s.codec_context.height or None})
                elif s.type == "audio":
                    out.append({"kind": "audio", "codec": s.codec_context.name})
            return out
    except Exception:
        return []


def _media(outcome: Optional[Outcome], name: str) -> Optional[tuple[str, Finished]]:
    if outcome is None or outcome.finished is None or outcome.finished.duration_ms <= 0:
        return None
    return name, outcome.finished


def _layout(lesson_id: str, main: Optional[tuple[str, Finished]],
            screen: Optional[tuple[str, Finished]]) -> dict[str, Any]:
    """Catalogue fields for what was recorded: the camera file is the lesson's media (its timeline is the
    lesson's); the screen share is played beside it, `screen_offset_s` later (from both files' start times).
    With only a screen share, it is the lesson's media."""
    primary = main or screen
    if primary is None:
        return {"duration_s": 0.0, "size": 0, "screen_file": "", "screen_offset_s": 0.0}
    extra = screen if main is not None else None
    offset = 0.0
    if extra is not None and primary[1].started_at and extra[1].started_at:
        offset = round(extra[1].started_at - primary[1].started_at, 3)
    fields: dict[str, Any] = {
        "media_file": f"lessons/{lesson_id}/{primary[0]}", "duration_s": primary[1].duration_ms / 1000,
        "size": sum(f.size for _, f in (primary, extra) if f is not None) if extra else primary[1].size,
        "screen_file": extra[0] if extra else "", "screen_offset_s": offset}
    if primary[1].started_at:
        fields["started_at"] = primary[1].started_at
    return fields
