"""A real `redis-server` on a free loopback port for tests: start, wait for PING, stop, restart on the same port."""
from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Optional

from testkit.server import free_port
from signaling.cluster.processes import stop_process

REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"


def _ping(port: int, timeout: float = 0.5, netns: Optional[str] = None) -> bool:
    if netns:
        from testkit.netns import call_in
        return call_in(netns, _ping, port, timeout, timeout=timeout + 5)
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
            s.sendall(b"PING\r\n")
            return s.recv(64).startswith(b"+PONG")
    except OSError:
        return False


class RedisServer:
    """No persistence (a restart starts empty, the hard case for re-registration); logs to a file."""

    def __init__(self, port: Optional[int] = None, log_dir: Optional[Path] = None, netns: Optional[str] = None) -> None:
        """`netns`: run inside that network namespace (its own loopback)."""
        self.netns = netns
        self.port = port or free_port()
        self.dir = Path(log_dir) if log_dir else Path(tempfile.mkdtemp(prefix="liveclass-redis-"))
        self.dir.mkdir(parents=True, exist_ok=True)
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: Optional[subprocess.Popen] = None
        self.start()

    def start(self, timeout: float = 10) -> None:
        if not Path(REDIS_SERVER).exists():
            raise RuntimeError(f"redis-server not found at {REDIS_SERVER} (apt-get install redis-server)")
        prefix = ["ip", "netns", "exec", self.netns] if self.netns else []
        self.proc = subprocess.Popen(
            [*prefix, REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(self.dir), "--logfile", str(self.dir / "redis.log")],
            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"redis-server exited with {self.proc.returncode}: {self.log_tail()}")
            if _ping(self.port, netns=self.netns):
                return
            time.sleep(0.05)
        raise TimeoutError(f"redis-server on port {self.port} did not answer PING: {self.log_tail()}")

    def stop(self) -> None:
        stop_process(self.proc)
        self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def log_tail(self, n: int = 2000) -> str:
        log = self.dir / "redis.log"
        return log.read_bytes()[-n:].decode(errors="replace") if log.exists() else ""
