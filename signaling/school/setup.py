"""The school's parts in the app: the timetable and attendance stores (the library's SQLite), the lesson
tracker on the room hub, webhooks, and their routes. Needs the recorder's library (library_api.setup first)."""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Optional

from aiohttp import web

from recorder.store.attendance import AttendanceStore
from recorder.store.timetable import TimetableStore
from signaling.http import lifetime
from signaling.http.app_keys import CLIENT_SSL, SFU
from signaling.live.room_ws import HUB
from signaling.media.library_api import RECORDER, present
from signaling.school import report_api, timetable_api
from signaling.school.timetable_api import ATTENDANCE, TIMETABLE
from signaling.school.tracker import LessonTracker
from signaling.school.webhooks import Webhooks

log = logging.getLogger(__name__)

TRACKER = web.AppKey("lesson_tracker", LessonTracker)
WEBHOOKS = web.AppKey("webhooks", Webhooks)
CATALOGUE = "catalogue.sqlite"


@dataclass(frozen=True)
class WebhookConfig:
    urls: tuple[str, ...]
    secret: str


def setup(app: web.Application, node_id: str = "", webhooks: Optional[WebhookConfig] = None) -> LessonTracker:
    recorder = app[RECORDER]
    path = str(recorder.library.root / CATALOGUE)
    timetable = app[TIMETABLE] = TimetableStore(path)
    attendance = app[ATTENDANCE] = AttendanceStore(path)
    hooks: Optional[Webhooks] = None
    if webhooks is not None and webhooks.urls:
        hooks = app[WEBHOOKS] = Webhooks(webhooks.urls, webhooks.secret, ssl=app.get(CLIENT_SSL))
        lifetime.for_app_lifetime(app, hooks.start, hooks.close, stop_first=False)   # after the lessons' last words
    tracker = app[TRACKER] = LessonTracker(app[HUB], app[SFU], attendance, timetable, recorder, hooks, node_id)
    # kept to the end: recordings finalized at shutdown are still `recording_ready`
    recorder.on_event(lambda event: tracker.recording_event(event, present))
    lifetime.for_app_lifetime(app, tracker.start, tracker.close)

    async def close_stores(app: web.Application) -> None:
        timetable.close()
        attendance.close()

    app.on_cleanup.append(close_stores)
    timetable_api.add_routes(app)
    report_api.add_routes(app)
    return tracker
