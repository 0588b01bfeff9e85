"""How much one client may ask of a node: new WHIP/WHEP sessions and room WebSocket connections per second, per
client address and per identity (429 with Retry-After beyond), and how many sessions a room and the node hold
(503 with the reason when full). The per-identity session cap (a classroom's page that reloads replaces its old
playback session; a token that opens hundreds only ever holds a few) is applied by the endpoints, which close
the oldest.

Addresses are generous (a whole school's classrooms share one NAT address and reconnect at once after the
school's link drops); identities are tight (one classroom's page opens at most four sessions at once). Requests
a cluster node forwards for a client were limited by the node the client reached. The buckets are kept for at
most MAX_KEYS keys (least recently used dropped first), so a flood of new addresses cannot grow memory. Pure:
the time is passed in."""
from __future__ import annotations

import math
import resource
from collections import OrderedDict
from dataclasses import dataclass
from typing import Optional

from signaling.http.rate_limit import TokenBucket

MAX_KEYS = 20_000
FD_HEADROOM = 128          # files the node keeps for itself (library, logs, Redis, HTTP clients)
FDS_PER_SESSION = 2        # a session's UDP socket, and room for its share of HTTP and recording files


class LimitsError(ValueError):
    """A bad limit option, with a reason."""


@dataclass(frozen=True)
class Limits:
    address_rate: float = 20.0       # new sessions or sockets per second from one client address
    address_burst: float = 200.0
    identity_rate: float = 2.0       # ... from one identity (a token's `sub`)
    identity_burst: float = 12.0
    sessions_per_source: int = 2     # WHEP sessions of one identity for one source (a reload overlaps its old one)
    room_sessions: int = 0           # sessions in one room; 0: as many as the node
    node_sessions: int = 0           # sessions on this node; 0: what its open-file limit allows

    @classmethod
    def build(cls, address_rate: Optional[float] = None, identity_rate: Optional[float] = None,
              sessions_per_source: Optional[int] = None, room_sessions: Optional[int] = None,
              node_sessions: Optional[int] = None) -> "Limits":
        d = cls()
        out = cls(address_rate if address_rate is not None else d.address_rate,
                  max(d.address_burst, 10 * address_rate) if address_rate is not None else d.address_burst,
                  identity_rate if identity_rate is not None else d.identity_rate,
                  max(d.identity_burst, 6 * identity_rate) if identity_rate is not None else d.identity_burst,
                  sessions_per_source if sessions_per_source is not None else d.sessions_per_source,
                  room_sessions if room_sessions is not None else d.room_sessions,
                  node_sessions if node_sessions is not None else d.node_sessions)
        if not (0 < out.address_rate <= 1e6 and 0 < out.identity_rate <= 1e6):
            raise LimitsError("request rates must be positive (requests per second)")
        if not 1 <= out.sessions_per_source <= 100:
            raise LimitsError("--max-sessions-per-source must be between 1 and 100")
        if out.room_sessions < 0 or out.node_sessions < 0:
            raise LimitsError("session limits must be 0 (automatic) or positive")
        return out

    def node_capacity(self, open_files: Optional[int] = None) -> int:
        """Sessions this node takes: the configured limit, or what its open-file limit allows."""
        if self.node_sessions:
            return self.node_sessions
        if open_files is None:
            open_files = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        return max(1, (open_files - FD_HEADROOM) // FDS_PER_SESSION)

    def room_capacity(self, node_capacity: int) -> int:
        return min(self.room_sessions, node_capacity) if self.room_sessions else node_capacity


class KeyedBuckets:
    """A token bucket per key (an address, an identity), at most `max_keys` of them."""

    def __init__(self, rate: float, burst: float, max_keys: int = MAX_KEYS) -> None:
        self.rate = rate
        self.burst = burst
        self.max_keys = max_keys
        self._buckets: OrderedDict[str, TokenBucket] = OrderedDict()

    def take(self, key: str, now: float) -> float:
        """0 when `key` may go ahead now (a token is taken); else the seconds until it may."""
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = TokenBucket(self.rate, self.burst, now)
            if len(self._buckets) > self.max_keys:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(key)
        if bucket.take(now):
            return 0.0
        return (1.0 - bucket.tokens) / self.rate

    def __len__(self) -> int:
        return len(self._buckets)


def retry_after(wait_s: float) -> str:
    """Retry-After in whole seconds, at least 1."""
    return str(max(1, math.ceil(wait_s)))


@dataclass
class Refusal:
    status: int               # 429 or 503
    reason: str
    retry_after_s: float


class RequestLimiter:
    """The rate decision for one new session or socket: None (go ahead) or the refusal."""

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self.addresses = KeyedBuckets(limits.address_rate, limits.address_burst)
        self.identities = KeyedBuckets(limits.identity_rate, limits.identity_burst)

    def check(self, address: Optional[str], identity: Optional[str], now: float) -> Optional[Refusal]:
        if address:
            wait = self.addresses.take(address, now)
            if wait:
                return Refusal(429, f"too many requests from {address}: at most {self.limits.address_rate:g} "
                                    f"new sessions or connections a second", wait)
        if identity:
            wait = self.identities.take(identity, now)
            if wait:
                return Refusal(429, f"too many requests for {identity}: at most {self.limits.identity_rate:g} new "
                                    f"sessions or connections a second", wait)
        return None


def capacity_refusal(node_sessions: int, room_sessions: int, limits: Limits, node_capacity: int) -> Optional[Refusal]:
    """503 when the node, or the room, holds as many sessions as it may."""
    if node_sessions >= node_capacity:
        return Refusal(503, f"this server is full ({node_sessions} sessions, its limit): try again later or "
                            f"another server", 5.0)
    room_capacity = limits.room_capacity(node_capacity)
    if room_sessions >= room_capacity:
        return Refusal(503, f"this lesson is full ({room_sessions} sessions, its limit)", 5.0)
    return None
