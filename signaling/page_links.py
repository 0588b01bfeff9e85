"""The page links `liveclass serve` prints at start, with tokens minted for `--room` (one process, or the
supervisor of `--workers N`)."""
from __future__ import annotations

import argparse
import os
from typing import Optional
from urllib.parse import quote

from signaling.auth.tokens import mint

PAGE_TOKEN_TTL = 12 * 3600


def public_url(args: argparse.Namespace) -> Optional[str]:
    return args.public_url or os.environ.get("LIVECLASS_PUBLIC_URL") or None


def page_bases(args: argparse.Namespace, tls: bool) -> list[str]:
    """The base URLs pages are reached at: the public URL, or the listen address (for a wildcard, loopback
    first, then every interface address a school's machines may use)."""
    scheme = "https" if tls else "http"
    if public := public_url(args):
        return [public.rstrip("/")]
    def base(host: str) -> str:
        return f"{scheme}://[{host}]:{args.port}" if ":" in host else f"{scheme}://{host}:{args.port}"
    if args.host not in ("0.0.0.0", "::", ""):
        return [base(args.host)]
    from aioice.ice import get_host_addresses
    others = [a for a in get_host_addresses(use_ipv4=True, use_ipv6=args.host == "::") if not a.startswith("fe80")]
    return [base("127.0.0.1"), *(base(a) for a in others)]


def print_pages(args: argparse.Namespace, secret: str, tls: bool = False) -> str:
    """Print the page links of `--room` (tokens minted now); the base URL they use."""
    bases = page_bases(args, tls)
    base = bases[0]
    room = args.room
    teacher = mint(secret, room, "teacher", PAGE_TOKEN_TTL, name="Teacher")
    terminal = mint(secret, room, "terminal", PAGE_TOKEN_TTL, name="Classroom")
    print(f"Teacher page:  {base}/teacher.html?room={quote(room)}&token={teacher}", flush=True)
    print(f"Terminal page: {base}/terminal.html?room={quote(room)}&token={terminal}", flush=True)
    print(f"Lesson library: {base}/replay.html", flush=True)
    admin = mint(secret, "*", "admin", PAGE_TOKEN_TTL, name="Admin")
    print(f"Timetable and reports (admin): {base}/timetable.html?token={admin}", flush=True)
    if len(bases) > 1:
        print("Also reachable at: " + ", ".join(bases[1:]), flush=True)
    if not tls and base.startswith("http://") and not _loopback(args.host):
        print("Note: over plain http, browsers give the camera and microphone only to pages on localhost; "
              "other machines need https (--tls-self-signed, --tls-cert, or a TLS front with --behind-proxy)",
              flush=True)
    return base


def _loopback(host: str) -> bool:
    return host in ("127.0.0.1", "::1", "localhost")
