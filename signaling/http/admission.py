"""Admission of new sessions and room sockets on the HTTP side (the rules are request_limits.py's): a middleware
that answers 429 with Retry-After when a client address or an identity asks too fast, the 503 of a full room or
node before any negotiation starts, and the cap on one identity's playback sessions of one source (the oldest
are closed: a reloaded page must win over the page it replaces)."""
from __future__ import annotations

import logging
import re
import time
from typing import Optional

from aiohttp import web

from sfu.room.feed import Slot
from sfu.node import SfuNode

from signaling.cluster import peer_requests
from signaling.http.request_limits import Limits, RequestLimiter, capacity_refusal, retry_after
from signaling.auth.tokens import TokenError
from signaling.http import access

log = logging.getLogger(__name__)

ADMITTED = re.compile(r"^/(?:(?:whip|whep)/[^/]+|ws/[^/]+)$")   # what opens a session or a room socket


class Admission:
    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self.limiter = RequestLimiter(limits)
        self.node_capacity = limits.node_capacity()
        self.refused = {429: 0, 503: 0}
        self.replaced = 0

    def check_capacity(self, node: SfuNode, room_id: str) -> None:
        """Raise the 503 of a full node or room."""
        refusal = capacity_refusal(node.counts()["sessions"], node.room_sessions(room_id), self.limits,
                                   self.node_capacity)
        if refusal is not None:
            self.refused[503] += 1
            raise web.HTTPServiceUnavailable(text=refusal.reason,
                                             headers={"Retry-After": retry_after(refusal.retry_after_s)})

    async def cap_playback(self, node: SfuNode, room_id: str, identity: str, slot: Slot) -> int:
        """Close `identity`'s oldest viewer sessions of `slot` in the room beyond the cap; how many were closed."""
        if not identity:
            return 0
        mine = node.playback_sessions(room_id, identity, slot)
        extra = mine[:max(0, len(mine) - self.limits.sessions_per_source)]
        for s in extra:
            log.info("viewer session %s of %s (%s) replaced by a newer one", s.id, identity, slot)
            await s.close()
        self.replaced += len(extra)
        return len(extra)

    def dump(self) -> dict:
        return {"node_capacity": self.node_capacity, "room_capacity": self.limits.room_capacity(self.node_capacity),
                "refused": dict(self.refused), "replaced": self.replaced,
                "tracked_addresses": len(self.limiter.addresses), "tracked_identities": len(self.limiter.identities)}


ADMISSION = web.AppKey("admission", Admission)  # setup: rates, capacity, session caps


def _identity(request: web.Request) -> Optional[str]:
    try:
        return access.verified(request, query=True).identity
    except TokenError:
        return None   # refused by the handler anyway; the address limit still counts it


@web.middleware
async def admission_middleware(request: web.Request, handler):
    new = (request.method == "POST" and request.path[:6] in ("/whip/", "/whep/")) or \
          (request.method == "GET" and request.path.startswith("/ws/"))
    if new and ADMITTED.match(request.path) and not peer_requests.from_peer(request):
        admission: Admission = request.app[ADMISSION]
        refusal = admission.limiter.check(request.remote, _identity(request), time.monotonic())
        if refusal is not None:
            admission.refused[429] += 1
            raise web.HTTPTooManyRequests(text=refusal.reason,
                                          headers={"Retry-After": retry_after(refusal.retry_after_s)})
    return await handler(request)


def setup(app: web.Application, limits: Limits) -> Admission:
    admission = Admission(limits)
    app[ADMISSION] = admission
    app.middlewares.append(admission_middleware)   # after the error middleware: its 429 becomes a text answer
    return admission

