"""What a lesson's report keeps when its node dies, and webhooks that cannot be delivered: `liveclass serve`
posts to a receiver that refuses connections and to one that answers after 30 s, while a classroom's room
WebSocket answers on time and its media keeps flowing; then the node is killed with SIGKILL mid-lesson and the
next start reports the lesson `interrupted`, with the minutes it had written."""
from __future__ import annotations

import asyncio
import signal
import time

import aiohttp
import pytest

from testkit.lesson_peers import Peers
from testkit.room_client import RoomClient
from testkit.school import Classroom, WebhookReceiver, course_now
from testkit.server import ServerProcess, free_port
from signaling.school.tracker import SAMPLE_S

pytestmark = pytest.mark.timeout(120)
ROOM = "chem-9"
SECRET = "hook-secret-for-the-crash-test"


async def test_dead_receivers_do_not_slow_the_lesson_and_kill_9_keeps_the_report(tmp_path, clip):
    slow = await WebhookReceiver(SECRET, delay_s=30).start()
    refused = f"http://127.0.0.1:{free_port()}/hook"   # nothing listens there
    library = tmp_path / "library"
    server = ServerProcess(log_path=tmp_path / "server.log", library=library,
                           extra=("--webhook", refused, "--webhook", slow.url, "--webhook-secret", SECRET))
    peers = Peers(dead_ok=True)
    async with aiohttp.ClientSession() as http:
        a = Classroom(server, ROOM, "cun-a", "A 村教学点", http)
        try:
            async with http.post(f"{server.base_url}/api/courses",
                                 json=course_now(ROOM, [("cun-a", "A"), ("cun-b", "B")]),
                                 headers={"Authorization": f"Bearer {server.token('*', 'admin')}"}) as r:
                assert r.status == 201
            teacher = await RoomClient(http, server.base_url, ROOM, server.token(ROOM, "teacher")).connect()
            pub = await peers.publish(server, ROOM, clip)
            await pub.connected()
            await a.join()
            assert (await teacher.request("lesson_start"))["type"] == "ack"
            started = time.time()
            # events pile up for both receivers (started, joined, and the chat below reaches nobody's webhook);
            # the lesson goes on: pings answered at once, room messages on time, video packets every second
            assert a.viewer is not None and a.ws is not None
            worst_ping, worst_chat = 0.0, 0.0
            for i in range(8):
                before = a.viewer.distinct_packets()
                t = time.monotonic()
                assert (await a.ws.request("ping"))["type"] == "pong"
                worst_ping = max(worst_ping, time.monotonic() - t)
                t = time.monotonic()
                await teacher.request("chat", text=f"第 {i} 题")
                await a.ws.next("chat", text=f"第 {i} 题")
                worst_chat = max(worst_chat, time.monotonic() - t)
                await asyncio.sleep(0.8)
                assert a.viewer.distinct_packets() > before + 10, "the teacher's media stopped reaching the classroom"
            assert worst_ping < 0.3 and worst_chat < 0.3, (worst_ping, worst_chat)
            await asyncio.sleep(SAMPLE_S + 0.5)    # at least one more write after the checks
            killed = time.time()
            server.proc.send_signal(signal.SIGKILL)
            server.proc.wait(10)
        finally:
            await a.close()
            await peers.stop()
            server.stop()
            await slow.stop()
        again = ServerProcess(log_path=tmp_path / "again.log", library=library)
        try:
            admin = again.token("*", "admin")
            async with http.get(f"{again.base_url}/api/lessons?from={int(started) - 60}&token={admin}") as r:
                assert r.status == 200
                lessons = (await r.json())["lessons"]
            assert [x["state"] for x in lessons] == ["interrupted"]
            async with http.get(f"{again.base_url}{lessons[0]['report_url']}?token={admin}") as r:
                report = await r.json()
        finally:
            again.stop()
    cun_a = {x["identity"]: x for x in report["classrooms"]}["cun-a"]
    known = killed - started
    # written every SAMPLE_S: at most that much (and a scheduling hiccup) is lost, nothing invented
    assert known - SAMPLE_S - 1.0 <= cun_a["present_s"] <= known + 0.5, (cun_a["present_s"], known)
    assert abs(report["duration_s"] - cun_a["present_s"]) < 1.0
    assert [x["identity"] for x in report["absent"]] == ["cun-b"]
    assert cun_a["quality"]["time_at_resolution"], cun_a["quality"]
