"""Cascade, the pure part: a node's region and viewer capacity, and where a viewer of a room is served.

A viewer (WHEP) reaches some node, normally one of its own region (DNS, or the operator's pages point there).
That node serves it itself, as an *edge* relaying the room from its origin node, when the origin is in another
region or is full; otherwise the viewer goes to the origin as before. An origin that is full sends viewers to
the least-loaded node with room (its own region first), which then serves them as an edge. A full node never
takes a viewer: 503, with the reason. Nothing here talks to Redis or reads the clock (see cascade.py).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Mapping, Optional

from signaling.cluster.placement import NodeInfo

REGION_RE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
DEFAULT_REGION = "default"


class CascadeConfigError(ValueError):
    """A bad --region / --max-viewers value."""


@dataclass(frozen=True)
class CascadeConfig:
    region: str = DEFAULT_REGION
    max_viewers: int = 0   # viewer sessions this node takes at most; 0: no limit

    @classmethod
    def build(cls, region: Optional[str], max_viewers: Optional[str | int]) -> "CascadeConfig":
        region = region or DEFAULT_REGION
        if not REGION_RE.match(region):
            raise CascadeConfigError(f"--region must be 1-64 letters, digits, '.', '_' or '-', not {region!r}")
        try:
            limit = int(max_viewers or 0)
        except ValueError:
            raise CascadeConfigError(f"--max-viewers must be a whole number, not {max_viewers!r}") from None
        if not 0 <= limit <= 1_000_000:
            raise CascadeConfigError("--max-viewers must be between 0 (no limit) and 1000000")
        return cls(region, limit)


@dataclass(frozen=True)
class EdgeInfo:
    """A live node as viewer routing sees it."""
    node: NodeInfo
    region: str = DEFAULT_REGION
    viewers: int = 0
    max_viewers: int = 0

    @property
    def node_id(self) -> str:
        return self.node.node_id

    @property
    def full(self) -> bool:
        return self.max_viewers > 0 and self.viewers >= self.max_viewers

    def to_hash(self) -> dict[str, str]:
        return {"region": self.region, "viewers": str(self.viewers), "max_viewers": str(self.max_viewers)}

    @classmethod
    def from_hash(cls, node: NodeInfo, h: Mapping[str, str]) -> "EdgeInfo":
        """A node that published nothing (or garbage) counts as default region, no limit known."""
        region = h.get("region") or DEFAULT_REGION
        try:
            viewers, limit = max(0, int(h.get("viewers", 0))), max(0, int(h.get("max_viewers", 0)))
        except ValueError:
            viewers, limit = 0, 0
        return cls(node, region if REGION_RE.match(region) else DEFAULT_REGION, viewers, limit)


LOCAL, EDGE, REDIRECT, FULL = "local", "edge", "redirect", "full"


@dataclass(frozen=True)
class ViewerRoute:
    action: str                       # LOCAL: the origin serves it; EDGE: served here from a relay; REDIRECT; FULL
    node: Optional[NodeInfo] = None   # where REDIRECT sends it
    reason: str = ""


def best_edge(candidates: Mapping[str, EdgeInfo], region: str, exclude: set[str]) -> Optional[EdgeInfo]:
    """The node with room for a viewer: same region first, then fewest viewers, then load; ties by id."""
    open_nodes = [e for e in candidates.values()
                  if e.node_id not in exclude and not e.full and not getattr(e.node, "draining", False)]
    if not open_nodes:
        return None
    return min(open_nodes, key=lambda e: (e.region != region, e.viewers, e.node.load, e.node_id))


def route_viewer(me: EdgeInfo, owner: EdgeInfo, live: Mapping[str, EdgeInfo]) -> ViewerRoute:
    """Where a viewer of a room placed on `owner`, arriving at `me`, is served. `live`: every live node."""
    if me.node_id == owner.node_id:
        if not me.full:
            return ViewerRoute(LOCAL)
        edge = best_edge(live, me.region, {me.node_id})
        if edge is None:
            return ViewerRoute(FULL, reason=f"node {me.node_id} has its {me.max_viewers} viewers and no other "
                                            "node has room")
        return ViewerRoute(REDIRECT, edge.node, f"origin {me.node_id} is full; {edge.node_id} relays")
    if not me.full:
        if me.region != owner.region:
            return ViewerRoute(EDGE, reason=f"origin {owner.node_id} is in region {owner.region}")
        if owner.full:
            return ViewerRoute(EDGE, reason=f"origin {owner.node_id} is full")
        return ViewerRoute(REDIRECT, owner.node)
    if owner.region == me.region and not owner.full:
        return ViewerRoute(REDIRECT, owner.node)
    edge = best_edge(live, me.region, {me.node_id})
    if edge is None:
        return ViewerRoute(FULL, reason=f"node {me.node_id} has its {me.max_viewers} viewers and no other node "
                                        "has room")
    return ViewerRoute(REDIRECT, edge.node, f"node {me.node_id} is full; {edge.node_id} takes the viewer")
