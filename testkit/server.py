"""Run `liveclass serve` as a real subprocess on a free loopback port, as users and CI do."""
from __future__ import annotations

import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Optional

from signaling.auth.tokens import mint
from signaling.cluster.processes import stop_process

REPO = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerProcess:
    def __init__(self, secret: str = "test-secret-0123456789abcdef0123456789", host: str = "127.0.0.1",
                 media_hosts: tuple[str, ...] = ("127.0.0.1",), extra: tuple[str, ...] = (),
                 log_path: Optional[Path] = None, netns: Optional[str] = None,
                 library: Optional[Path] = None, port: Optional[int] = None, tls_ca: Optional[Path] = None,
                 url_host: Optional[str] = None, env: Optional[dict[str, str]] = None) -> None:
        """`env`: variables added to the server's environment (LIVECLASS_NATIVE=0, say). `tls_ca`: the server serves https (its --tls-* options are in `extra`), verified with this CA file.
        `netns`: it runs inside that network namespace, and so do the readiness check and `http()`."""
        self.secret = secret
        self.host = host
        self.port = port or free_port()
        self.netns = netns
        self.tls_ca = tls_ca
        scheme = "https" if tls_ca is not None else "http"
        self.base_url = f"{scheme}://{url_host or host}:{self.port}"
        # each server its own lesson library unless told (never the shared ./library of the working tree)
        self._own_library = library is None
        self.library = Path(library) if library else Path(tempfile.mkdtemp(prefix="liveclass-library-"))
        args = [sys.executable, "-m", "signaling.cli", "serve", "--host", host, "--port", str(self.port),
                "--secret", secret, "--library", str(self.library), "--udp-port", "0", *extra]
        for m in media_hosts:
            args += ["--media-host", m]
        if netns:
            args = ["ip", "netns", "exec", netns, *args]
        self.log_path = log_path
        self._log = open(log_path, "wb") if log_path else subprocess.DEVNULL
        self.proc = subprocess.Popen(args, cwd=REPO, stdout=self._log, stderr=subprocess.STDOUT,
                                     env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})})
        self._wait_ready()

    def ssl_context(self) -> Optional[ssl.SSLContext]:
        return ssl.create_default_context(cafile=str(self.tls_ca)) if self.tls_ca is not None else None

    def _get(self, url: str, timeout: float) -> tuple[int, bytes]:
        try:
            with urllib.request.urlopen(url, timeout=timeout, context=self.ssl_context()) as r:
                return r.status, r.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()

    def http(self, path: str, timeout: float = 5) -> tuple[int, bytes]:
        """GET base_url + path as a client next to the server would (inside its namespace, trusting its CA)."""
        if self.netns:
            from testkit.netns import call_in
            return call_in(self.netns, self._get, self.base_url + path, timeout, timeout=timeout + 5)
        return self._get(self.base_url + path, timeout)

    def _wait_ready(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"liveclass serve exited with {self.proc.returncode}: {self.log_tail()}")
            try:
                if self.http("/healthz", timeout=1)[0] == 200:
                    return
            except OSError:
                time.sleep(0.1)
        raise TimeoutError("liveclass serve did not become healthy: " + self.log_tail())

    def token(self, room: str, role: str, ttl: int = 3600, **kw) -> str:
        return mint(self.secret, room, role, ttl, **kw)

    def log_tail(self, n: int = 4000) -> str:
        if self.log_path and Path(self.log_path).exists():
            return Path(self.log_path).read_bytes()[-n:].decode(errors="replace")
        return ""

    def cpu_seconds(self) -> float:
        """User+system CPU time of the server process, from /proc/PID/stat."""
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> int:
        stop_process(self.proc, 10, signal.SIGINT)
        if self._log is not subprocess.DEVNULL:
            self._log.close()
        if self._own_library:
            shutil.rmtree(self.library, ignore_errors=True)
        return self.proc.returncode
