"""Bench plumbing: worker subprocesses spoken to with JSON lines, CPU readings from /proc, bounded waits.

Every worker runs in its own session (process group) so the orchestrator can always kill it and whatever it
started; a worker also ends by itself when its stdin closes (the orchestrator died) or its deadline passes.
"""
from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Awaitable, Callable, Iterator, Optional

CLK_TCK = os.sysconf("SC_CLK_TCK")


def proc_cpu_seconds(pid: int) -> Optional[float]:
    """User + system CPU seconds of one process (all its threads), or None when it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def proc_cpu_split(pid: int) -> Optional[tuple[float, float]]:
    """(user, system) CPU seconds of one process, or None when it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return int(fields[11]) / CLK_TCK, int(fields[12]) / CLK_TCK


def proc_exec_seconds(pid: int) -> Optional[float]:
    """CPU seconds of all threads of a process from the scheduler's exact runtime (se.sum_exec_runtime in
    /proc/PID/task/*/sched, nanosecond resolution). /proc/PID/stat is sampled at the timer tick (HZ=250 here,
    4 ms), which a process doing short periodic bursts -- 30 fps video, 20 ms audio -- can alias with.
    None when the kernel has no /proc/PID/sched (CONFIG_SCHED_DEBUG)."""
    total = 0.0
    try:
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
    except OSError:
        return None
    found = False
    for task in tasks:
        try:
            text = (task / "sched").read_text()
        except OSError:
            continue
        for line in text.splitlines():
            if line.startswith("se.sum_exec_runtime"):
                total += float(line.split(":")[1]) / 1000.0
                found = True
                break
    return total if found else None


def process_tree(pid: int) -> list[int]:
    """`pid` and all its descendants (a supervisor and its workers, and what they started)."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        try:
            for task in Path(f"/proc/{p}/task").iterdir():
                todo.extend(int(c) for c in (task / "children").read_text().split())
        except OSError:
            pass
    return out


def summed(values: list) -> Optional[float | tuple]:
    """The sum of per-process figures (numbers, or tuples summed element-wise); None if any is missing."""
    if not values or any(v is None for v in values):
        return None
    if isinstance(values[0], tuple):
        return tuple(sum(x) for x in zip(*values))
    return sum(values)


def proc_threads(pid: int) -> Optional[int]:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("Threads:"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def host_cpu_times() -> tuple[float, float, float]:
    """(busy, total, steal) jiffies over all cores, from /proc/stat. Steal (time the hypervisor gave to
    someone else) is neither busy nor idle here: it is reported on its own."""
    parts = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = parts[3] + (parts[4] if len(parts) > 4 else 0)
    steal = parts[7] if len(parts) > 7 else 0
    total = sum(parts[:8])
    return total - idle - steal, total, steal


def udp_errors() -> dict[str, int]:
    """Host UDP counters (this network namespace): receive-buffer overflows mean a reader fell behind."""
    lines = [ln.split() for ln in Path("/proc/net/snmp").read_text().splitlines() if ln.startswith("Udp:")]
    table = dict(zip(lines[0][1:], (int(x) for x in lines[1][1:])))
    return {k: table.get(k, 0) for k in ("InDatagrams", "InErrors", "RcvbufErrors", "SndbufErrors")}


class Worker:
    """Orchestrator side of one worker process."""

    def __init__(self, name: str, proc: asyncio.subprocess.Process, log_path: Path) -> None:
        self.name = name
        self.proc = proc
        self.log_path = log_path

    @classmethod
    async def spawn(cls, name: str, argv: list[str], log_path: Path, cwd: Path) -> "Worker":
        log = open(log_path, "wb")
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv, cwd=cwd, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=log,
                start_new_session=True, limit=64 * 1024 * 1024,
                env={**os.environ, "PYTHONUNBUFFERED": "1"})
        finally:
            log.close()
        return cls(name, proc, log_path)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def send(self, msg: dict) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write((json.dumps(msg) + "\n").encode())

    async def expect(self, event: str, timeout: float) -> dict:
        """The next message from the worker, which must be `event` (an `error` message raises)."""
        assert self.proc.stdout is not None
        try:
            line = await asyncio.wait_for(self.proc.stdout.readline(), timeout)
        except asyncio.TimeoutError:
            raise TimeoutError(f"{self.name}: no '{event}' within {timeout:.0f} s; log: {self.log_tail()}") from None
        if not line:
            raise RuntimeError(f"{self.name} exited ({self.proc.returncode}) before '{event}'; log: {self.log_tail()}")
        msg = json.loads(line)
        if msg.get("ev") == "error":
            raise RuntimeError(f"{self.name} failed: {msg.get('message')}; log: {self.log_tail()}")
        if msg.get("ev") != event:
            raise RuntimeError(f"{self.name}: expected '{event}', got {msg.get('ev')!r}")
        return msg

    async def call(self, msg: dict, event: str, timeout: float) -> dict:
        self.send(msg)
        return await self.expect(event, timeout)

    def log_tail(self, n: int = 2000) -> str:
        try:
            return self.log_path.read_bytes()[-n:].decode(errors="replace")
        except OSError:
            return ""

    async def stop(self, timeout: float = 20) -> None:
        """Ask politely, then kill the worker's whole process group."""
        if self.proc.returncode is None:
            try:
                self.send({"cmd": "stop"})
                await self.proc.stdin.drain()  # type: ignore[union-attr]
                self.proc.stdin.close()  # type: ignore[union-attr]
            except (ConnectionError, RuntimeError, AttributeError):
                pass
            try:
                await asyncio.wait_for(self.proc.wait(), timeout)
            except asyncio.TimeoutError:
                pass
        self.kill()
        if self.proc.returncode is None:
            try:
                await asyncio.wait_for(self.proc.wait(), 5)
            except asyncio.TimeoutError:
                pass

    def kill(self) -> None:
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


class WorkerIO:
    """Worker side: commands in on stdin, events out on the real stdout (sys.stdout goes to stderr, so
    stray prints from libraries cannot corrupt the protocol)."""

    def __init__(self) -> None:
        self._out = os.fdopen(os.dup(1), "w", buffering=1)
        sys.stdout = sys.stderr
        self._reader: Optional[asyncio.StreamReader] = None

    async def open(self) -> None:
        loop = asyncio.get_running_loop()
        self._reader = asyncio.StreamReader(limit=16 * 1024 * 1024)
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(self._reader), sys.stdin)

    def send(self, ev: str, **data: Any) -> None:
        self._out.write(json.dumps({"ev": ev, **data}) + "\n")
        self._out.flush()

    async def recv(self, timeout: float) -> Optional[dict]:
        """Next command; None on EOF (orchestrator gone) or when `timeout` passes."""
        assert self._reader is not None
        try:
            line = await asyncio.wait_for(self._reader.readline(), max(0.0, timeout))
        except asyncio.TimeoutError:
            return None
        return json.loads(line) if line else None


@contextmanager
def errors_reported(io: WorkerIO) -> Iterator[None]:
    """An exception in the block is sent to the orchestrator as an "error" event, then raised on."""
    try:
        yield
    except Exception as exc:
        io.send("error", message=f"{type(exc).__name__}: {exc}")
        raise


Handler = Callable[[dict], Awaitable[None]]


async def serve_commands(io: WorkerIO, deadline: float, handlers: dict[str, Handler]) -> None:
    """Run the orchestrator's commands, each by its handler, until "stop", the end of stdin or the deadline."""
    with errors_reported(io):
        while time.monotonic() < deadline:
            cmd = await io.recv(deadline - time.monotonic())
            if cmd is None or cmd["cmd"] == "stop":
                break
            handler = handlers.get(cmd["cmd"])
            if handler is None:
                raise ValueError(f"unknown command {cmd!r}")
            await handler(cmd)


async def sleep_until(t: float) -> None:
    delay = t - time.monotonic()
    if delay > 0:
        await asyncio.sleep(delay)


def calibrate() -> dict:
    """How fast this machine is right now, to compare runs taken at different times (this VM's speed drifts by
    ±15% over minutes): the cost of a small Python function call and of one 1200-byte loopback sendto."""
    import socket

    def f(a: int, b: int) -> int:
        return (a + b) & 0xFFFF

    n = 300_000
    t = time.perf_counter()
    x = 0
    for i in range(n):
        x = f(x, i)
    py_ns = (time.perf_counter() - t) / n * 1e9

    rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        rx.bind(("127.0.0.1", 0))
        rx.setblocking(False)
        addr = rx.getsockname()
        data = bytes(1200)
        spent, sent = 0.0, 0
        for _ in range(100):
            t = time.perf_counter()
            for _ in range(100):
                tx.sendto(data, addr)
            spent += time.perf_counter() - t
            sent += 100
            try:
                for _ in range(200):
                    rx.recv(2048)
            except BlockingIOError:
                pass
    finally:
        rx.close()
        tx.close()
    return {"python_call_ns": round(py_ns, 1), "loopback_sendto_us": round(spent / sent * 1e6, 2)}
