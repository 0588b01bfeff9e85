"""Cluster mode, the pure part: configuration, node records, Redis key names and the placement decision.

Redis holds (all keys under `liveclass:`):
- `nodes`: set of node ids ever registered;
- `node:{id}`: hash `url`, `rooms`, `sessions`, `heartbeat_at`, `draining` (the node's load, rewritten every
  heartbeat; a draining node keeps its rooms but gets no new ones);
- `alive:{id}`: a key with a short TTL, refreshed every heartbeat: the node is live while it exists;
- `room:{room}`: the id of the node the room is placed on (SET NX; kept while that node is live, re-placed
  on the next request once its `alive` key has expired). It expires `room_release_s` after the room last had
  anything on its node (the node refreshes it every heartbeat while it does): an empty room's next lesson is
  placed by load again.
Nothing here talks to Redis or reads the clock: see cluster_registry.py for that.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Mapping, Optional
from urllib.parse import urlsplit

PREFIX = "liveclass:"
NODES_KEY = PREFIX + "nodes"
NODE_ID_RE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
ROOM_WEIGHT = 5  # a placed room brings a publisher and viewers: count it as this many sessions
FORWARD_MODES = ("redirect", "proxy")


def node_key(node_id: str) -> str:
    return f"{PREFIX}node:{node_id}"


def alive_key(node_id: str) -> str:
    return f"{PREFIX}alive:{node_id}"


def room_key(room: str) -> str:
    return f"{PREFIX}room:{room}"


class ClusterConfigError(ValueError):
    """A bad --redis / --node-id / --advertise-url / --cluster-forward value."""


@dataclass(frozen=True)
class ClusterConfig:
    redis_url: str
    node_id: str
    advertise_url: str           # base URL other nodes and clients reach this node at, no trailing slash
    forward: str = "proxy"       # how a request for a room placed elsewhere is answered: proxied or 307
    heartbeat_s: float = 1.0
    ttl_s: float = 3.0
    redis_timeout_s: float = 0.5
    room_release_s: float = 30.0  # an empty room's placement is kept this long (its teacher may come back)
    public_url: str = ""         # where clients reach this node when not at advertise_url (a TLS front); "": same

    @classmethod
    def build(cls, redis_url: str, node_id: str, advertise_url: str, forward: str = "proxy",
              heartbeat_s: float = 1.0, ttl_s: float = 3.0, room_release_s: float = 30.0,
              public_url: str = "") -> "ClusterConfig":
        """Validate and normalise; raises ClusterConfigError with a reason a user can act on."""
        scheme = urlsplit(redis_url).scheme
        if scheme not in ("redis", "rediss", "unix"):
            raise ClusterConfigError(f"--redis must be a redis://, rediss:// or unix:// URL, not {redis_url!r}")
        if not NODE_ID_RE.match(node_id):
            raise ClusterConfigError(f"--node-id must be 1-64 letters, digits, '.', '_' or '-', not {node_id!r}")
        advertise_url = normalise_base_url(advertise_url)
        if forward not in FORWARD_MODES:
            raise ClusterConfigError(f"--cluster-forward must be one of {', '.join(FORWARD_MODES)}")
        if not 0 < heartbeat_s < ttl_s:
            raise ClusterConfigError("the heartbeat interval must be positive and shorter than the TTL")
        if not ttl_s <= room_release_s <= 86400:
            raise ClusterConfigError("--room-release must be between the node TTL and 86400 seconds")
        public_url = normalise_base_url(public_url, "--public-url") if public_url else ""
        return cls(redis_url, node_id, advertise_url, forward, heartbeat_s, ttl_s, room_release_s=room_release_s,
                   public_url="" if public_url == advertise_url else public_url)

    @property
    def client_url(self) -> str:
        """The base URL pages and redirected clients use for this node."""
        return self.public_url or self.advertise_url


def normalise_base_url(url: str, option: str = "--advertise-url") -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ClusterConfigError(f"{option} must be an http:// or https:// base URL, not {url!r}")
    if parts.query or parts.fragment or parts.path not in ("", "/"):
        raise ClusterConfigError(f"{option} must be a base URL without path or query, not {url!r}")
    return f"{parts.scheme}://{parts.netloc}"


@dataclass(frozen=True)
class NodeInfo:
    node_id: str
    url: str
    rooms: int = 0
    sessions: int = 0
    heartbeat_at: float = 0.0
    draining: bool = False
    public_url: str = ""         # what clients use, when not `url` (the address other nodes use)

    @property
    def load(self) -> int:
        return self.sessions + ROOM_WEIGHT * self.rooms

    @property
    def client_url(self) -> str:
        return self.public_url or self.url

    def to_hash(self) -> dict[str, str]:
        return {"url": self.url, "rooms": str(self.rooms), "sessions": str(self.sessions),
                "heartbeat_at": f"{self.heartbeat_at:.3f}", "draining": "1" if self.draining else "0",
                "public_url": self.public_url}

    @classmethod
    def from_hash(cls, node_id: str, h: Mapping[str, str]) -> Optional["NodeInfo"]:
        """None for a hash that is missing or malformed (never trusted blindly: anyone can write Redis)."""
        url = h.get("url")
        if not url:
            return None
        try:
            public = h.get("public_url") or ""
            return cls(node_id, normalise_base_url(url), max(0, int(h.get("rooms", 0))),
                       max(0, int(h.get("sessions", 0))), float(h.get("heartbeat_at", 0)),
                       h.get("draining") == "1", normalise_base_url(public) if public else "")
        except (ValueError, ClusterConfigError):
            return None


class NoLiveNode(Exception):
    pass


def choose_node(live: Mapping[str, NodeInfo]) -> NodeInfo:
    """The least-loaded live node that is not draining; ties go to the smallest id so every node decides the same."""
    if not live:
        raise NoLiveNode("no live node is registered")
    open_nodes = [n for n in live.values() if not n.draining]
    if not open_nodes:
        raise NoLiveNode("every live node is draining")
    return min(open_nodes, key=lambda n: (n.load, n.node_id))


def placement_for(current: Optional[str], live: Mapping[str, NodeInfo]) -> tuple[NodeInfo, bool]:
    """Where a room goes: (node, must_write). A room stays on its node while that node is live."""
    if current is not None and current in live:
        return live[current], False
    return choose_node(live), True


def config_from_options(redis_url: Optional[str], node_id: Optional[str], advertise_url: Optional[str],
                        forward: Optional[str], host: str, port: int, hostname: str,
                        room_release_s: float = 30.0, scheme: str = "http",
                        public_url: Optional[str] = None) -> Optional[ClusterConfig]:
    """`liveclass serve` options (or their LIVECLASS_* environment values) → a config; None without Redis.
    Defaults: node id `<hostname>-<port>`, advertise URL `<scheme>://<host>:<port>` (127.0.0.1 for a wildcard
    host; https when the node serves TLS)."""
    if not redis_url:
        if node_id or advertise_url:
            raise ClusterConfigError("--node-id and --advertise-url need --redis (or LIVECLASS_REDIS_URL)")
        return None
    if not node_id:
        node_id = re.sub(r"[^A-Za-z0-9_.-]", "-", hostname)[:56] + f"-{port}"
    if not advertise_url:
        shown = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
        advertise_url = f"{scheme}://[{shown}]:{port}" if ":" in shown else f"{scheme}://{shown}:{port}"
    return ClusterConfig.build(redis_url, node_id, advertise_url, forward or "proxy", room_release_s=room_release_s,
                               public_url=public_url or "")
