from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator

import pytest

from testkit.media import make_clip
from testkit.redis_server import RedisServer
from testkit.server import ServerProcess

CACHE = Path(os.environ.get("LIVECLASS_TEST_CACHE", Path.home() / ".cache" / "liveclass-tests"))


@pytest.fixture(scope="session")
def clip() -> Path:
    """A 12 s 640x360 VP8 + Opus WebM clip, encoded once and cached across runs."""
    return make_clip(CACHE / "clip-640x360-v1.webm")


@pytest.fixture
def server(tmp_path):
    """`liveclass serve` as a subprocess on a free port, media on loopback."""
    s = ServerProcess(log_path=tmp_path / "server.log")
    yield s
    code = s.stop()
    assert code in (0, -2, 130), f"server exited with {code}: {s.log_tail()}"


@pytest.fixture(scope="session")
def h264_clip() -> Path:
    from testkit.media import make_h264_clip
    return make_h264_clip(CACHE / "clip-h264-640x360-v1.ts")


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A real redis-server on a free port, for cluster tests."""
    r = RedisServer(log_dir=tmp_path)
    yield r
    r.stop()
