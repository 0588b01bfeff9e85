"""The aiohttp application: WHIP/WHEP, health, metrics, stats and the static classroom pages."""
from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Optional

from aiohttp import web

from sfu.webrtc import aiortc_adapter
from sfu.webrtc.forward_latency import BOUNDS, LatencyHistogram
from sfu.node import SfuNode
from sfu.ladder.track_ladder import DEFAULT_RUNGS

from signaling.http import loop_lag
from signaling.media import media_endpoints
from signaling.live import room_media
from signaling.live import room_ws
from signaling.http.app_keys import CLIENT_SSL, SECRET, SFU, TLS
from signaling.http.http_errors import error_middleware, quiet_bad_requests
from signaling.http import access

if TYPE_CHECKING:
    import ssl

    from signaling.cascade.cascade_policy import CascadeConfig
    from signaling.cluster.placement import ClusterConfig
    from signaling.media.ice_servers import TurnConfig
    from signaling.http.request_limits import Limits
    from signaling.http.tls import ServerCertificate
    from signaling.school.setup import WebhookConfig

CLIENT_WEB = Path(__file__).resolve().parent.parent / "client_web"


async def healthz(request: web.Request) -> web.Response:
    return web.Response(text="ok\n")


def _background_tasks() -> int:
    return sum(1 for t in asyncio.all_tasks()
               if not getattr(t.get_coro(), "__qualname__", "").startswith("RequestHandler."))


def _resident_bytes() -> int:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return -1


async def metrics(request: web.Request) -> web.Response:
    node: SfuNode = request.app[SFU]
    c = node.counts()
    forwarded = node.forwarded_packets()
    try:
        fds = len(os.listdir("/proc/self/fd"))
    except OSError:
        fds = -1
    lines = [
        "# TYPE liveclass_rooms gauge", f"liveclass_rooms {c['room_count']}",
        "# TYPE liveclass_sessions gauge",
        f'liveclass_sessions{{role="publisher"}} {c["publishers"]}',
        f'liveclass_sessions{{role="viewer"}} {c["viewers"]}',
        "# TYPE liveclass_forwarded_packets_total counter", f"liveclass_forwarded_packets_total {forwarded}",
        "# HELP liveclass_asyncio_tasks background tasks, not counting HTTP connection handlers",
        "# TYPE liveclass_asyncio_tasks gauge", f"liveclass_asyncio_tasks {_background_tasks()}",
        "# TYPE liveclass_open_fds gauge", f"liveclass_open_fds {fds}",
        "# HELP liveclass_resident_memory_bytes the process's resident set size",
        "# TYPE liveclass_resident_memory_bytes gauge", f"liveclass_resident_memory_bytes {_resident_bytes()}",
        "# HELP liveclass_peer_connections aiortc peer connections still in memory (closed ones until collected)",
        "# TYPE liveclass_peer_connections gauge",
        f"liveclass_peer_connections {aiortc_adapter.peer_connections_alive()}",
        "# HELP liveclass_heap_reliefs_total collections and heap trims after a burst of closed sessions",
        "# TYPE liveclass_heap_reliefs_total counter", f"liveclass_heap_reliefs_total {node.heap_relief.runs}",
        f"# HELP liveclass_event_loop_lag_seconds the worst lateness of a {loop_lag.INTERVAL_S:g} s sleep over the "
        f"last {loop_lag.WINDOW_S:g} s",
        "# TYPE liveclass_event_loop_lag_seconds gauge",
        f"liveclass_event_loop_lag_seconds {request.app[loop_lag.LOOP_LAG].worst():.4f}",
    ]
    port = node.port.stats() if node.port is not None else {"connections": 0, "unrouted": 0, "rerouted": 0}
    lines += [
        "# HELP liveclass_udp_port_connections ICE connections on the node's one UDP port",
        "# TYPE liveclass_udp_port_connections gauge", f"liveclass_udp_port_connections {port['connections']}",
        "# HELP liveclass_udp_port_unrouted_total datagrams from an address no connection claimed (dropped)",
        "# TYPE liveclass_udp_port_unrouted_total counter", f"liveclass_udp_port_unrouted_total {port['unrouted']}",
        "# HELP liveclass_udp_port_rerouted_total addresses taken over by a peer's new connection",
        "# TYPE liveclass_udp_port_rerouted_total counter", f"liveclass_udp_port_rerouted_total {port['rerouted']}",
    ]
    batch = aiortc_adapter.send_batch()
    lines += [
        "# HELP liveclass_native_send_calls_total native protect-and-sendmmsg calls (0: packets sent from Python)",
        "# TYPE liveclass_native_send_calls_total counter",
        f"liveclass_native_send_calls_total {batch.flushes if batch else 0}",
        "# HELP liveclass_native_sent_packets_total RTP packets protected and sent by the native kernel",
        "# TYPE liveclass_native_sent_packets_total counter",
        f"liveclass_native_sent_packets_total {batch.packets if batch else 0}",
    ]
    lines += forward_latency_lines(aiortc_adapter.forward_latency)
    lines.append("# tasks: " + ", ".join(sorted(getattr(t.get_coro(), "__qualname__", "?") for t in asyncio.all_tasks())))
    return web.Response(text="\n".join(lines) + "\n", content_type="text/plain")


def forward_latency_lines(h: LatencyHistogram) -> list[str]:
    """A Prometheus histogram: receipt of an RTP packet to its last copy sent (sfu/webrtc/forward_latency.py)."""
    name = "liveclass_forward_latency_seconds"
    lines = [f"# HELP {name} an RTP packet's arrival on the node's socket to every viewer's copy sent "
             "(copies a pacer holds back excepted)", f"# TYPE {name} histogram"]
    cumulative = 0
    for bound, n in zip(BOUNDS, h.counts):
        cumulative += n
        lines.append(f'{name}_bucket{{le="{bound:.6g}"}} {cumulative}')
    lines += [f'{name}_bucket{{le="+Inf"}} {h.total}', f"{name}_sum {h.sum_s:.6f}", f"{name}_count {h.total}"]
    return lines


async def stats(request: web.Request) -> web.Response:
    """Per-room, per-viewer media state for operators (admin token, or any token of that room)."""
    room = request.query.get("room")
    access.admin_or_room_grant(request, room, "stats")
    return web.json_response(request.app[SFU].dump(room))


async def index(request: web.Request) -> web.StreamResponse:
    raise web.HTTPFound("/terminal.html" + (f"?{request.query_string}" if request.query_string else ""))


def create_app(secret: str, media_hosts: Optional[Iterable[str]] = None, public_ip: Optional[str] = None,
               node: Optional[SfuNode] = None, library: Optional[str] = None,
               record_rooms: Iterable[str] = (), ladder: bool = True,
               cluster: Optional["ClusterConfig"] = None, turn: Optional["TurnConfig"] = None,
               drain_grace_s: Optional[float] = None, cascade: Optional["CascadeConfig"] = None,
               tls: Optional["ServerCertificate"] = None, client_ssl: Optional["ssl.SSLContext"] = None,
               behind_proxy: bool = False, limits: Optional["Limits"] = None,
               udp_port: Optional[int] = 0, webhooks: Optional["WebhookConfig"] = None) -> web.Application:
    app = web.Application(middlewares=[error_middleware], client_max_size=media_endpoints.MAX_SDP_BYTES)
    quiet_bad_requests()   # unparsable requests get their 400 from aiohttp: one log line each, not a traceback
    app[SECRET] = secret
    app[TLS] = tls                # served by web.run_app(ssl_context=tls.context); SIGHUP reloads it
    app[CLIENT_SSL] = client_ssl  # requests to other nodes (proxying, cascade links)
    if tls is not None:
        from signaling.http import tls as tls_reload
        tls_reload.setup(app, tls, client_ssl)
    if behind_proxy:  # X-Forwarded-Proto/-For of a TLS front
        from signaling.http import forwarded
        forwarded.setup(app)
    from signaling.http import admission  # 429 for clients asking too fast, 503 when full, a cap on one identity's sessions
    from signaling.http.request_limits import Limits
    admission.setup(app, limits or Limits())
    app[SFU] = node or SfuNode(media_hosts, public_ip, DEFAULT_RUNGS if ladder else (), udp_port=udp_port)

    async def open_media_port(app: web.Application) -> None:
        try:
            ports = await app[SFU].open_ports()
        except OSError as exc:
            raise SystemExit(f"liveclass serve: cannot open the media UDP port {udp_port}: {exc.strerror or exc} (in "
                             "use by another node on this machine? --udp-port N picks another, 0 a free one)") from None
        if ports:   # what a firewall must let through: one port, not a range
            print("Media on UDP " + ", ".join(f"{h}:{p}" for h, p in ports.items()), flush=True)
        native = aiortc_adapter.send_batch() is not None
        print("Forwarding kernel: " + ("native (libsrtp and sendmmsg in one call per packet)" if native else
                                       "Python (native kernel not built, or LIVECLASS_NATIVE=0)"), flush=True)
        small = app[SFU].port.small_buffers() if app[SFU].port is not None else []
        if small:   # every classroom's packets pass this one socket: a small buffer drops them in a loop stall
            print("Warning: the media socket's buffers are small (" + "; ".join(small) + "): raise the system's "
                  "limits, e.g. sysctl -w net.core.rmem_max=4194304 net.core.wmem_max=4194304", flush=True)

    app.on_startup.append(open_media_port)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics)
    loop_lag.setup(app)  # the event loop's lag, for /metrics
    app.router.add_get("/api/stats", stats)
    media_endpoints.add_routes(app)
    hub = room_ws.setup(app)  # /ws/{room} and the lesson state at app[room_ws.HUB]
    room_media.setup(app)  # the lesson drives the SFU: stage, microphones, lesson end, removals
    if library is not None:  # the recorder at app[library_api.RECORDER], /api/library, /api/rooms/{room}/recording
        from signaling.media import library_api
        library_api.setup(app, library, auto_rooms=record_rooms, node_id=cluster.node_id if cluster else "")
        from signaling.school import setup as school  # timetable, attendance and reports, webhooks
        school.setup(app, node_id=cluster.node_id if cluster else "", webhooks=webhooks)
    registry = None
    if cluster is not None:  # Redis node registry + room placement, 307/proxy to a room's node
        from signaling.cluster import cluster_routes
        registry = cluster_routes.setup(app, cluster)
        from signaling.cascade import links as cascade_routes
        from signaling.cascade import lesson_bus  # edge nodes: SFU-to-SFU links, lesson facts by pub/sub
        from signaling.cascade.cascade_policy import CascadeConfig
        cascade_routes.setup(app, registry, cascade or CascadeConfig())
        lesson_bus.setup(app, registry)
        from signaling.cluster import room_store  # the lesson's state in Redis: a node taking a room over restores it
        room_store.setup(app, hub, registry)
    from signaling.cluster import drain  # POST /api/admin/drain; in cluster mode SIGTERM drains
    drain.setup(app, registry, drain.DEFAULT_GRACE_S if drain_grace_s is None else drain_grace_s)
    from signaling.media import ice_servers  # /api/ice-servers: TURN REST credentials, an empty list without TURN
    ice_servers.setup(app, turn)
    from signaling.cluster import cluster_nodes  # /api/cluster/nodes: where pages go when their own node dies
    cluster_nodes.setup(app)
    app.router.add_get("/", index)
    app.router.add_static("/", CLIENT_WEB, show_index=False)

    async def shutdown(app: web.Application) -> None:
        await app[SFU].close()

    app.on_shutdown.append(shutdown)
    return app
