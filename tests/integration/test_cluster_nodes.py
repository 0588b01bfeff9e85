"""GET /api/cluster/nodes: the list of live nodes a page moves through when its own node dies.

The pure ordering, then real `liveclass serve` processes: one alone (just itself), and two nodes with a real
redis-server (both listed with their advertise URLs, this node first; a killed node leaves the list once its
Redis key expires). Rights as /api/stats: 401 without a valid token, 403 for another room's token or no room,
admin tokens for any room. CORS as WHIP/WHEP, preflight included (a page of another node asks after a failover).
"""
from __future__ import annotations

import asyncio
import time
from pathlib import Path

import aiohttp
import redis

from signaling.cluster.placement import NodeInfo
from signaling.cluster.cluster_nodes import node_list
from signaling.auth.tokens import mint
from testkit.server import ServerProcess

PATH = "/api/cluster/nodes"


async def _get(url: str, **kw) -> tuple[int, dict, object]:
    async with aiohttp.ClientSession() as s:
        async with s.get(url, **kw) as r:
            body = await r.json() if r.content_type == "application/json" else await r.text()
            return r.status, dict(r.headers), body


def test_node_list_puts_this_node_first_and_leaves_draining_nodes_out() -> None:
    live = {"c": NodeInfo("c", "http://10.0.0.3:8081"), "a": NodeInfo("a", "http://10.0.0.1:8081"),
            "b": NodeInfo("b", "http://10.0.0.2:8081"), "d": NodeInfo("d", "http://10.0.0.4:8081", draining=True)}
    assert node_list("b", "http://10.0.0.2:8081", live) == [
        {"id": "b", "url": "http://10.0.0.2:8081"}, {"id": "a", "url": "http://10.0.0.1:8081"},
        {"id": "c", "url": "http://10.0.0.3:8081"}]
    # Redis unreachable (None) or this node not (yet) registered: still this node
    assert node_list("b", "http://h:1", None) == [{"id": "b", "url": "http://h:1"}]
    assert node_list("x", "http://h:1", {}) == [{"id": "x", "url": "http://h:1"}]
    # behind one TLS front, pages are given the front's URL, never the nodes' internal ones
    front = {n: NodeInfo(n, f"http://127.0.0.1:808{i}", public_url="https://class.example.cn")
             for i, n in enumerate(("a", "b"))}
    assert {x["url"] for x in node_list("a", "https://class.example.cn", front)} == {"https://class.example.cn"}


async def test_single_process_lists_itself_with_room_or_admin_token_only(server: ServerProcess) -> None:
    url = server.base_url + PATH
    token = server.token("physics", "terminal")
    status, headers, body = await _get(url, params={"room": "physics"}, headers={"Authorization": f"Bearer {token}"})
    assert status == 200
    assert body == {"self": "local", "nodes": [{"id": "local", "url": server.base_url}], "ttl": 5}
    assert headers["Access-Control-Allow-Origin"] == "*"
    assert headers["Cache-Control"] == "private, max-age=5"  # small and cacheable for a few seconds
    assert (await _get(url, params={"room": "physics", "token": token}))[0] == 200  # ?token= as on /api/stats
    admin = server.token("*", "admin")
    assert (await _get(url, params={"token": admin}))[0] == 200  # an admin needs no room

    # 401: no token, garbage, another secret's token; 403: another room's token, or no room
    assert (await _get(url, params={"room": "physics"}))[0] == 401
    assert (await _get(url, params={"room": "physics", "token": "garbage"}))[0] == 401
    forged = mint("another-secret-0123456789abcdef01234", "physics", "terminal")
    status, headers, _ = await _get(url, params={"room": "physics", "token": forged})
    assert status == 401 and headers["Access-Control-Allow-Origin"] == "*"  # the page can read why
    status, headers, text = await _get(url, params={"room": "maths", "token": token})
    assert status == 403 and headers["Access-Control-Allow-Origin"] == "*" and "token of the room" in text
    assert (await _get(url, params={"token": token}))[0] == 403


async def test_cors_preflights_of_the_node_list_and_ice_servers(server: ServerProcess) -> None:
    """A page that moved to this node from another one asks with `Authorization`: the browser preflights."""
    preflight = {"Origin": "http://other-node.example:8081", "Access-Control-Request-Method": "GET",
                 "Access-Control-Request-Headers": "authorization"}
    async with aiohttp.ClientSession() as s:
        for path in (PATH + "?room=r1", "/api/ice-servers?room=r1", "/whep/r1", "/whip/r1"):
            async with s.options(server.base_url + path, headers=preflight) as r:
                assert r.status in (200, 204), path
                assert r.headers["Access-Control-Allow-Origin"] == "*", path
                assert "authorization" in r.headers["Access-Control-Allow-Headers"].lower(), path
                assert "GET" in r.headers["Access-Control-Allow-Methods"], path


async def test_cluster_lists_live_nodes_and_drops_a_killed_one(redis_server, tmp_path: Path) -> None:
    nodes = {n: ServerProcess(extra=("--redis", redis_server.url, "--node-id", n),
                              log_path=tmp_path / f"node-{n}.log") for n in ("a", "b")}
    try:
        db = redis.Redis.from_url(redis_server.url, decode_responses=True)
        deadline = time.monotonic() + 10
        while not all(db.exists(f"liveclass:alive:{n}") for n in nodes):
            assert time.monotonic() < deadline, "both nodes registered"
            await asyncio.sleep(0.05)
        a, b = nodes["a"], nodes["b"]
        token = a.token("physics", "student")
        status, _, body = await _get(b.base_url + PATH, params={"room": "physics", "token": token})
        assert status == 200
        assert body == {"self": "b", "nodes": [{"id": "b", "url": b.base_url}, {"id": "a", "url": a.base_url}],
                        "ttl": 5}
        assert (await _get(a.base_url + PATH, params={"room": "physics", "token": token}))[2]["nodes"] == [
            {"id": "a", "url": a.base_url}, {"id": "b", "url": b.base_url}]

        b.proc.kill()  # SIGKILL: its Redis key expires (3 s TTL); node a's cache is 2 s
        b.proc.wait()
        killed = time.monotonic()
        while True:
            body = (await _get(a.base_url + PATH, params={"room": "physics", "token": token}))[2]
            if body["nodes"] == [{"id": "a", "url": a.base_url}]:
                break
            assert time.monotonic() - killed < 8, f"node b still listed: {body}"
            await asyncio.sleep(0.2)
    finally:
        for n in nodes.values():
            n.stop()
