"""The typed keys of the aiohttp application's state that every package shares (`app[SFU]`,
`request.app[SECRET]`, ...).

aiohttp wants `web.AppKey` instances rather than strings (NotAppKeyWarning), and a key object defined once cannot
drift apart between the module that sets an entry and the ones that read it.

This module sits below every other package of signaling and imports none of them: a key of one package's state
lives next to the module that sets it (`room_ws.HUB`, `library_api.RECORDER`, `cluster_routes.REGISTRY`,
`drain.DRAINER`, ...), typed with that module's own class. A key read by a package the owner itself builds on
is typed with a small Protocol of what those readers call: `LESSON_BUS` here, `cluster_routes.CASCADE` there.
"""
from __future__ import annotations

import ssl
from typing import TYPE_CHECKING, Optional, Protocol

from aiohttp import web

from sfu.node import SfuNode

if TYPE_CHECKING:
    from signaling.http.tls import ServerCertificate


class LessonFollower(Protocol):
    """What an edge node knows of the lessons it relays, from their origins (signaling/cascade/lesson_bus.py)."""

    def was_removed(self, room: str, identity: str) -> bool:
        """Whether the origin's lesson removed `identity` (media_endpoints: the edge refuses it too)."""
        ...

    async def prime(self, room: str) -> None:
        """Read the room's lesson now: its link just opened (cascade/links.py)."""
        ...


SECRET = web.AppKey("secret", str)                  # the token signing secret (app.create_app)
SFU = web.AppKey("sfu", SfuNode)                    # the media plane
# how this node verifies other nodes' https (tls.client_context); None: the system's CAs only
CLIENT_SSL: web.AppKey[Optional[ssl.SSLContext]] = web.AppKey("client_ssl")
TLS: web.AppKey[Optional[ServerCertificate]] = web.AppKey("tls")  # the served certificate; None: plain HTTP
LESSON_BUS: web.AppKey[LessonFollower] = web.AppKey("lesson_bus")  # cluster mode: lesson_bus.setup
