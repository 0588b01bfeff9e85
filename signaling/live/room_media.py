"""The lesson drives the media plane: RoomHub changes reach the SFU (stage, microphones, lesson end, removals).

The SFU never imports signaling: it asks `node.lesson(room)` for `LessonFacts` when it creates a room, and is
told `node.apply_lesson(room, facts)` after every change that matters. Lesson end closes every publisher of the
room (the teacher's too: "end stops all publishing"); a removed participant loses all its sessions. Every few
seconds the SFU's measurement of each classroom's downlink goes into the roster (`link`, source "sfu").
"""
from __future__ import annotations

import asyncio
import logging
from typing import Optional

from aiohttp import web

from sfu.room.feed import LessonFacts
from sfu.node import SfuNode

from signaling.http.app_keys import SFU
from signaling.live.room_hub import RoomHub
from signaling.live.room_ws import HUB
from signaling.lesson.room_state import Change, LessonState
from signaling.http import lifetime
from signaling.http.lifetime import TaskSet

log = logging.getLogger(__name__)

FOLLOWED = frozenset({"live", "stage", "muted", "joined", "left", "removed", "connected"})
LINK_EVERY = 5.0  # s between SFU link reports into the roster (an SFU measurement holds for 10 s)


def lesson_facts(state: Optional[LessonState]) -> Optional[LessonFacts]:
    """Who is on stage and which classrooms' microphones are open (everyone else's audio is dropped)."""
    if state is None:
        return None
    open_mics = frozenset(identity for identity, p in state.participants.items()
                          if p.role == "terminal" and state.audience(identity, "audio") != "none")
    return LessonFacts(on_stage=state.on_stage if state.live else None, open_mics=open_mics)


class LessonMediaBridge:
    def __init__(self, hub: RoomHub, node: SfuNode) -> None:
        self.hub = hub
        self.node = node
        self._tasks = TaskSet()
        self._links: Optional[asyncio.Task] = None
        node.lesson = lambda room: lesson_facts(hub.state(room))
        self.unsubscribe = hub.on_change(self.on_change)

    def start(self) -> None:
        if self._links is None:
            self._links = asyncio.get_running_loop().create_task(self._report_links(), name="sfu-links")

    async def _report_links(self) -> None:
        while True:
            await asyncio.sleep(LINK_EVERY)
            try:
                self.report_links()
            except Exception:
                log.exception("reporting SFU link measurements failed")

    def report_links(self) -> None:
        for room in list(self.hub.rooms):
            state = self.hub.state(room)
            if state is None:
                continue
            for identity, link in self.node.viewer_links(room).items():
                p = state.participants.get(identity)
                if p is not None and p.connected:
                    self.hub.set_link(room, identity, **link)

    def on_change(self, room: str, change: Change) -> None:
        if change.kind == "closed":
            self.node.apply_lesson(room, None)  # the lesson is gone: plain WHIP/WHEP rules again
            return
        if change.kind in FOLLOWED:
            self.node.apply_lesson(room, lesson_facts(self.hub.state(room)))
        if change.kind == "live" and change.value is False:
            self._tasks.spawn(self.node.end_publishing(room), f"end publishing in {room}")
        elif change.kind == "removed" and change.identity:
            self._tasks.spawn(self.node.end_owner(room, change.identity), f"end {change.identity}'s sessions in {room}")


    async def close(self) -> None:
        self.unsubscribe()
        if self._links is not None:
            self._links.cancel()
            await asyncio.gather(self._links, return_exceptions=True)
            self._links = None
        await self._tasks.wait()


LESSON_MEDIA = web.AppKey("lesson_media", LessonMediaBridge)  # setup


def setup(app: web.Application) -> LessonMediaBridge:
    """Connect the room WebSocket's hub (app[HUB]) to the SFU (app[SFU])."""
    bridge = LessonMediaBridge(app[HUB], app[SFU])
    app[LESSON_MEDIA] = bridge
    lifetime.for_app_lifetime(app, bridge.start, bridge.close)
    return bridge


def lesson_of(app: web.Application, room: str) -> Optional[LessonState]:
    """The room's lesson state, or None (no room WebSocket in this app, or nobody connected to the room)."""
    hub = app.get(HUB)
    return hub.state(room) if hub is not None else None
