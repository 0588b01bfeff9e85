"""The `liveclass` command: `serve` runs the whole system, `token` mints access tokens."""
from __future__ import annotations

import argparse
import logging
import sys

from aiohttp import web

from signaling.auth.tokens import ROLES, mint, new_secret, secret_from_env
from signaling.page_links import print_pages, public_url

DEFAULT_UDP_PORT = 7881   # as LiveKit's: one port a school or data-centre firewall opens for media


def _serve(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("aioice", "aiortc", "aiohttp.access"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    secret = args.secret or secret_from_env()
    if not secret:
        secret = new_secret()
        print(f"No --secret or LIVECLASS_SECRET given: generated one for this run: {secret}", flush=True)
    from signaling.http.tls import TlsConfigError
    try:
        tls = tls_options(args)
        client_ssl = node_client_ssl(args, tls)
    except TlsConfigError as exc:
        print(f"liveclass serve: {exc}", file=sys.stderr)
        return 2
    if args.workers is not None and args.worker_port is None:  # the supervisor of N worker processes
        from signaling.cluster.workers import supervise
        return supervise(args, secret, tls is not None)
    from signaling.app import create_app  # imports aiortc: keep `liveclass token` (and the supervisor) light
    try:  # cluster mode: Redis node registry and room placement; TURN REST credentials
        from signaling.http.request_limits import Limits
        limits = Limits.build(args.rate_per_address, args.rate_per_identity, args.max_sessions_per_source,
                              args.max_room_sessions, args.max_node_sessions)
        cluster = cluster_config(args, tls is not None)
        cascade = cascade_config(args) if cluster is not None else None
        from signaling.media.ice_servers import config_from_options as turn_config
        turn = turn_config(args.turn_url, args.turn_secret)
    except ValueError as exc:
        print(f"liveclass serve: {exc}", file=sys.stderr)
        return 2
    try:
        webhooks = webhook_config(args)
    except ValueError as exc:
        print(f"liveclass serve: {exc}", file=sys.stderr)
        return 2
    app = create_app(secret, args.media_host or None, args.public_ip, library=args.library,
                     record_rooms=args.record or (), ladder=not args.no_ladder, cluster=cluster, turn=turn,
                     drain_grace_s=args.drain_grace, cascade=cascade, tls=tls, client_ssl=client_ssl,
                     behind_proxy=behind_proxy(args), limits=limits,
                     udp_port=None if args.udp_port_per_peer else args.udp_port, webhooks=webhooks)
    ssl_context = tls.context if tls is not None else None
    if args.worker_port is not None:  # one of `--workers N`: the shared public port and its own port
        from signaling.cluster.workers import run_worker
        return run_worker(app, args.host, args.port, args.worker_port, ssl_context)
    base = print_pages(args, secret, tls is not None)
    web.run_app(app, host=args.host, port=args.port, print=lambda *a: print(f"Serving on {base}", flush=True),
                access_log=None, ssl_context=ssl_context)
    return 0


def webhook_config(args: argparse.Namespace):
    """--webhook URL... and the signing secret (--webhook-secret, LIVECLASS_WEBHOOK_SECRET, else generated and
    printed: one process only, the workers of --workers must share one); None without webhooks."""
    import os
    from urllib.parse import urlsplit

    from signaling.school.setup import WebhookConfig
    from signaling.school.webhooks import secret_from
    if not args.webhook:
        return None
    for url in args.webhook:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"--webhook takes an http(s) URL, not {url!r}")
    secret, generated = secret_from(args.webhook_secret, os.environ.get("LIVECLASS_WEBHOOK_SECRET"))
    if generated:
        if args.worker_port is not None:
            raise ValueError("--webhook with --workers needs --webhook-secret (or LIVECLASS_WEBHOOK_SECRET)")
        print(f"No --webhook-secret or LIVECLASS_WEBHOOK_SECRET given: webhooks are signed with {secret}", flush=True)
    return WebhookConfig(tuple(args.webhook), secret)


def _env_flag(name: str) -> bool:
    import os
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


def behind_proxy(args: argparse.Namespace) -> bool:
    return bool(args.behind_proxy or _env_flag("LIVECLASS_BEHIND_PROXY"))


def tls_options(args: argparse.Namespace):
    """--tls-cert/--tls-key (or LIVECLASS_TLS_CERT/_KEY), or --tls-self-signed: the served certificate, checked
    now (a bad file stops the start with a reason); None for plain HTTP. Prints what a school's IT checks."""
    import os
    from pathlib import Path

    from signaling.http import self_signed
    from signaling.http.tls import ServerCertificate, TlsConfigError, utc_now
    cert = args.tls_cert or os.environ.get("LIVECLASS_TLS_CERT")
    key = args.tls_key or os.environ.get("LIVECLASS_TLS_KEY")
    self_sign = args.tls_self_signed or _env_flag("LIVECLASS_TLS_SELF_SIGNED")
    if key and not cert:
        raise TlsConfigError("--tls-key needs --tls-cert (or LIVECLASS_TLS_CERT)")
    if self_sign and cert:
        raise TlsConfigError("--tls-self-signed makes its own certificate: leave out --tls-cert/--tls-key")
    if not cert and not self_sign:
        return None
    if self_sign:
        from urllib.parse import urlsplit
        extra = [args.public_ip, *(args.media_host or ())]
        for url in (args.advertise_url or os.environ.get("LIVECLASS_ADVERTISE_URL"), public_url(args)):
            if url:
                extra.append(urlsplit(url).hostname)
        names = self_signed.node_names(args.host, extra)
        paths, why = self_signed.ensure(Path(args.library), names, utc_now())
        cert, key = str(paths.cert), str(paths.key)
        if args.worker_port is None:
            print(f"TLS: self-signed certificate {paths.cert} "
                  f"({'made now: ' + why if why else 'kept from an earlier start'})", flush=True)
    served = ServerCertificate(Path(cert), Path(key) if key else None)
    if served.expires_in_days(utc_now()) < 0:
        raise TlsConfigError(f"the certificate {cert} expired on {served.info.not_after:%Y-%m-%d}")
    if args.worker_port is None:  # the supervisor (or a single process) says it once
        print(f"TLS: {served.info.summary()}", flush=True)
        print(f"TLS: public key SHA-256 (base64, for an SPKI pin): {served.info.spki_sha256_b64}", flush=True)
    return served


def node_client_ssl(args: argparse.Namespace, tls):
    """How this node verifies other nodes' https: the system's CAs, --tls-ca files, its own certificate."""
    import os
    from pathlib import Path

    from signaling.http.tls import client_context
    env_ca = os.environ.get("LIVECLASS_TLS_CA")
    cas = args.tls_ca or ([x for x in env_ca.split(",") if x.strip()] if env_ca else [])
    if not cas and tls is None:
        return None
    return client_context([Path(c.strip()) for c in cas], tls.cert_path if tls is not None else None)


def cluster_config(args: argparse.Namespace, tls: bool = False):
    import os
    import socket

    from signaling.cluster.placement import config_from_options
    env = os.environ.get
    if cluster := config_from_options(args.redis or env("LIVECLASS_REDIS_URL"),
                                      args.node_id or env("LIVECLASS_NODE_ID"),
                                      args.advertise_url or env("LIVECLASS_ADVERTISE_URL"),
                                      args.cluster_forward or env("LIVECLASS_CLUSTER_FORWARD"),
                                      args.host, args.port, socket.gethostname(), args.room_release,
                                      "https" if tls else "http", public_url(args)):
        print(f"Cluster node {cluster.node_id} at {cluster.advertise_url}, Redis {cluster.redis_url}", flush=True)
    return cluster


def cascade_config(args: argparse.Namespace):
    """--region / --max-viewers / --spread-viewers (or LIVECLASS_REGION / LIVECLASS_MAX_VIEWERS /
    LIVECLASS_SPREAD_VIEWERS=1): viewer routing to edge nodes."""
    import os

    from signaling.cascade.cascade_policy import CascadeConfig
    env = os.environ.get
    spread = args.spread_viewers if args.spread_viewers is not None else env("LIVECLASS_SPREAD_VIEWERS") == "1"
    return CascadeConfig.build(args.region or env("LIVECLASS_REGION"),
                               args.max_viewers if args.max_viewers is not None else env("LIVECLASS_MAX_VIEWERS"),
                               spread)


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
    s.add_argument("--webhook", action="append", metavar="URL",
                   help="POST lesson_started, lesson_ended (with its attendance report), recording_ready, "
                        "classroom_joined and classroom_left to this URL as JSON (repeatable), retried with back-off")
    s.add_argument("--webhook-secret", metavar="S",
                   help="HMAC-SHA256 key of the webhooks' X-Liveclass-Signature: sha256=<hex> (default: "
                        "LIVECLASS_WEBHOOK_SECRET, else generated and printed)")
    s.add_argument("--no-ladder", action="store_true",
                   help="make no lower layers for single-layer publishers (saves a decode + encodes per room)")
    s.add_argument("--redis", metavar="URL",
                   help="cluster mode: Redis URL of the node registry and room placement (default: LIVECLASS_REDIS_URL)")
    s.add_argument("--node-id", help="cluster node id (default: LIVECLASS_NODE_ID, else <hostname>-<port>)")
    s.add_argument("--advertise-url", metavar="URL",
                   help="base URL other nodes and clients reach this node at (default: LIVECLASS_ADVERTISE_URL, "
                        "else http(s)://<host>:<port>)")
    s.add_argument("--public-url", metavar="URL",
                   help="base URL clients reach this node at when it differs from --advertise-url, e.g. the "
                        "https front every node sits behind (default: LIVECLASS_PUBLIC_URL, else the advertise URL)")
    s.add_argument("--cluster-forward", choices=("proxy", "redirect"),
                   help="a WHIP/WHEP request for a room on another node: proxied (default; works with every "
                        "client) or a 307 redirect (only for clients that send their token again after a redirect "
                        "to another origin; browsers, aiohttp and curl do not). The room WebSocket is proxied "
                        "either way")
    s.add_argument("--tls-cert", metavar="FILE",
                   help="serve https and wss with this PEM certificate (a chain allowed; the key may follow in the "
                        "same file); SIGHUP reloads it (default: LIVECLASS_TLS_CERT)")
    s.add_argument("--tls-key", metavar="FILE", help="its PEM private key (default: LIVECLASS_TLS_KEY)")
    s.add_argument("--tls-self-signed", action="store_true",
                   help="serve https with a self-signed certificate for this machine's names and addresses, made "
                        "once and kept in <library>/tls (quick LAN start; its fingerprint is printed)")
    s.add_argument("--tls-ca", action="append", metavar="FILE",
                   help="cluster mode: also trust this CA bundle for other nodes' https (repeatable; default: "
                        "LIVECLASS_TLS_CA, comma-separated). The system's CAs and this node's own certificate are "
                        "trusted anyway")
    s.add_argument("--behind-proxy", action="store_true",
                   help="a TLS front (Caddy, nginx) forwards to this node: take the scheme and client address from "
                        "X-Forwarded-Proto/-For (default: LIVECLASS_BEHIND_PROXY=1)")
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
    s.add_argument("--spread-viewers", action=argparse.BooleanOptionalAction, default=None,
                   help="cluster mode: spread one room's viewers over this region's nodes by load, each relaying "
                        "the room from its origin, so one big lesson uses every node (default: on for --workers, "
                        "else LIVECLASS_SPREAD_VIEWERS=1)")
    s.add_argument("--rate-per-address", type=float, metavar="N",
                   help="new WHIP/WHEP sessions and room sockets a second from one client address (default 20, "
                        "bursts of 200: a school's classrooms share one address); beyond: 429 with Retry-After")
    s.add_argument("--rate-per-identity", type=float, metavar="N",
                   help="the same for one identity (a token's sub; default 2 a second, bursts of 12)")
    s.add_argument("--max-sessions-per-source", type=int, metavar="N",
                   help="playback sessions one identity holds of one source (default 2: a reloaded page's new "
                        "session overlaps the old one); a newer one closes the oldest")
    s.add_argument("--max-room-sessions", type=int, metavar="N",
                   help="sessions one room holds (default 0: as many as the node); beyond: 503")
    s.add_argument("--max-node-sessions", type=int, metavar="N",
                   help="sessions this node holds (default 0: what its open-file limit allows, (nofile - 128) / 2); "
                        "beyond: 503")
    s.add_argument("--udp-port", type=int, default=DEFAULT_UDP_PORT, metavar="N",
                   help=f"the one UDP port every peer connection of this node shares (default {DEFAULT_UDP_PORT}; "
                        "0: a free port; with --workers, worker i uses N+i)")
    s.add_argument("--udp-port-per-peer", action="store_true",
                   help="a UDP port per peer connection instead (a range of ephemeral ports to open)")
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
    # grants narrower than the role's defaults; the role's own limits are never widened
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
