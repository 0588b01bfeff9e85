"""Cascade end to end: a real redis-server, an origin and two edge nodes as real `liveclass serve`
processes, real aiortc publishers and viewers. The nodes are in three regions, so a viewer reaching an edge is
served there from the origin's SFU-to-SFU link; the origin takes one viewer and sends the next to an edge.

Every link drops 1 in 25 of its video packets on purpose (the origin's LIVECLASS_RELAY_TEST_DROP_EVERY hook):
viewers decoding on the edges show the edges' NACKs are answered across the link.
"""
from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path
from typing import Iterator, Optional

import aiohttp
import av
import numpy as np
import pytest
import redis
from aiortc import VideoStreamTrack

from sfu.rtp import rtcp_builder
from sfu.rtp.codec_info import parse_vp8
from sfu.rtp.rtp_header import RtpView
from testkit.lesson_peers import Peers
from testkit.peers import WhepViewer, WhipPublisher, offer
from testkit.redis_server import RedisServer
from testkit.server import ServerProcess, free_port

DROP_EVERY = 25


@pytest.fixture(scope="module")
def cluster(tmp_path_factory) -> Iterator[dict]:
    """Redis and nodes a (origin, region central, at most 1 viewer), b (east) and c (west), in redirect mode (a
    full origin's 307 names the edge the viewer is sent to; the proxy mode has its own test below)."""
    tmp = tmp_path_factory.mktemp("cascade")
    r = RedisServer(log_dir=tmp)
    old = os.environ.get("LIVECLASS_RELAY_TEST_DROP_EVERY")
    os.environ["LIVECLASS_RELAY_TEST_DROP_EVERY"] = str(DROP_EVERY)
    nodes: dict[str, ServerProcess] = {}
    try:
        for node_id, region, extra in (("a", "central", ("--max-viewers", "1")), ("b", "east", ()),
                                       ("c", "west", ())):
            nodes[node_id] = ServerProcess(
                extra=("--redis", r.url, "--node-id", node_id, "--region", region, "--no-ladder",
                       "--cluster-forward", "redirect", *extra),
                log_path=tmp / f"node-{node_id}.log")
        db = redis.Redis.from_url(r.url, decode_responses=True)
        deadline = time.monotonic() + 10
        while not all(db.exists(f"liveclass:cascade:{n}") for n in nodes):
            assert time.monotonic() < deadline, "nodes did not register"
            time.sleep(0.05)
        yield {"redis": r, "db": db, **nodes}
    finally:
        if old is None:
            os.environ.pop("LIVECLASS_RELAY_TEST_DROP_EVERY", None)
        else:
            os.environ["LIVECLASS_RELAY_TEST_DROP_EVERY"] = old
        for n in nodes.values():
            n.stop()
        r.stop()


def place_on(db: redis.Redis, room: str, node_id: str) -> None:
    """The room's placement, as the first request would have made it on an empty cluster (the earlier tests'
    rooms weigh on a's load, so the least-loaded rule alone would put this one elsewhere)."""
    db.set(f"liveclass:room:{room}", node_id, px=60_000)


async def stats(node: ServerProcess, room: str) -> dict:
    async with aiohttp.ClientSession() as s:
        async with s.get(f"{node.base_url}/api/stats", params={"room": room, "token": node.token(room, "admin")}) as r:
            assert r.status == 200
            return await r.json()


async def until(cond, timeout: float, what: str) -> float:
    """Seconds until the async or plain condition held (polled every 100 ms)."""
    start = time.monotonic()
    while True:
        value = cond()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return time.monotonic() - start
        assert time.monotonic() - start < timeout, f"not within {timeout} s: {what}"
        await asyncio.sleep(0.1)


async def frames_grow(viewer: WhepViewer, by: int = 10, timeout: float = 10) -> None:
    start = viewer.frames
    await until(lambda: viewer.frames >= start + by, timeout, f"viewer decodes {by} more frames")


def links_out(st: dict) -> list[dict]:
    return [link for room in st["rooms"] for link in room["relays"]]


async def test_origin_and_two_edges_viewers_decode(cluster, clip) -> None:
    a, b, c = cluster["a"], cluster["b"], cluster["c"]
    room = "cascade"
    place_on(cluster["db"], room, "a")
    peers = Peers()
    try:
        await peers.publish(a, room, clip)
        assert cluster["db"].get(f"liveclass:room:{room}") == "a"
        on_b = [await peers.play(b, room) for _ in range(2)]
        on_c = await peers.play(c, room)
        assert [v.resource_base for v in on_b] == [b.base_url] * 2 and on_c.resource_base == c.base_url
        for v in (*on_b, on_c):
            await frames_grow(v, 20, 15)
        origin = await stats(a, room)
        assert origin["viewers"] == 0 and origin["relays_out"] == 2, origin
        links = links_out(origin)
        assert sorted(link["edge"] for link in links) == ["b", "c"]  # one link per edge, not per viewer
        for link in links:
            kinds = sorted(s["kind"] for s in link["streams"])
            assert kinds == ["audio", "video"], link["streams"]  # each layer (one here) and the audio, once
        edge_b = await stats(b, room)
        assert edge_b["viewers"] == 2 and edge_b["relays_in"] == 1 and edge_b["links_in"][0]["origin"] == "a"
        # loss on the link, repaired from the origin's cache
        video = [s for link in links for s in link["streams"] if s["kind"] == "video"]
        assert all(s["test_dropped"] > 0 for s in video), video
        await until(lambda: _recovered(b, room), 5, "edge b recovered dropped packets")
        # the last viewer of an edge leaves: its link ends, the origin forgets it
        await on_c.stop()
        await until(lambda: _links(a, room, 1), 8, "origin has one link left after c's viewer left")
        assert (await stats(c, room))["relays_in"] == 0
    finally:
        await peers.stop()


async def _links(node: ServerProcess, room: str, n: int) -> bool:
    return len(links_out(await stats(node, room))) == n


async def _recovered(node: ServerProcess, room: str) -> bool:
    st = await stats(node, room)
    streams = [s for link in st["links_in"] for f in link["feeds"] for s in f["streams"] if s["kind"] == "video"]
    return bool(streams) and all(s["nack_recovered"] > 0 for s in streams)


async def test_full_origin_sends_viewer_to_an_edge(cluster, clip) -> None:
    a = cluster["a"]
    room = "overflow"
    place_on(cluster["db"], room, "a")
    peers = Peers()
    try:
        await peers.publish(a, room, clip)
        first = await peers.play(a, room)
        assert first.resource_base == a.base_url           # the origin has room for one
        await until(lambda: _published_viewers(cluster["db"], "a", 1), 5, "a's viewer count in Redis")
        second = await peers.play(a, room)
        assert second.resource_base in (cluster["b"].base_url, cluster["c"].base_url), second.resource_base
        for v in (first, second):
            await frames_grow(v, 15, 15)
    finally:
        await peers.stop()


def _published_viewers(db: redis.Redis, node_id: str, n: int) -> bool:
    return db.hget(f"liveclass:cascade:{node_id}", "viewers") == str(n)


class LiveCamera(VideoStreamTrack):
    """Encoded live by aiortc (so a PLI really makes a keyframe; its encoder makes one only every 3000 frames)."""

    def __init__(self) -> None:
        super().__init__()
        self.n = 0

    async def recv(self) -> av.VideoFrame:
        pts, time_base = await self.next_timestamp()
        img = np.zeros((180, 320, 3), dtype=np.uint8)
        img[..., 0] = (self.n * 4) % 256
        img[60:120, (self.n * 5) % 260:(self.n * 5) % 260 + 60] = 255
        self.n += 1
        frame = av.VideoFrame.from_ndarray(img, format="rgb24")
        frame.pts, frame.time_base = pts, time_base
        return frame


class KeyframeWatcher(WhepViewer):
    """A non-decoding viewer that notes when each VP8 keyframe starts arriving, and can send a PLI."""

    def __init__(self, *args, **kw) -> None:
        super().__init__(*args, count_only=True, **kw)
        self.keyframes: list[float] = []
        self.video_ssrc: Optional[int] = None
        self.rtp_listeners.append(self.watch)

    def watch(self, v: RtpView) -> None:
        if self.kinds.get(v.payload_type) != "video":
            return
        self.video_ssrc = v.ssrc
        d = parse_vp8(v.data, v.payload_start, v.payload_end)
        if d is not None and d.keyframe:
            self.keyframes.append(time.monotonic())

    def send_pli(self) -> bool:
        assert self.tap is not None and self.video_ssrc is not None
        return self.tap.send_rtcp(rtcp_builder.pli(1, self.video_ssrc))


async def test_pli_from_an_edge_viewer_gets_a_keyframe(cluster) -> None:
    a, b = cluster["a"], cluster["b"]
    room = "keyframes"
    place_on(cluster["db"], room, "a")
    pub = WhipPublisher(a.base_url, room, a.token(room, "teacher"), Path("unused"), video=False, audio=False)
    pub.tracks.append(LiveCamera())
    viewer = KeyframeWatcher(b.base_url, room, b.token(room, "terminal"))
    try:
        await pub.start()
        await viewer.start()
        await until(lambda: viewer.keyframes, 10, "first keyframe on the edge viewer")
        await asyncio.sleep(1.5)   # past the coalescing interval of the join's own requests
        before = len(viewer.keyframes)
        asked = time.monotonic()
        assert viewer.send_pli()
        took = await until(lambda: len(viewer.keyframes) > before, 3, "a keyframe after the edge viewer's PLI")
        print(f"keyframe {took * 1000:.0f} ms after a PLI through edge b")
        assert viewer.keyframes[before] > asked
        link = links_out(await stats(a, room))[0]
        assert link["plis"] >= 1
    finally:
        await viewer.stop()
        await pub.stop()


async def test_relay_endpoint_refuses_bad_requests(cluster) -> None:
    from signaling.auth.tokens import mint_relay
    a = cluster["a"]
    room = "refusals"
    good = await offer("recvonly")
    url = f"{a.base_url}/relay/{room}"

    async def post(token: Optional[str], body: str, ctype: str = "application/sdp") -> tuple[int, str]:
        headers = {"Content-Type": ctype, **({"Authorization": f"Bearer {token}"} if token else {})}
        async with aiohttp.ClientSession() as s:
            async with s.post(url, data=body, headers=headers) as r:
                return r.status, await r.text()

    assert (await post(None, good))[0] == 401
    status, text = await post(a.token(room, "teacher"), good)   # an access token is no cluster token
    assert status == 401 and "relay token" in text, text
    status, text = await post(mint_relay("another-secret-0123456789abcdef012345", room, "x"), good)
    assert status == 401, text
    status, text = await post(mint_relay(a.secret, "elsewhere", "x"), good)
    assert status == 403 and "another room" in text, text
    token = mint_relay(a.secret, room, "x")
    status, text = await post(token, "v=0\r\nnonsense")
    assert status == 400, text
    status, text = await post(token, good, "text/plain")
    assert status == 415, text
    status, text = await post(token, await offer("recvonly", kinds=("video",)))  # no data channel
    assert status == 400 and "data channel" in text, text


async def test_unreachable_origin_is_a_502_with_the_reason(cluster) -> None:
    """A room placed on a node that is registered but does not answer (its process hung, or gone before its
    key expired): the edge cannot open the link and says why."""
    b, db = cluster["b"], cluster["db"]
    port = free_port()  # nothing listens there
    db.sadd("liveclass:nodes", "zz")
    db.hset("liveclass:node:zz", mapping={"url": f"http://127.0.0.1:{port}", "rooms": "1", "sessions": "0",
                                         "heartbeat_at": "0"})
    db.set("liveclass:alive:zz", "x", px=20_000)
    db.hset("liveclass:cascade:zz", mapping={"region": "far", "viewers": "0", "max_viewers": "0"})
    db.set("liveclass:room:ghost", "zz", px=20_000)
    try:
        async with aiohttp.ClientSession() as s:
            async with s.post(f"{b.base_url}/whep/ghost", data=await offer("recvonly"), allow_redirects=False,
                              headers={"Content-Type": "application/sdp",
                                       "Authorization": f"Bearer {b.token('ghost', 'terminal')}"}) as r:
                text = await r.text()
        assert r.status == 502 and "zz" in text and "not reachable" in text, (r.status, text)
        assert (await stats(b, "ghost"))["links_in"] == []
    finally:
        for key in ("liveclass:alive:zz", "liveclass:node:zz", "liveclass:cascade:zz", "liveclass:room:ghost"):
            db.delete(key)
        db.srem("liveclass:nodes", "zz")


async def test_stage_on_an_edge_follows_the_lesson_through_redis(cluster, clip) -> None:
    """The lesson lives on the origin (room WebSockets are proxied there); the edge learns who is on stage from
    the origin's lesson facts on Redis pub/sub, and its stage viewer plays that classroom over the link."""
    from testkit.room_client import RoomClient
    a, b = cluster["a"], cluster["b"]
    room = "stagecast"
    place_on(cluster["db"], room, "a")
    teacher_token = a.token(room, "teacher", identity="ms-li")
    t1_token = b.token(room, "terminal", identity="t1")
    async with aiohttp.ClientSession() as http:
        teacher = await RoomClient(http, a.base_url, room, teacher_token).connect()
        t1 = await RoomClient(http, b.base_url, room, t1_token).connect()   # proxied to a
        classroom = WhipPublisher(a.base_url, room, t1_token, clip, audio=False)
        stage = WhepViewer(b.base_url, room, b.token(room, "terminal", identity="t2"), query="?source=stage")
        try:
            assert (await teacher.request("lesson_start"))["type"] == "ack"
            await classroom.start()
            await stage.start()
            assert stage.resource_base == b.base_url
            await asyncio.sleep(0.5)
            assert stage.frames == 0          # nobody on stage yet
            await teacher.request("stage_call", identity="t1")
            await frames_grow(stage, 15, 15)
            lesson = (await stats(b, room))["rooms"][0]["lesson"]
            assert lesson is not None and lesson["on_stage"] == "t1", lesson
            await teacher.request("stage_end")
            await until(lambda: _edge_stage(b, room, None), 5, "the edge's stage emptied")
        finally:
            for p in (stage, classroom):
                await p.stop()
            await t1.close()
            await teacher.close()


async def test_a_participant_removed_on_the_origin_is_refused_on_the_edge(cluster, clip) -> None:
    """Removal is the origin's lesson's word: the edge ends the removed classroom's sessions there and refuses it
    a new one, as the origin would (the lesson facts on Redis carry the removed identities)."""
    from testkit.room_client import RoomClient
    a, b = cluster["a"], cluster["b"]
    room = "expel"
    place_on(cluster["db"], room, "a")
    t1_token = b.token(room, "terminal", identity="t1")
    pub = WhipPublisher(a.base_url, room, a.token(room, "teacher", identity="ms-li"), clip)
    viewer = WhepViewer(b.base_url, room, t1_token)
    async with aiohttp.ClientSession() as http:
        teacher = await RoomClient(http, a.base_url, room, a.token(room, "teacher", identity="ms-li")).connect()
        t1 = await RoomClient(http, b.base_url, room, t1_token).connect()   # proxied to a
        try:
            await pub.start()
            await viewer.start()
            assert viewer.resource_base == b.base_url
            await frames_grow(viewer, 10, 15)

            async def session_gone() -> bool:  # the edge no longer knows it (it sends the request to the origin)
                async with http.get(b.base_url + viewer.location, allow_redirects=False,
                                    headers={"Authorization": f"Bearer {t1_token}"}) as r:
                    return r.status in (307, 404)
            assert not await session_gone()                         # served by the edge until the removal
            assert (await teacher.request("remove", identity="t1"))["type"] == "ack"
            print(f"\nremoved classroom's edge session ended {await until(session_gone, 5, 'edge session ended'):.2f} s"
                  " after the removal")
            async with http.post(f"{b.base_url}/whep/{room}", data=await offer("recvonly"), allow_redirects=False,
                                 headers={"Content-Type": "application/sdp", "Authorization": f"Bearer {t1_token}"}) as r:
                text = await r.text()
            assert r.status == 403 and "removed" in text, (r.status, text)
        finally:
            for p in (viewer, pub):
                try:
                    await p.stop()
                except aiohttp.ClientError:
                    pass
            await t1.close()
            await teacher.close()


async def _edge_stage(node: ServerProcess, room: str, identity: Optional[str]) -> bool:
    rooms = (await stats(node, room))["rooms"]
    return bool(rooms) and rooms[0]["stage"] == identity


async def test_origin_restart_edge_viewer_keeps_its_session(cluster, clip, tmp_path) -> None:
    """kill -9 of the origin: the edge's link notices the silence and asks again, with backoff; once the origin
    is back (same node id, new process) and the teacher publishes again, the edge viewer's own session, never
    renegotiated, decodes again."""
    b, r = cluster["b"], cluster["redis"]
    room = "phoenix"
    extra = ("--redis", r.url, "--node-id", "o2", "--region", "central", "--no-ladder")
    origin = ServerProcess(extra=extra, log_path=tmp_path / "o2.log")
    place_on(cluster["db"], room, "o2")
    pub = WhipPublisher(origin.base_url, room, origin.token(room, "teacher"), clip)
    viewer = WhepViewer(b.base_url, room, b.token(room, "terminal"))
    again: Optional[WhipPublisher] = None
    try:
        await until(lambda: cluster["db"].exists("liveclass:alive:o2"), 5, "o2 registered")
        await pub.start()
        await viewer.start()
        assert viewer.resource_base == b.base_url
        await frames_grow(viewer, 15, 15)
        origin.proc.kill()
        origin.proc.wait()
        await pub.pc.close()
        origin.stop()
        killed = time.monotonic()
        origin = ServerProcess(extra=extra, log_path=tmp_path / "o2-again.log")
        await until(lambda: _link_connects(b, room, 2), 15, "the edge's link re-opened to the restarted origin")
        again = WhipPublisher(origin.base_url, room, origin.token(room, "teacher"), clip)
        await again.start()
        await frames_grow(viewer, 15, 15)
        print(f"edge viewer decoding again {time.monotonic() - killed:.1f} s after kill -9 of its origin")
        assert (await stats(b, room))["viewers"] >= 1 and viewer.pc.connectionState == "connected"
    finally:
        for p in (viewer, again):
            if p is not None:
                await p.stop()
        await pub.http.close()
        origin.stop()


async def _link_connects(node: ServerProcess, room: str, n: int) -> bool:
    links = (await stats(node, room))["links_in"]
    return bool(links) and links[0]["connects"] >= n and links[0]["state"] == "connected"


async def test_full_origin_in_proxy_mode_proxies_the_viewer_to_an_edge(cluster, clip, tmp_path) -> None:
    """`--cluster-forward proxy`: the full origin forwards the second viewer's offer to an edge, which opens the
    room's link before answering (the client only ever talks to the origin's URL)."""
    r = cluster["redis"]
    origin = ServerProcess(extra=("--redis", r.url, "--node-id", "p1", "--region", "central", "--no-ladder",
                                  "--cluster-forward", "proxy", "--max-viewers", "1"), log_path=tmp_path / "p1.log")
    room = "proxied"
    place_on(cluster["db"], room, "p1")
    peers = Peers()
    try:
        await until(lambda: cluster["db"].exists("liveclass:cascade:p1"), 5, "p1 registered")
        await peers.publish(origin, room, clip)
        first = await peers.play(origin, room)
        await until(lambda: _published_viewers(cluster["db"], "p1", 1), 5, "p1's viewer count in Redis")
        second = await peers.play(origin, room)
        assert second.resource_base == origin.base_url   # answered through the origin...
        for v in (first, second):
            await frames_grow(v, 15, 15)
        edges = {n: (await stats(cluster[n], room)) for n in ("a", "b", "c")}
        serving = [n for n, st in edges.items() if st["viewers"] == 1]
        assert serving == ["a"], edges   # ...served by an edge: a, the one of the origin's own region
        assert edges["a"]["links_in"][0]["origin"] == "p1"
        assert len(links_out(await stats(origin, room))) == 1
    finally:
        await peers.stop()
        origin.stop()
