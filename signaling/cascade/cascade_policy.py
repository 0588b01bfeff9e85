"""Cascade, the pure part: a node's region and viewer capacity, and where a viewer of a room is served.

A viewer (WHEP) reaches some node, normally one of its own region (DNS, or the operator's pages point there).
That node serves it itself, as an *edge* relaying the room from its origin node, when the origin is in another
region or is full; otherwise the viewer goes to the origin as before. An origin that is full sends viewers to
the least-loaded node with room (its own region first), which then serves them as an edge. A full node never
takes a viewer: 503, with the reason.

With `spread` (the workers of one machine: `serve --workers N`), one room's viewers are spread over the region's
nodes by load, so one big lesson uses every core: a viewer is served where the load is least, counted in viewers
plus each node's other work in viewer-equivalents (the publishers it takes in, the ladder it encodes, the links
it feeds: the origin's own load), and the viewers just sent to a node whose published count is not fresh yet.
The node the viewer reached serves it unless another is lighter by more than SPREAD_SLACK; a node without the
room's link counts what a new one costs and takes the viewer only when it is the lightest even so: a small
lesson stays on its origin, and the kernel's spreading of connections over the workers splits a burst of joins
before any count is fresh.
Nothing here talks to Redis or reads the clock (see links.py).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Mapping, Optional

from signaling.cluster.placement import NodeInfo

REGION_RE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
ROOM_ID_RE = REGION_RE          # (signaling.http.access.ROOM_RE: the same rule)
MAX_LINKS_PUBLISHED = 256       # rooms a node names as linked in (a node relaying more counts as linked to none)
DEFAULT_REGION = "default"


class CascadeConfigError(ValueError):
    """A bad --region / --max-viewers value."""


# a node's other work in viewer-equivalents (CPU per second against one forwarded viewer's, bench/fanout.py
# --workers on this project's reference machine): what makes the origin of a lesson heavier than its edges
PUBLISHER_VIEWERS = 10.0   # a publisher (or a link in from an origin) taken in: SRTP, ingest, NACKs, reports
LADDER_VIEWERS = 120.0     # a one-layer teacher's server-made layers: decode and two encodes
RELAY_VIEWERS = 3.0        # a link out to an edge: every layer of the room, like three viewers
SPREAD_SLACK = 2.0         # served where it arrived unless another node is lighter by more than this
LINK_VIEWERS = RELAY_VIEWERS + PUBLISHER_VIEWERS   # a new edge: the origin's link out and the edge's link in


def other_work(publishers: int, ladders: int, relays_out: int, relays_in: int) -> float:
    """A node's load besides its viewers, in viewer-equivalents."""
    return (PUBLISHER_VIEWERS * (publishers + relays_in) + LADDER_VIEWERS * ladders
            + RELAY_VIEWERS * relays_out)


@dataclass(frozen=True)
class CascadeConfig:
    region: str = DEFAULT_REGION
    max_viewers: int = 0   # viewer sessions this node takes at most; 0: no limit
    spread: bool = False   # one room's viewers spread over the region's nodes by load

    @classmethod
    def build(cls, region: Optional[str], max_viewers: Optional[str | int],
              spread: bool = False) -> "CascadeConfig":
        region = region or DEFAULT_REGION
        if not REGION_RE.match(region):
            raise CascadeConfigError(f"--region must be 1-64 letters, digits, '.', '_' or '-', not {region!r}")
        try:
            limit = int(max_viewers or 0)
        except ValueError:
            raise CascadeConfigError(f"--max-viewers must be a whole number, not {max_viewers!r}") from None
        if not 0 <= limit <= 1_000_000:
            raise CascadeConfigError("--max-viewers must be between 0 (no limit) and 1000000")
        return cls(region, limit, spread)


@dataclass(frozen=True)
class EdgeInfo:
    """A live node as viewer routing sees it."""
    node: NodeInfo
    region: str = DEFAULT_REGION
    viewers: int = 0
    max_viewers: int = 0
    other_work: float = 0.0   # viewer-equivalents of what else it does (other_work())
    links: frozenset[str] = frozenset()   # rooms it has a link in for (an edge of them)
    published_at: float = 0.0             # its wall clock when it published these (0: unknown)

    @property
    def node_id(self) -> str:
        return self.node.node_id

    @property
    def full(self) -> bool:
        return self.max_viewers > 0 and self.viewers >= self.max_viewers

    @property
    def open(self) -> bool:
        return not self.full and not getattr(self.node, "draining", False)

    def to_hash(self) -> dict[str, str]:
        links = sorted(self.links) if len(self.links) <= MAX_LINKS_PUBLISHED else []
        return {"region": self.region, "viewers": str(self.viewers), "max_viewers": str(self.max_viewers),
                "other_work": f"{self.other_work:.1f}", "links": ",".join(links)}

    @classmethod
    def from_hash(cls, node: NodeInfo, h: Mapping[str, str]) -> "EdgeInfo":
        """A node that published nothing (or garbage) counts as default region, no limit known, no other work."""
        region = h.get("region") or DEFAULT_REGION
        try:
            viewers, limit = max(0, int(h.get("viewers", 0))), max(0, int(h.get("max_viewers", 0)))
        except ValueError:
            viewers, limit = 0, 0
        try:
            work = float(h.get("other_work", 0))
            work = work if 0 <= work <= 1e6 else 0.0   # (also refuses nan)
        except ValueError:
            work = 0.0
        links = frozenset(r for r in h.get("links", "").split(",")[:MAX_LINKS_PUBLISHED] if ROOM_ID_RE.match(r))
        try:
            at = float(h.get("published_at", 0))
            at = at if 0 <= at < 1e11 else 0.0
        except ValueError:
            at = 0.0
        return cls(node, region if REGION_RE.match(region) else DEFAULT_REGION, viewers, limit, work, links, at)


LOCAL, EDGE, REDIRECT, FULL = "local", "edge", "redirect", "full"


@dataclass(frozen=True)
class ViewerRoute:
    action: str                       # LOCAL: the origin serves it; EDGE: served here from a relay; REDIRECT; FULL
    node: Optional[NodeInfo] = None   # where REDIRECT sends it
    reason: str = ""


def best_edge(candidates: Mapping[str, EdgeInfo], region: str, exclude: set[str]) -> Optional[EdgeInfo]:
    """The node with room for a viewer: same region first, then fewest viewers, then load; ties by id."""
    open_nodes = [e for e in candidates.values() if e.node_id not in exclude and e.open]
    if not open_nodes:
        return None
    return min(open_nodes, key=lambda e: (e.region != region, e.viewers, e.node.load, e.node_id))


def route_viewer(me: EdgeInfo, owner: EdgeInfo, live: Mapping[str, EdgeInfo], spread: bool = False,
                 room: str = "", pending: Optional[Mapping[str, int]] = None) -> ViewerRoute:
    """Where a viewer of `room` placed on `owner`, arriving at `me`, is served. `live`: every live node. With
    `spread`: by load over the region (`pending`: viewers sent to each node since its count was published)."""
    if spread and me.region == owner.region:
        return _spread(me, owner, live, room, pending or {})
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


def _spread(me: EdgeInfo, owner: EdgeInfo, live: Mapping[str, EdgeInfo], room: str,
            pending: Mapping[str, int]) -> ViewerRoute:
    def has_link(e: EdgeInfo) -> bool:
        return e.node_id == owner.node_id or room in e.links

    def cost(e: EdgeInfo) -> float:
        """Its load with this viewer, and a new link if it would need one."""
        return e.viewers + e.other_work + pending.get(e.node_id, 0) + (0.0 if has_link(e) else LINK_VIEWERS)

    open_nodes = [e for e in live.values() if e.region == me.region and e.open]
    if not open_nodes:
        return ViewerRoute(FULL, reason=f"no node of region {me.region} has room for another viewer")
    best = min(open_nodes, key=lambda e: (cost(e), e.node_id != owner.node_id, e.node_id))
    # the slack keeps a viewer where it arrived (no proxying) while loads are close; a new link must pay outright
    if me.open and (best.node_id == me.node_id or has_link(me) and cost(me) <= cost(best) + SPREAD_SLACK):
        if me.node_id == owner.node_id:
            return ViewerRoute(LOCAL)
        return ViewerRoute(EDGE, reason=f"spread: {cost(me):.0f} here, {cost(best):.0f} on {best.node_id}")
    return ViewerRoute(REDIRECT, best.node, f"spread: {best.node_id} at {cost(best):.0f}, {me.node_id} at "
                                            f"{cost(me):.0f}")
