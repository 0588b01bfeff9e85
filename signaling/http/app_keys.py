"""The typed keys of the aiohttp application's shared state (`app[SFU]`, `request.app[SECRET]`, ...).

One place for them all: aiohttp wants `web.AppKey` instances rather than strings (NotAppKeyWarning), and a key
object defined once cannot drift apart between the module that sets an entry and the ones that read it.

The modules that own the stored objects (room_media, lesson_bus, cascade, drain, ...) import this module, so
their types are named for type checkers only (TYPE_CHECKING): importing them here would be an import cycle.
The recorder's type is named the same way, so that the recorder's modules stay unimported without a library.
"""
from __future__ import annotations

import ssl
from typing import TYPE_CHECKING, Optional

import aiohttp
from aiohttp import web

from sfu.node import SfuNode

from signaling.live.room_hub import RoomHub

if TYPE_CHECKING:
    from recorder.service import Recorder

    from signaling.http.admission import Admission
    from signaling.cascade.links import Cascade
    from signaling.cluster.cluster_nodes import NodeCache
    from signaling.cluster.cluster_registry import Registry
    from signaling.cluster.drain import Drainer
    from signaling.media.ice_servers import TurnConfig
    from signaling.http.tls import ServerCertificate
    from signaling.cascade.lesson_bus import LessonBus
    from signaling.live.room_media import LessonMediaBridge
    from signaling.cluster.room_store import RoomStore

SECRET = web.AppKey("secret", str)                  # the token signing secret (app.create_app)
SFU = web.AppKey("sfu", SfuNode)                    # the media plane
HUB = web.AppKey("rooms_ws", RoomHub)               # the room WebSocket's lesson state (room_ws.setup)
LESSON_MEDIA: web.AppKey[LessonMediaBridge] = web.AppKey("lesson_media")  # room_media.setup
# the recorder (library_api.setup; optional): the hub looks it up at each use, so it may be set after room_ws.setup
RECORDER: web.AppKey[Recorder] = web.AppKey("recorder")
TURN: web.AppKey[Optional[TurnConfig]] = web.AppKey("turn")  # ice_servers.setup: None without TURN
DRAINER: web.AppKey[Drainer] = web.AppKey("drainer")          # drain.setup
NODES_CACHE: web.AppKey[NodeCache] = web.AppKey("cluster_nodes_cache")  # cluster_nodes.setup
ADMISSION: web.AppKey[Admission] = web.AppKey("admission")    # admission.setup: rates, capacity, session caps
# how this node verifies other nodes' https (tls.client_context); None: the system's CAs only
CLIENT_SSL: web.AppKey[Optional[ssl.SSLContext]] = web.AppKey("client_ssl")
TLS: web.AppKey[Optional[ServerCertificate]] = web.AppKey("tls")  # the served certificate; None: plain HTTP

# cluster mode only (--redis)
REGISTRY: web.AppKey[Registry] = web.AppKey("cluster")       # cluster_routes.setup
CLUSTER_HTTP = web.AppKey("cluster_http", aiohttp.ClientSession)  # cluster_routes: set at startup, for proxying
# the proxied room sockets of this node, closed (1001) at shutdown (cluster_routes)
CLUSTER_WS: web.AppKey[set[web.WebSocketResponse]] = web.AppKey("cluster_ws")
CASCADE: web.AppKey[Cascade] = web.AppKey("cascade")         # cascade.setup
LESSON_BUS: web.AppKey[LessonBus] = web.AppKey("lesson_bus")  # lesson_bus.setup
ROOM_STORE: web.AppKey[RoomStore] = web.AppKey("room_store")  # room_store.setup
