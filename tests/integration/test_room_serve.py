"""The room WebSocket in `liveclass serve` (a real subprocess), with tokens from `liveclass token`."""
from __future__ import annotations

import os
import subprocess
import sys

import aiohttp

from signaling.lesson.room_protocol import Close, Code
from testkit.room_client import RoomClient


def cli_token(secret: str, *args: str) -> str:
    return subprocess.run([sys.executable, "-m", "signaling.cli", "token", "--room", "lesson", *args],
                          env={**os.environ, "LIVECLASS_SECRET": secret}, capture_output=True, text=True,
                          check=True).stdout.strip()


async def test_a_lesson_over_the_served_websocket(server):
    teacher_token = cli_token(server.secret, "--role", "teacher", "--identity", "ms-li", "--name", "Ms Li")
    camera_only = cli_token(server.secret, "--role", "terminal", "--identity", "village", "--sources", "camera")
    async with aiohttp.ClientSession() as http:
        teacher = await RoomClient(http, server.base_url, "lesson", teacher_token).connect()
        village = await RoomClient(http, server.base_url, "lesson", camera_only).connect()
        assert village.welcome["you"]["sources"] == ["camera"]
        assert (await teacher.request("lesson_start"))["type"] == "ack"
        await village.request("hand_raise")
        assert (await teacher.next("hands"))["queue"] == ["village"]
        await teacher.request("stage_call", identity="village")
        assert (await village.next("stage"))["identity"] == "village"
        # no microphone in its grant: it is on stage with its camera only, and cannot be unmuted
        assert (await teacher.request("unmute", identity="village"))["code"] == Code.INVALID_TARGET
        assert (await village.request("publish", sources=["microphone"]))["code"] == Code.FORBIDDEN
        assert (await village.request("publish", sources=["camera"]))["type"] == "ack"
        await teacher.request("lesson_end")
        assert await village.next("lesson", live=False)
        await village.send("leave")
        assert await village.closed() == Close.NORMAL
        await teacher.close()
