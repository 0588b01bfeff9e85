"""Test peers by what they are in a lesson: a teacher publishing a clip to a room of a node, a classroom (or
another role) playing it there with that node's token, and the set of a test's peers, stopped together at its
end."""
from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any, Protocol, TypeVar, Union

import aiohttp

from testkit.peers import WhepViewer, WhipPublisher

Peer = Union[WhipPublisher, WhepViewer]
P = TypeVar("P", WhipPublisher, WhepViewer)


class Node(Protocol):
    """A server the peers talk to (testkit.server.ServerProcess)."""
    base_url: str

    def token(self, room: str, role: str, ttl: int = 3600, **kw: Any) -> str: ...


def teacher(node: Node, room: str, clip: Path, **kw: Any) -> WhipPublisher:
    """A teacher that will publish `clip` to `room` on `node` (not started)."""
    return WhipPublisher(node.base_url, room, node.token(room, "teacher"), clip, **kw)


def classroom(node: Node, room: str, role: str = "terminal", **kw: Any) -> WhepViewer:
    """A viewer of `room` on `node`, a classroom unless `role` says otherwise (not started)."""
    return WhepViewer(node.base_url, room, node.token(room, role), **kw)


class Peers:
    """The peers of a test, stopped by stop() the last made first. dead_ok: the test kills nodes, so a peer's
    goodbye may find its node gone; that refusal does not fail the test."""

    def __init__(self, dead_ok: bool = False) -> None:
        self.dead_ok = dead_ok
        self.peers: list[Peer] = []

    def add(self, peer: P) -> P:
        self.peers.append(peer)
        return peer

    def teacher(self, node: Node, room: str, clip: Path, **kw: Any) -> WhipPublisher:
        return self.add(teacher(node, room, clip, **kw))

    def classroom(self, node: Node, room: str, role: str = "terminal", **kw: Any) -> WhepViewer:
        return self.add(classroom(node, room, role, **kw))

    async def publish(self, node: Node, room: str, clip: Path, **kw: Any) -> WhipPublisher:
        """A teacher publishing `clip` to `room` on `node`, started."""
        pub = self.teacher(node, room, clip, **kw)
        await pub.start()
        return pub

    async def play(self, node: Node, room: str, role: str = "terminal", **kw: Any) -> WhepViewer:
        """A viewer of `room` on `node`, started."""
        viewer = self.classroom(node, room, role, **kw)
        await viewer.start()
        return viewer

    async def stop(self) -> None:
        for p in reversed(self.peers):
            try:
                await p.stop()
            except aiohttp.ClientError:
                if not self.dead_ok:
                    raise


async def frames_grow(viewer: WhepViewer, by: int = 10, timeout: float = 10) -> None:
    """The viewer decodes `by` more video frames within timeout."""
    start, deadline = viewer.frames, time.monotonic() + timeout
    while viewer.frames < start + by:
        assert time.monotonic() < deadline, f"viewer decoded {viewer.frames - start} frames in {timeout} s"
        await asyncio.sleep(0.1)


async def lesson_plays(node: Node, room: str, clip: Path, role: str = "terminal") -> None:
    """A teacher publishes `clip` to `room` on `node` and a viewer there decodes it; both end after."""
    peers = Peers()
    try:
        await peers.publish(node, room, clip)
        await frames_grow(await peers.play(node, room, role))
    finally:
        await peers.stop()
