"""What the SFU's tests with real peers share: nodes on loopback and the aiortc peers a test makes."""
from __future__ import annotations

from pathlib import Path
from typing import AsyncIterator, Callable, Optional

import pytest

from sfu.node import SfuNode
from testkit.media import make_clip
from testkit.node_peers import NodePeers
from tests.conftest import CACHE


@pytest.fixture
async def nodes() -> AsyncIterator[Callable[..., SfuNode]]:
    """Makes SFU nodes with media on loopback and no ladder (announcing `public_ip` if given); each is closed
    when the test ends."""
    made: list[SfuNode] = []

    def make(public_ip: Optional[str] = None) -> SfuNode:
        made.append(SfuNode(["127.0.0.1"], public_ip, ladder_rungs=()))
        return made[-1]

    yield make
    for n in made:
        await n.close()


@pytest.fixture
def node(nodes: Callable[..., SfuNode]) -> SfuNode:
    return nodes()


@pytest.fixture(scope="session")
def quick_clip() -> Path:
    """4 s of 320x180 VP8 with a keyframe every 0.2 s (a joiner waits for little) and Opus, cached across runs."""
    return make_clip(CACHE / "clip-320x180-4s-gop6-v1.webm", seconds=4.0, width=320, height=180, bitrate=400_000,
                     gop=6)


@pytest.fixture
async def peers(quick_clip: Path) -> AsyncIterator[NodePeers]:
    """Publishers and viewers of the quick clip, closed when the test ends."""
    made = NodePeers(quick_clip)
    yield made
    await made.close()
