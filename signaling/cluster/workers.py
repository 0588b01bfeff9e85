"""`liveclass serve --workers N`: N media processes on one machine, one core each.

One asyncio process uses one core, so a machine runs N worker processes, and each is a full cluster node: its
own node id (`<base>-w<i>`), its own SFU and UDP ports, its own HTTP port (`--port` + 1 + i, its advertise URL:
the other nodes forward requests for its rooms there). All of them also accept on the public `--port`
(SO_REUSEPORT: the kernel spreads connections over them), so whichever worker a request lands on places the
room by load and forwards the request to the room's worker: proxied by default, since browsers drop the
Authorization header when they follow a redirect to another origin (another port is another origin).

They coordinate through Redis exactly like separate machines: `--redis` when given (the workers of several
machines then form one cluster), else a private `redis-server` this supervisor starts on a unix socket in a
private directory and stops at the end. We start one rather than refuse because `--workers` on a single machine
should just work, and nothing but these workers ever sees that Redis; without the redis-server program the
command says what to install or pass instead.

The supervisor restarts a worker that exits (after 0.5 s, doubling up to 30 s while it keeps failing within
30 s of its start), forwards SIGTERM (drain: each worker lets its lessons finish, see drain.py) and SIGINT
(stop now) to every worker, waits for them and exits. A worker that finished draining because an operator asked
(`POST /api/admin/drain` on its own port) is replaced by a fresh one: a rolling restart.
"""
from __future__ import annotations

import argparse
import ctypes
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional
from urllib.parse import urlsplit

from aiohttp import web
from signaling.cluster.processes import stop_process
from signaling.page_links import print_pages

REPO = Path(__file__).resolve().parents[2]
POLL_S = 0.2
FIRST_RESTART_S = 0.5
MAX_RESTART_S = 30.0
STABLE_AFTER_S = 30.0            # a worker that ran this long starts again with the shortest back-off
STOP_MARGIN_S = 15.0             # after the drain grace (SIGTERM) or at once (SIGINT): then SIGKILL
REDIS_START_TIMEOUT_S = 10.0
USAGE_ERROR = 2                  # what `liveclass serve` exits with on bad options: not worth restarting
PR_SET_PDEATHSIG = 1


def worker_count(requested: int) -> int:
    """0 means one worker per core this process may run on."""
    if requested > 0:
        return requested
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:
        return max(1, os.cpu_count() or 1)


def _die_with_parent() -> None:
    """In the child before exec: SIGTERM when the supervisor dies, even by kill -9 (no orphaned workers)."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        pass


class PrivateRedis:
    """A redis-server for this machine's workers only: a unix socket in a 0700 directory, no TCP, no persistence
    (the workers re-register within a heartbeat if it is restarted)."""

    def __init__(self, binary: str) -> None:
        self.binary = binary
        self.dir = Path(tempfile.mkdtemp(prefix="liveclass-redis-"))
        os.chmod(self.dir, 0o700)
        self.socket = self.dir / "redis.sock"
        self.url = f"unix://{self.socket}?db=0"
        self.proc: Optional[subprocess.Popen] = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [self.binary, "--port", "0", "--unixsocket", str(self.socket), "--unixsocketperm", "700",
             "--save", "", "--appendonly", "no", "--dir", str(self.dir), "--logfile", str(self.dir / "redis.log")],
            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, preexec_fn=_die_with_parent)
        deadline = time.monotonic() + REDIS_START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"redis-server exited with {self.proc.returncode}: {self.log_tail()}")
            if self._ping():
                return
            time.sleep(0.05)
        raise RuntimeError(f"redis-server did not answer on {self.socket}: {self.log_tail()}")

    def _ping(self) -> bool:
        try:
            with socket.socket(socket.AF_UNIX) as s:
                s.settimeout(0.5)
                s.connect(str(self.socket))
                s.sendall(b"PING\r\n")
                return s.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def exited(self) -> bool:
        return self.proc is None or self.proc.poll() is not None

    def stop(self) -> None:
        stop_process(self.proc)
        shutil.rmtree(self.dir, ignore_errors=True)

    def log_tail(self, n: int = 1000) -> str:
        log = self.dir / "redis.log"
        return log.read_bytes()[-n:].decode(errors="replace") if log.exists() else ""


@dataclass
class Worker:
    index: int
    node_id: str
    port: int
    argv: list[str]
    proc: Optional[subprocess.Popen] = None
    started_at: float = 0.0
    starts: int = 0
    failures: int = 0              # exits in a row within STABLE_AFTER_S of starting
    restart_at: float = 0.0
    exits: list[int] = field(default_factory=list)


def _advertise(args: argparse.Namespace, port: int, scheme: str = "http") -> str:
    """The worker's own base URL: the configured advertise URL's scheme and host with the worker's port
    (https when the workers serve TLS)."""
    configured = args.advertise_url or os.environ.get("LIVECLASS_ADVERTISE_URL")
    if configured:
        parts = urlsplit(configured)
        host = parts.hostname or "127.0.0.1"
        host = f"[{host}]" if ":" in host else host
        return f"{parts.scheme or scheme}://{host}:{port}"
    shown = "127.0.0.1" if args.host in ("0.0.0.0", "::", "") else args.host
    return f"{scheme}://[{shown}]:{port}" if ":" in shown else f"{scheme}://{shown}:{port}"


def plan_workers(args: argparse.Namespace, n: int, redis_url: str, tls: bool = False) -> list[Worker]:
    """Each worker's command line: the supervisor's own options, then the worker's node id, ports and Redis
    (later options win in argparse). One lesson's viewers spread over the workers unless --no-spread-viewers."""
    base = args.node_id or os.environ.get("LIVECLASS_NODE_ID") or f"{socket.gethostname()}-{args.port}"
    base = "".join(c if c.isalnum() or c in "._-" else "-" for c in base)[:56]
    forward = args.cluster_forward or os.environ.get("LIVECLASS_CLUSTER_FORWARD") or "proxy"
    workers = []
    for i in range(n):
        port = args.port + 1 + i
        node_id = f"{base}-w{i}"
        argv = [sys.executable, "-m", "signaling.cli", *args.argv, "--redis", redis_url, "--node-id", node_id,
                "--advertise-url", _advertise(args, port, "https" if tls else "http"), "--cluster-forward", forward,
                "--worker-port", str(port), "--udp-port", str(args.udp_port + i if args.udp_port else 0),
                *(() if args.spread_viewers is False else ("--spread-viewers",))]
        workers.append(Worker(i, node_id, port, argv))
    return workers


def check_ports(host: str, public: int, workers: list[Worker]) -> Optional[str]:
    """Why the ports cannot be used, or None: refused before any worker starts, with a reason."""
    def bind(port: int, reuse_port: bool) -> Optional[str]:
        try:
            infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
            family, kind, proto, _, addr = infos[0]
            with socket.socket(family, kind, proto) as s:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                if reuse_port:
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
                s.bind(addr)
        except OSError as exc:
            return f"port {port} on {host}: {exc.strerror or exc}"
        return None

    problems = [p for p in [bind(public, True), *(bind(w.port, False) for w in workers)] if p]
    if problems:
        return ("cannot listen (each worker also uses its own port, --port + 1 + its index): "
                + "; ".join(problems))
    return None


class Supervisor:
    def __init__(self, workers: list[Worker], env: dict[str, str], redis: Optional[PrivateRedis],
                 drain_grace_s: float, tls: bool = False) -> None:
        self.workers = workers
        self.tls = tls
        self.env = env
        self.redis = redis
        self.drain_grace_s = drain_grace_s
        self.stop_signal: Optional[int] = None
        self.redis_failures = 0

    def _on_signal(self, signum: int, _frame: object) -> None:
        first = self.stop_signal is None
        self.stop_signal = signum if first else signal.SIGINT   # a second signal: stop now
        if not first:
            self._signal_all(signal.SIGINT)

    def _start(self, w: Worker) -> None:
        w.proc = subprocess.Popen(w.argv, cwd=REPO, env=self.env, preexec_fn=_die_with_parent,
                                  process_group=0)  # our signals only, not the terminal's Ctrl-C twice
        w.started_at = time.monotonic()
        w.starts += 1

    def _signal_all(self, signum: int) -> None:
        for w in self.workers:
            if w.proc is not None and w.proc.poll() is None:
                try:
                    w.proc.send_signal(signum)
                except ProcessLookupError:
                    pass

    def _reap(self, w: Worker, now: float) -> Optional[int]:
        """A worker that exited: schedule its restart; returns an exit code to stop everything with."""
        assert w.proc is not None
        code = w.proc.returncode
        w.exits.append(code)
        w.proc = None
        if code == USAGE_ERROR and w.starts == 1:
            print(f"liveclass serve: worker {w.node_id} refused its options (exit {code}); stopping",
                  file=sys.stderr, flush=True)
            return USAGE_ERROR
        w.failures = 0 if now - w.started_at >= STABLE_AFTER_S else w.failures + 1
        delay = min(MAX_RESTART_S, FIRST_RESTART_S * 2 ** max(0, w.failures - 1))
        w.restart_at = now + delay
        print(f"Worker {w.node_id} exited with {code} after {now - w.started_at:.1f} s; starting it again in "
              f"{delay:.1f} s", flush=True)
        return None

    def _keep_redis(self) -> None:
        if self.redis is None or not self.redis.exited():
            return
        self.redis_failures += 1
        print(f"The private redis-server exited ({self.redis.log_tail(300)!r}); starting it again", flush=True)
        time.sleep(min(MAX_RESTART_S, FIRST_RESTART_S * 2 ** (self.redis_failures - 1)))
        try:
            self.redis.start()
        except RuntimeError as exc:
            print(f"liveclass serve: {exc}", file=sys.stderr, flush=True)

    def run(self) -> int:
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)
        if self.tls:  # the workers reload their TLS certificate (without TLS, SIGHUP ends the server as usual)
            signal.signal(signal.SIGHUP, lambda *_: self._signal_all(signal.SIGHUP))
        for w in self.workers:
            self._start(w)
        code = 0
        while self.stop_signal is None:  # until a signal; each turn bounded by POLL_S
            now = time.monotonic()
            for w in self.workers:
                if w.proc is not None and w.proc.poll() is not None:
                    fatal = self._reap(w, now)
                    if fatal is not None:
                        code = fatal
                        self.stop_signal = signal.SIGINT
                        break
                elif w.proc is None and now >= w.restart_at:
                    self._start(w)
            self._keep_redis()
            time.sleep(POLL_S)
        return self._stop_all(self.stop_signal, code)

    def _stop_all(self, signum: int, code: int) -> int:
        name = "SIGTERM: draining" if signum == signal.SIGTERM else "stopping"
        print(f"Supervisor: {name} {sum(w.proc is not None for w in self.workers)} worker(s)", flush=True)
        self._signal_all(signum)
        wait = STOP_MARGIN_S + (self.drain_grace_s if signum == signal.SIGTERM else 0.0)
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline and any(w.proc is not None and w.proc.poll() is None
                                                  for w in self.workers):
            time.sleep(POLL_S)
        for w in self.workers:
            if w.proc is not None and w.proc.poll() is None:
                print(f"Worker {w.node_id} did not stop within {wait:.0f} s: killed", flush=True)
                w.proc.kill()
                w.proc.wait()
        if self.redis is not None:
            self.redis.stop()
        print("Supervisor: all workers stopped", flush=True)
        return code


def supervise(args: argparse.Namespace, secret: str, tls: bool = False) -> int:
    """`liveclass serve --workers N`: returns the exit code."""
    n = worker_count(args.workers)
    redis_url = args.redis or os.environ.get("LIVECLASS_REDIS_URL")
    private: Optional[PrivateRedis] = None
    if not redis_url:
        binary = shutil.which("redis-server")
        if binary is None:
            print("liveclass serve: --workers coordinates its processes through Redis: pass --redis URL (or set "
                  "LIVECLASS_REDIS_URL), or install redis-server (apt-get install redis-server) and a private one "
                  "is started for the workers", file=sys.stderr)
            return USAGE_ERROR
        private = PrivateRedis(binary)
    workers = plan_workers(args, n, redis_url or "", tls)
    problem = check_ports(args.host, args.port, workers)
    if problem:
        print(f"liveclass serve: {problem}", file=sys.stderr)
        return USAGE_ERROR
    if private is not None:
        try:
            private.start()
        except RuntimeError as exc:
            private.stop()
            print(f"liveclass serve: could not start a private redis-server for the workers: {exc}", file=sys.stderr)
            return 1
        redis_url = private.url
        workers = plan_workers(args, n, redis_url, tls)
    print(f"Supervisor: {n} worker process(es) on port {args.port} (their own ports {workers[0].port}-"
          f"{workers[-1].port}), Redis {redis_url}{' (private)' if private else ''}", flush=True)
    print_pages(args, secret, tls)
    env = {**os.environ, "LIVECLASS_SECRET": secret, "PYTHONUNBUFFERED": "1"}
    from signaling.cluster.drain import DEFAULT_GRACE_S
    grace = args.drain_grace if args.drain_grace is not None else DEFAULT_GRACE_S
    try:
        return Supervisor(workers, env, private, grace, tls).run()
    finally:
        if private is not None:
            private.stop()


def run_worker(app: web.Application, host: str, port: int, own_port: int, ssl_context=None) -> int:
    """Serve `app` on the public port, shared with the other workers, and on this worker's own port."""
    own = socket.create_server((host, own_port), family=socket.AF_INET6 if ":" in host else socket.AF_INET,
                               backlog=128)
    web.run_app(app, host=host, port=port, reuse_port=True, sock=own, access_log=None, ssl_context=ssl_context,
                print=lambda *a: print(f"Worker serving on port {port} and {own_port}", flush=True))
    return 0
