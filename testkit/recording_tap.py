"""Where a consumer's output goes in unit tests: a transport that is ready and keeps what it is given."""
from __future__ import annotations


class RecordingTap:
    def __init__(self) -> None:
        self.ready = True
        self.sent: list[bytes] = []

    def send_rtp(self, data) -> bool:
        self.sent.append(bytes(data))
        return True

    def send_rtcp(self, data) -> bool:
        return True
