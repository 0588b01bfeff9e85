"""A timetabled lesson in `liveclass serve` (a real subprocess): a teacher publishing a clip over WHIP, three
receiving classrooms (room WebSocket + aiortc WHEP viewer each); one leaves and comes back, one never comes.
The lesson records itself with the course's metadata; the report has each classroom's minutes (against the
test's own timeline), the absent one, and how the picture reached them; the CSV parses; every webhook arrives
signed."""
from __future__ import annotations

import asyncio
import csv
import io
import time

import aiohttp
import pytest

from testkit.lesson_peers import Peers
from testkit.room_client import RoomClient
from testkit.school import Classroom, WebhookReceiver, course_now
from testkit.server import ServerProcess

pytestmark = pytest.mark.timeout(120)
ROOM = "math-3"
HOOK_SECRET = "hook-secret-0123456789"
TOLERANCE_S = 0.6


async def get_json(http: aiohttp.ClientSession, url: str, token: str) -> dict:
    async with http.get(url, headers={"Authorization": f"Bearer {token}"}) as r:
        assert r.status == 200, await r.text()
        return await r.json()


async def test_a_timetabled_lesson_reports_attendance_quality_and_webhooks(tmp_path, clip):
    receiver = await WebhookReceiver(HOOK_SECRET).start()
    server = ServerProcess(log_path=tmp_path / "server.log",
                           extra=("--webhook", receiver.url, "--webhook-secret", HOOK_SECRET))
    peers = Peers()
    admin = server.token("*", "admin")
    async with aiohttp.ClientSession() as http:
        rooms = [Classroom(server, ROOM, i, n, http) for i, n in
                 (("cun-a", "A 村教学点"), ("cun-b", "B 村教学点"), ("cun-c", "C 村教学点"))]
        a, b, c = rooms
        try:
            async with http.post(f"{server.base_url}/api/courses",
                                 json=course_now(ROOM, [(x.identity, x.name) for x in rooms]),
                                 headers={"Authorization": f"Bearer {server.token(ROOM, 'teacher')}"}) as r:
                assert r.status == 201, await r.text()
                course = await r.json()
            teacher = await RoomClient(http, server.base_url, ROOM,
                                       server.token(ROOM, "teacher", identity="li", name="李老师")).connect()
            pub = await peers.publish(server, ROOM, clip)
            await pub.connected()
            await a.join()
            await b.join()
            assert (await teacher.request("lesson_start"))["type"] == "ack"
            started = time.time()
            await asyncio.sleep(5)
            await b.leave()
            await asyncio.sleep(3)
            await b.join()
            await asyncio.sleep(5)
            assert (await teacher.request("lesson_end"))["type"] == "ack"
            ended = time.time()

            ready = (await receiver.wait_for("recording_ready"))[0].body["data"]
            lesson_id = (await receiver.wait_for("lesson_ended"))[0].body["data"]["lesson_id"]
            report = await get_json(http, f"{server.base_url}/api/lessons/{lesson_id}/report", admin)
        finally:
            for x in rooms:
                await x.close()
            await peers.stop()
            code = server.stop()
            await receiver.stop()
        assert code in (0, -2, 130), server.log_tail()

    # attendance against the test's own timeline
    by = {x["identity"]: x for x in report["classrooms"]}
    assert report["state"] == "ended" and abs(report["duration_s"] - (ended - started)) < TOLERANCE_S
    assert abs(by["cun-a"]["present_s"] - (ended - started)) < TOLERANCE_S
    b_expected = (b.left_at[0] - started) + (ended - b.joined_at[1])
    assert abs(by["cun-b"]["present_s"] - b_expected) < TOLERANCE_S, (by["cun-b"], b_expected)
    assert by["cun-b"]["reconnects"] == 1 and len(by["cun-b"]["visits"]) == 1   # a short absence: one visit
    assert [x["identity"] for x in report["absent"]] == ["cun-c"] and "cun-c" not in by
    assert report["summary"] == {"expected": 3, "attended_expected": 2, "attended": 2, "attendance_rate": 0.667}
    assert report["course"]["id"] == course["id"] and report["course"]["slot_id"] == course["lessons"][0]["id"]
    # how the picture reached them: the clip's 360 lines nearly all the time, little frozen
    for who in ("cun-a", "cun-b"):
        q = by[who]["quality"]
        assert q["time_at_resolution"].get("360p", 0) >= 0.6 * by[who]["present_s"] - 2, q
        assert q["frozen_s"] <= 2.5 and q["segments"], q
    # the recording started by itself and carries the course
    assert report["recording_id"] == ready["recording"]["id"]
    rec = ready["recording"]
    assert (rec["title"], rec["subject"], rec["grade"], rec["teacher"], rec["course_id"], rec["lesson_id"]) == (
        "分数的初步认识", "数学", "三年级", "李老师", course["id"], lesson_id)
    # every webhook signed, and the classrooms' comings and goings in order
    assert receiver.received and all(r.signed for r in receiver.received)
    kinds = [(r.event, r.body["data"].get("identity")) for r in receiver.received
             if r.event.startswith("classroom_")]
    assert kinds[:2] == [("classroom_joined", "cun-a"), ("classroom_joined", "cun-b")] or \
        kinds[:2] == [("classroom_joined", "cun-b"), ("classroom_joined", "cun-a")]
    assert kinds[2:4] == [("classroom_left", "cun-b"), ("classroom_joined", "cun-b")]
    assert sorted(kinds[4:]) == [("classroom_left", "cun-a"), ("classroom_left", "cun-b")]
    first = receiver.events("lesson_started")[0].body["data"]
    assert first["lesson_id"] == lesson_id and first["course"]["course_id"] == course["id"]
    assert receiver.events("lesson_ended")[0].body["data"]["report"]["summary"]["attended_expected"] == 2


async def test_the_csv_export_parses(tmp_path, clip):
    """A second, shorter lesson, on a server that records every room anyway (`--record '*'`): the recording
    still carries the course; the bureau's CSV over today, by school."""
    server = ServerProcess(log_path=tmp_path / "server.log", extra=("--record", "*"))
    peers = Peers()
    admin = server.token("*", "admin")
    async with aiohttp.ClientSession() as http:
        a = Classroom(server, ROOM, "cun-a", "A 村教学点", http)
        try:
            async with http.post(f"{server.base_url}/api/courses", headers={"Authorization": f"Bearer {admin}"},
                                 json=course_now(ROOM, [("cun-a", "A 村教学点"), ("cun-c", "C 村教学点")])) as r:
                assert r.status == 201
            teacher = await RoomClient(http, server.base_url, ROOM, server.token(ROOM, "teacher")).connect()
            await a.join()
            await teacher.request("lesson_start")
            await asyncio.sleep(3)
            await teacher.request("lesson_end")
            today = time.strftime("%Y-%m-%d", time.gmtime())
            query = f"from={today}&to={today}&school=村小&token={admin}"
            async with http.get(f"{server.base_url}/api/reports/attendance?{query}") as r:
                assert r.status == 200 and r.headers["Content-Type"].startswith("text/csv")
                text = (await r.read()).decode("utf-8-sig")
            async with http.get(f"{server.base_url}/api/lessons?from={today}&token={admin}") as r:
                held = (await r.json())["lessons"][0]
            async with http.get(f"{server.base_url}/api/library/{held['recording_id']}") as r:
                recording = await r.json()
            assert (recording["title"], recording["subject"], recording["lesson_id"]) == (
                "分数的初步认识", "数学", held["id"])
        finally:
            await a.close()
            await peers.stop()
            server.stop()
    rows = list(csv.DictReader(io.StringIO(text)))
    by = {r["classroom"]: r for r in rows if r["lesson_state"] == "ended"}
    assert by["cun-a"]["attended"] == "yes" and 2.5 / 60 <= float(by["cun-a"]["present_min"]) <= 3.6 / 60
    assert by["cun-c"]["attended"] == "no" and by["cun-c"]["expected"] == "yes"
    assert by["cun-a"]["course"] == "分数的初步认识" and by["cun-a"]["classroom_name"] == "A 村教学点"
