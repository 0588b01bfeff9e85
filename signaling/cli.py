"""The `liveclass` command: `serve` runs the whole system, `token` mints access tokens."""
from __future__ import annotations

import argparse
import logging
import sys
from urllib.parse import quote

from aiohttp import web

from .tokens import ROLES, mint, new_secret, secret_from_env

PAGE_TOKEN_TTL = 12 * 3600


def _serve(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("aioice", "aiortc", "aiohttp.access"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    secret = args.secret or secret_from_env()
    if not secret:
        secret = new_secret()
        print(f"No --secret or LIVECLASS_SECRET given: generated one for this run: {secret}", flush=True)
    if args.workers is not None and args.worker_port is None:  # the supervisor of N worker processes (issue 6)
        from .workers import supervise
        return supervise(args, secret)
    from .app import create_app  # imports aiortc: keep `liveclass token` (and the supervisor) light
    try:  # cluster mode (issue 6): Redis node registry and room placement; TURN REST credentials
        cluster = cluster_config(args)
        cascade = cascade_config(args) if cluster is not None else None
        from .ice_servers import config_from_options as turn_config
        turn = turn_config(args.turn_url, args.turn_secret)
    except ValueError as exc:
        print(f"liveclass serve: {exc}", file=sys.stderr)
        return 2
    app = create_app(secret, args.media_host or None, args.public_ip, library=args.library,
                     record_rooms=args.record or (), ladder=not args.no_ladder, cluster=cluster, turn=turn,
                     drain_grace_s=args.drain_grace, cascade=cascade)
    if args.worker_port is not None:  # one of `--workers N`: the shared public port and its own port
        from .workers import run_worker
        return run_worker(app, args.host, args.port, args.worker_port)
    base = print_pages(args, secret)
    web.run_app(app, host=args.host, port=args.port, print=lambda *a: print(f"Serving on {base}", flush=True),
                access_log=None)
    return 0


def print_pages(args: argparse.Namespace, secret: str) -> str:
    """Print the page links of `--room` (tokens minted now); the base URL they use."""
    host_for_url = "127.0.0.1" if args.host in ("0.0.0.0", "::") else args.host
    base = f"http://{host_for_url}:{args.port}"
    room = args.room
    teacher = mint(secret, room, "teacher", PAGE_TOKEN_TTL, name="Teacher")
    terminal = mint(secret, room, "terminal", PAGE_TOKEN_TTL, name="Classroom")
    print(f"Teacher page:  {base}/teacher.html?room={quote(room)}&token={teacher}", flush=True)
    print(f"Terminal page: {base}/terminal.html?room={quote(room)}&token={terminal}", flush=True)
    print(f"Lesson library: {base}/replay.html", flush=True)
    return base


def cluster_config(args: argparse.Namespace):
    import os
    import socket

    from .cluster import config_from_options
    env = os.environ.get
    if cluster := config_from_options(args.redis or env("LIVECLASS_REDIS_URL"),
                                      args.node_id or env("LIVECLASS_NODE_ID"),
                                      args.advertise_url or env("LIVECLASS_ADVERTISE_URL"),
                                      args.cluster_forward or env("LIVECLASS_CLUSTER_FORWARD"),
                                      args.host, args.port, socket.gethostname(), args.room_release):
        print(f"Cluster node {cluster.node_id} at {cluster.advertise_url}, Redis {cluster.redis_url}", flush=True)
    return cluster


def cascade_config(args: argparse.Namespace):
    """--region / --max-viewers (or LIVECLASS_REGION / LIVECLASS_MAX_VIEWERS): viewer routing to edge nodes."""
    import os

    from .cascade_policy import CascadeConfig
    env = os.environ.get
    return CascadeConfig.build(args.region or env("LIVECLASS_REGION"),
                               args.max_viewers if args.max_viewers is not None else env("LIVECLASS_MAX_VIEWERS"))


def _token(args: argparse.Namespace) -> int:
    secret = args.secret or secret_from_env()
    if not secret:
        print("liveclass token: set LIVECLASS_SECRET (or --secret) to the server's secret", file=sys.stderr)
        return 2
    try:
        sources = None if args.sources is None else [x.strip() for x in args.sources.split(",") if x.strip()]
        print(mint(secret, args.room, args.role, args.ttl, name=args.name or "", identity=args.identity or "",
                   sources=sources, can_publish=False if args.no_publish else None,
                   can_subscribe=False if args.no_subscribe else None))
    except ValueError as exc:
        print(f"liveclass token: {exc}", file=sys.stderr)
        return 2
    return 0


def _workers(value: str) -> int:
    try:
        n = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--workers takes a number of processes, not {value!r}") from None
    if not 0 <= n <= 256:
        raise argparse.ArgumentTypeError("--workers must be between 1 and 256 (0: one per core)")
    return n


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="liveclass", description="Live remote classroom server")
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("serve", help="run signaling, SFU and pages in one process")
    s.add_argument("--host", default="127.0.0.1", help="HTTP listen address (default 127.0.0.1)")
    s.add_argument("--port", type=int, default=8080, help="HTTP port (default 8080)")
    s.add_argument("--media-host", action="append", metavar="ADDR",
                   help="address to offer media on (repeatable; 127.0.0.1 allowed; default: every interface)")
    s.add_argument("--public-ip", help="address announced in ICE candidates (server behind 1:1 NAT)")
    s.add_argument("--secret", help="token signing secret (default: LIVECLASS_SECRET, else generated)")
    s.add_argument("--room", default="demo", help="room named in the printed page URLs (default demo)")
    s.add_argument("--library", default="library", metavar="DIR",
                   help="folder of the recorded lessons and their catalogue (default ./library)")
    s.add_argument("--record", action="append", metavar="ROOM",
                   help="record this room's lessons automatically, lesson_start to lesson_end (repeatable; '*': all)")
    s.add_argument("--no-ladder", action="store_true",
                   help="make no lower layers for single-layer publishers (saves a decode + encodes per room)")
    s.add_argument("--redis", metavar="URL",
                   help="cluster mode: Redis URL of the node registry and room placement (default: LIVECLASS_REDIS_URL)")
    s.add_argument("--node-id", help="cluster node id (default: LIVECLASS_NODE_ID, else <hostname>-<port>)")
    s.add_argument("--advertise-url", metavar="URL",
                   help="base URL other nodes and clients reach this node at (default: LIVECLASS_ADVERTISE_URL, "
                        "else http://<host>:<port>)")
    s.add_argument("--cluster-forward", choices=("redirect", "proxy"),
                   help="a WHIP/WHEP request for a room on another node: 307 redirect (default) or proxy "
                        "(the room WebSocket is proxied either way)")
    s.add_argument("--turn-url", action="append", metavar="URL",
                   help="TURN server handed to pages by /api/ice-servers, e.g. turn:host:3478 (repeatable; "
                        "default: LIVECLASS_TURN_URL, comma-separated)")
    s.add_argument("--turn-secret", help="TURN REST shared secret (coturn static-auth-secret; default: "
                                         "LIVECLASS_TURN_SECRET)")
    s.add_argument("--workers", nargs="?", type=_workers, const=0, metavar="N",
                   help="run N media processes on this machine (no N or 0: one per core), coordinated through "
                        "--redis, else through a private redis-server started for them; rooms spread over them")
    s.add_argument("--drain-grace", type=float, metavar="SECONDS",
                   help="cluster mode: on SIGTERM or POST /api/admin/drain, how long running lessons may go on "
                        "before the node leaves anyway (default 30)")
    s.add_argument("--room-release", type=float, default=30.0, metavar="SECONDS",
                   help="cluster mode: an empty room keeps its node this long, then its next lesson is placed by "
                        "load again (default 30)")
    s.add_argument("--region", help="cluster mode: this node's region (default: LIVECLASS_REGION, else 'default'); "
                                    "a viewer reaching a node of another region than the room's is served there, "
                                    "relayed from the room's node")
    s.add_argument("--max-viewers", type=int, metavar="N",
                   help="cluster mode: viewer sessions this node takes at most, then viewers go to an edge node "
                        "that relays the room (default: LIVECLASS_MAX_VIEWERS, else 0: no limit)")
    s.add_argument("--worker-port", type=int, help=argparse.SUPPRESS)  # set by the --workers supervisor
    s.add_argument("-v", "--verbose", action="store_true")
    s.set_defaults(func=_serve)
    t = sub.add_parser("token", help="print an access token (JWT) signed with LIVECLASS_SECRET")
    t.add_argument("--room", required=True, help="room name; '*' (admin only) for every room")
    t.add_argument("--role", required=True, choices=ROLES)
    t.add_argument("--ttl", type=int, default=3600, help="lifetime in seconds (default 3600)")
    t.add_argument("--name", help="display name")
    t.add_argument("--identity", help="participant identity (sub); default: generated")
    t.add_argument("--secret", help="signing secret (default: LIVECLASS_SECRET)")
    # grants narrower than the role's defaults (issue 4); the role's own limits are never widened
    t.add_argument("--sources", metavar="LIST",
                   help="comma-separated sources it may publish: camera,microphone,screen (default: the role's; '' for none)")
    t.add_argument("--no-publish", action="store_true", help="may not publish at all")
    t.add_argument("--no-subscribe", action="store_true", help="may not play media")
    t.set_defaults(func=_token)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # the --workers supervisor passes them on
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
