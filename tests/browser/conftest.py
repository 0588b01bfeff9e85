"""Fixtures of the browser tests that run Chromium in network namespaces."""
from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pytest

from testkit.chromium import CHROMIUM
from testkit.media import make_clip
from testkit.netns import unavailable_reason
from tests.conftest import CACHE


@pytest.fixture(scope="module")
def netns_ok() -> None:
    reason = unavailable_reason()
    if reason:
        pytest.skip(reason)


@pytest.fixture(scope="module")
def chromium(netns_ok) -> Iterator:
    if not CHROMIUM.exists():
        pytest.skip("needs Debian's chromium at /usr/bin/chromium")
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as p:
        yield p


@pytest.fixture(scope="module")
def clip720() -> Path:
    """1280x720 VP8 + Opus at 1.5 Mbit/s, 4 s looped (the same cached file tests/integration/test_ladder.py uses)."""
    return make_clip(CACHE / "clip-1280x720-4s-gop30-v1.webm", seconds=4.0, width=1280, height=720,
                     bitrate=1_500_000, gop=30)
