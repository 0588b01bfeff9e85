"""A real thin link for tests: a network namespace joined to the host by a veth pair, shaped with `tc tbf`.

The kernel here has htb/tbf but no netem, so the link is a token bucket with a bounded queue: packets beyond
the queue are dropped, as on a school's DSL or LTE uplink. Random loss with no queue behind it (rural copper,
4G, Wi-Fi) is an nftables rule inside the namespace (`random_loss`); loss and delay in-process are in
testkit/lossy.py.

    with LinkNamespace() as ns:          # ns.host_ip (root namespace side), ns.ns_ip (inside)
        ns.cap_downlink(500)             # host → namespace at 500 kbit/s
        ns.random_loss(30)               # and 3 % of the UDP arriving inside dropped at random
        ns.run(["python3", "-c", "..."])  # a command inside the namespace
        ns.lift()

Names carry the creating process's pid, so a later run can remove what a crashed run left behind
(`clean_stale`) without touching a namespace another live run is using.
"""
from __future__ import annotations

import ctypes
import ipaddress
import json
import os
import random
import re
import shutil
import subprocess
import threading
from pathlib import Path
from typing import Any, Callable, Optional, Sequence, TypeVar

PREFIX = "lc"
# lc-<pid>-<hex>; veths lc<pid>h<hex> / lc<pid>n<hex> (IFNAMSIZ: at most 15 characters)
_NS_RE = re.compile(rf"^{PREFIX}-(\d+)-[0-9a-f]+$")
_LINK_RE = re.compile(rf"^{PREFIX}(\d+)[hn][0-9a-f]+$")
_CMD_TIMEOUT = 10.0
MTU = 1500
T = TypeVar("T")


class NetnsUnavailable(RuntimeError):
    pass


def unavailable_reason() -> Optional[str]:
    """Why namespaces cannot be used here (None when they can): tests turn this into pytest.skip."""
    if os.geteuid() != 0:
        return "real-link tests need root (network namespaces and tc)"
    for tool in ("ip", "tc"):
        if shutil.which(tool) is None:
            return f"real-link tests need iproute2's `{tool}`"
    probe = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, timeout=_CMD_TIMEOUT)
    if probe.returncode != 0:
        return f"`ip netns` is unavailable: {probe.stderr.strip()}"
    return None


def _ip(*args: str, ns: Optional[str] = None, check: bool = True) -> subprocess.CompletedProcess:
    cmd = ["ip", *args] if ns is None else ["ip", "netns", "exec", ns, "ip", *args]
    return _run(cmd, check)


def _run(cmd: Sequence[str], check: bool = True) -> subprocess.CompletedProcess:
    r = subprocess.run(list(cmd), capture_output=True, text=True, timeout=_CMD_TIMEOUT)
    if check and r.returncode != 0:
        raise NetnsUnavailable(f"{' '.join(cmd)}: {r.stderr.strip() or r.returncode}")
    return r


def _pid_alive(pid: int) -> bool:
    return Path(f"/proc/{pid}").exists()


def clean_stale() -> list[str]:
    """Delete lc-* namespaces and veths whose creating process is gone. Returns what was removed."""
    removed = []
    listing = _run(["ip", "netns", "list"], check=False).stdout
    for line in listing.splitlines():
        name = line.split()[0] if line.strip() else ""
        m = _NS_RE.match(name)
        if m and not _pid_alive(int(m.group(1))):
            if _run(["ip", "netns", "del", name], check=False).returncode == 0:
                removed.append(name)
    # a run that died between `ip link add` and moving the peer leaves both ends in the root namespace
    for line in _ip("-o", "link", "show", check=False).stdout.splitlines():
        parts = line.split(":")
        if len(parts) < 2:
            continue
        name = parts[1].strip().split("@")[0]
        m = _LINK_RE.match(name)
        if m and not _pid_alive(int(m.group(1))):
            if _ip("link", "del", name, check=False).returncode == 0:
                removed.append(name)
    return removed


def _pick_subnet(rng: random.Random) -> ipaddress.IPv4Network:
    """A random 10.213.x.y/30 that no interface here uses yet."""
    used = _ip("-o", "-4", "addr", "show", check=False).stdout
    for _ in range(64):
        net = ipaddress.IPv4Network((f"10.213.{rng.randrange(256)}.{4 * rng.randrange(64)}", 30))
        hosts = [str(h) for h in net.hosts()]
        if not any(f"inet {h}/" in used for h in hosts):
            return net
    raise NetnsUnavailable("no free 10.213.0.0/16 /30 subnet after 64 tries")


def tbf_args(kbit: int, burst_bytes: Optional[int], latency_ms: float) -> list[str]:
    """`tc` arguments of a token bucket: rate, bucket (at least two full packets, else big packets never
    pass; by default 10 ms worth of the rate) and queue (`latency`: what the bucket may hold waiting)."""
    rate_bytes_s = kbit * 1000 / 8
    burst = burst_bytes if burst_bytes is not None else max(2 * MTU, int(rate_bytes_s * 0.010))
    burst = max(burst, MTU + 100)
    return ["tbf", "rate", f"{kbit}kbit", "burst", str(burst), "latency", f"{latency_ms:g}ms"]


def nft_script(ns_name: str, script: str) -> None:
    """Load an nftables script (`nft -f -`) inside namespace `ns_name`; its tables vanish with the namespace."""
    if shutil.which("nft") is None:
        raise NetnsUnavailable("nftables' `nft` is not installed")
    r = subprocess.run(["ip", "netns", "exec", ns_name, "nft", "-f", "-"], input=script, capture_output=True,
                       text=True, timeout=_CMD_TIMEOUT)
    if r.returncode != 0:
        raise NetnsUnavailable(f"nft: {r.stderr.strip()}")


def nft_counters(ns_name: str, table: str) -> dict[str, int]:
    """Packets counted by each named counter of `table` (family inet) inside `ns_name`; {} when it is gone."""
    r = _run(["ip", "netns", "exec", ns_name, "nft", "-j", "list", "counters", "table", "inet", table], check=False)
    if r.returncode != 0:
        return {}
    out = {}
    for item in json.loads(r.stdout or "{}").get("nftables", []):
        c = item.get("counter")
        if c:
            out[c["name"]] = int(c["packets"])
    return out


# Random loss on what reaches the namespace: an input hook (after the veth, after the host-side cap) that
# drops UDP only, so page loads and the room WebSocket stay whole as on a link whose loss TCP repairs.
LOSS_TABLE = "lcloss"


def random_loss_script(permille: int) -> str:
    if not 0 <= permille <= 1000:
        raise ValueError(f"loss of {permille}‰ is outside 0..1000")
    return (f"table inet {LOSS_TABLE}\ndelete table inet {LOSS_TABLE}\n"
            f"table inet {LOSS_TABLE} {{\n  counter udp_in {{}}\n  counter udp_dropped {{}}\n"
            "  chain in {\n    type filter hook input priority 0; policy accept;\n"
            '    meta l4proto udp counter name "udp_in"\n'
            f'    meta l4proto udp numgen random mod 1000 < {permille} counter name "udp_dropped" drop\n'
            "  }\n}\n")


class _Namespaces:
    """Made on entering (after removing what crashed runs left), removed on leaving, whatever happened."""

    def _create(self) -> None:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self):
        reason = unavailable_reason()
        if reason:
            raise NetnsUnavailable(reason)
        clean_stale()
        try:
            self._create()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class LinkNamespace(_Namespaces):
    """A network namespace with one veth link to the host. Use as a context manager; cleanup always runs."""

    def __init__(self, seed: Optional[int] = None) -> None:
        rng = random.Random(seed)
        tag = f"{rng.getrandbits(16):04x}"
        pid = os.getpid()
        self.name = f"{PREFIX}-{pid}-{tag}"
        self.host_dev = f"{PREFIX}{pid}h{tag}"
        self.ns_dev = f"{PREFIX}{pid}n{tag}"
        if len(self.host_dev) > 15:  # pid_max above 10^7: shorten the tag
            self.host_dev, self.ns_dev = self.host_dev[:15], self.ns_dev[:15]
        self._rng = rng
        self.host_ip = self.ns_ip = ""
        self.prefixlen = 30
        self.caps: dict[str, list[str]] = {}
        self._created = False

    # --- lifecycle ------------------------------------------------------------------------------------------

    def _create(self) -> None:
        net = _pick_subnet(self._rng)
        host, peer = (str(h) for h in net.hosts())
        _run(["ip", "netns", "add", self.name])
        self._created = True
        _ip("link", "add", self.host_dev, "type", "veth", "peer", "name", self.ns_dev)
        _ip("link", "set", self.ns_dev, "netns", self.name)
        # IPv4 only: an IPv6 link-local address appearing a second after the link comes up is a network
        # change to Chromium, which then fails the page loads in flight (net::ERR_NETWORK_CHANGED)
        _run(["sysctl", "-qw", f"net.ipv6.conf.{self.host_dev}.disable_ipv6=1"], check=False)
        _run(["ip", "netns", "exec", self.name, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1"], check=False)
        _ip("addr", "add", f"{host}/30", "dev", self.host_dev)
        _ip("link", "set", self.host_dev, "up")
        _ip("addr", "add", f"{peer}/30", "dev", self.ns_dev, ns=self.name)
        _ip("link", "set", self.ns_dev, "up", ns=self.name)
        _ip("link", "set", "lo", "up", ns=self.name)
        self.host_ip, self.ns_ip = host, peer

    def close(self) -> None:
        """Remove the namespace and the veth (deleting either end of a veth removes both)."""
        _ip("link", "del", self.host_dev, check=False)
        if self._created:
            _run(["ip", "netns", "del", self.name], check=False)
            self._created = False

    # --- shaping --------------------------------------------------------------------------------------------

    def cap_downlink(self, kbit: int, burst_bytes: Optional[int] = None, latency_ms: float = 150) -> None:
        """Host → namespace at `kbit` kbit/s: a token bucket on the host end's egress. The default queue
        (150 ms at the rate) is what a thin school link buffers before it drops."""
        self._shape(self.host_dev, None, kbit, burst_bytes, latency_ms)

    def cap_uplink(self, kbit: int, burst_bytes: Optional[int] = None, latency_ms: float = 150) -> None:
        """Namespace → host: the same on the namespace end's egress."""
        self._shape(self.ns_dev, self.name, kbit, burst_bytes, latency_ms)

    def _shape(self, dev: str, ns: Optional[str], kbit: int, burst: Optional[int], latency_ms: float) -> None:
        args = tbf_args(kbit, burst, latency_ms)
        prefix = [] if ns is None else ["ip", "netns", "exec", ns]
        _run([*prefix, "tc", "qdisc", "replace", "dev", dev, "root", *args])
        self.caps[dev] = args

    def lift(self) -> None:
        """Remove both caps (back to the veth's unshaped default)."""
        _run(["tc", "qdisc", "del", "dev", self.host_dev, "root"], check=False)
        _run(["ip", "netns", "exec", self.name, "tc", "qdisc", "del", "dev", self.ns_dev, "root"], check=False)
        self.caps.clear()

    def random_loss(self, permille: int) -> None:
        """Drop `permille`‰ of the UDP packets arriving in the namespace (the downlink), at random, counting
        what arrived and what was dropped (`loss_counters`). Replaces an earlier loss; 0 still counts."""
        nft_script(self.name, random_loss_script(permille))

    def clear_loss(self) -> None:
        _run(["ip", "netns", "exec", self.name, "nft", "delete", "table", "inet", LOSS_TABLE], check=False)

    def loss_counters(self) -> dict[str, int]:
        """{"udp_in": UDP packets that reached the namespace, "udp_dropped": those the loss rule dropped}."""
        return nft_counters(self.name, LOSS_TABLE)

    def qdisc_stats(self, inside: bool = False) -> str:
        """`tc -s qdisc` of one end (sent/dropped/overlimits), for reports."""
        prefix = ["ip", "netns", "exec", self.name] if inside else []
        dev = self.ns_dev if inside else self.host_dev
        return _run([*prefix, "tc", "-s", "qdisc", "show", "dev", dev], check=False).stdout

    # --- commands inside ------------------------------------------------------------------------------------

    def command(self, args: Sequence[str]) -> list[str]:
        return ["ip", "netns", "exec", self.name, *args]

    def run(self, args: Sequence[str], timeout: float = 60, **kw) -> subprocess.CompletedProcess:
        kw.setdefault("capture_output", True)
        kw.setdefault("text", True)
        return subprocess.run(self.command(args), timeout=timeout, **kw)

    def popen(self, args: Sequence[str], **kw) -> subprocess.Popen:
        return subprocess.Popen(self.command(args), **kw)


# --- two namespaces: a server room and a school network ------------------------------------------------------

CLONE_NEWNET = 0x40000000


def call_in(ns_name: str, fn: Callable[..., T], *args: Any, timeout: float = 60) -> T:
    """Run fn(*args) on a thread that has joined network namespace `ns_name`: every socket it opens (urllib,
    ssl, an asyncio loop it runs) lives in that namespace. Returns fn's result or raises its exception."""
    result: dict[str, Any] = {}

    def body() -> None:
        try:
            join(ns_name)
            result["value"] = fn(*args)
        except BaseException as exc:  # handed to the caller's thread
            result["error"] = exc

    t = threading.Thread(target=body, name=f"in-{ns_name}", daemon=True)
    t.start()
    t.join(timeout)
    if t.is_alive():
        raise TimeoutError(f"{getattr(fn, '__name__', fn)} in {ns_name} still running after {timeout:.0f} s")
    if "error" in result:
        raise result["error"]
    return result["value"]


def join(ns_name: str) -> None:
    """Move the calling thread (only it: setns is per thread) into network namespace `ns_name`."""
    fd = os.open(f"/run/netns/{ns_name}", os.O_RDONLY)
    try:
        if ctypes.CDLL(None, use_errno=True).setns(fd, CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), f"setns into {ns_name} failed")
    finally:
        os.close(fd)


class SchoolNetwork(_Namespaces):
    """Two network namespaces joined by one veth pair: `server` (the district's server room: liveclass, Redis,
    coturn) and `school` (a classroom's network: the browsers and other clients). Their addresses exist only
    inside the two namespaces, so nothing is localhost to a browser and nothing leaves the machine. The school
    side has a firewall (nftables) that can block outbound UDP or a TCP port, as school networks do.

        with SchoolNetwork() as net:
            net.server_ip, net.school_ip
            net.command("server", [...])       # argv that runs inside a namespace
            net.call("school", fn, *args)       # a Python call whose sockets are in the school's namespace
            net.block_outbound_udp()            # the school lets no UDP out
    """

    SIDES = ("server", "school")

    def __init__(self, seed: Optional[int] = None) -> None:
        rng = random.Random(seed)
        tag = f"{rng.getrandbits(16):04x}"
        pid = os.getpid()
        self.names = {"server": f"{PREFIX}-{pid}-{tag}0", "school": f"{PREFIX}-{pid}-{tag}1"}
        self.devs = {"server": f"{PREFIX}{pid}h{tag}"[:15], "school": f"{PREFIX}{pid}n{tag}"[:15]}
        self._rng = rng
        self.server_ip = self.school_ip = ""
        self._made: list[str] = []
        self._firewall: list[str] = []

    def _create(self) -> None:
        net = _pick_subnet(self._rng)
        ips = dict(zip(self.SIDES, (str(h) for h in net.hosts())))
        for side in self.SIDES:
            _run(["ip", "netns", "add", self.names[side]])
            self._made.append(self.names[side])
        _ip("link", "add", self.devs["server"], "type", "veth", "peer", "name", self.devs["school"])
        for side in self.SIDES:
            ns, dev = self.names[side], self.devs[side]
            _ip("link", "set", dev, "netns", ns)
            # IPv4 only (see LinkNamespace: a late link-local address is a network change to Chromium)
            _run(["ip", "netns", "exec", ns, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1"], check=False)
            _ip("addr", "add", f"{ips[side]}/30", "dev", dev, ns=ns)
            _ip("link", "set", dev, "up", ns=ns)
            _ip("link", "set", "lo", "up", ns=ns)
        self.server_ip, self.school_ip = ips["server"], ips["school"]

    def close(self) -> None:
        for name in self._made:   # deleting a namespace deletes the veth end inside it, and so the pair
            _run(["ip", "netns", "del", name], check=False)
        self._made.clear()

    # --- running things inside --------------------------------------------------------------------------------

    def command(self, side: str, args: Sequence[str]) -> list[str]:
        return ["ip", "netns", "exec", self.names[side], *args]

    def run(self, side: str, args: Sequence[str], timeout: float = 60, **kw) -> subprocess.CompletedProcess:
        kw.setdefault("capture_output", True)
        kw.setdefault("text", True)
        return subprocess.run(self.command(side, args), timeout=timeout, **kw)

    def call(self, side: str, fn: Callable[..., T], *args: Any, timeout: float = 60) -> T:
        return call_in(self.names[side], fn, *args, timeout=timeout)

    # --- the school's firewall (nftables; this kernel has no netem, but nftables works) -----------------------

    def _nft(self, script: str) -> None:
        nft_script(self.names["school"], script)

    def firewall(self, rules: Sequence[str]) -> None:
        """Replace the school's outbound rules with `rules` (nft rule statements, e.g. "meta l4proto udp drop")."""
        self._firewall = list(rules)
        body = "".join(f"    {r}\n" for r in rules)
        self._nft("table inet lcschool\ndelete table inet lcschool\n"
                  "table inet lcschool {\n  chain out {\n    type filter hook output priority 0; policy accept;\n"
                  f"{body}  }}\n}}\n")

    def block_outbound_udp(self, also_tcp_ports: Sequence[int] = ()) -> None:
        """The school lets no UDP out (and, optionally, none of these TCP ports): only TCP is left for media."""
        self.firewall(["meta l4proto udp counter drop", *(f"tcp dport {p} counter drop" for p in also_tcp_ports)])

    def open_firewall(self) -> None:
        self.firewall([])

    def firewall_counters(self) -> str:
        return self.run("school", ["nft", "list", "table", "inet", "lcschool"]).stdout
