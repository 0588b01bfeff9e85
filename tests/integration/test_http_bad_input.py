"""Every bad WHIP/WHEP request gets its status and a plain-text reason, and leaves nothing behind."""
from __future__ import annotations

import asyncio
import re
import time

import aiohttp
import jwt

from testkit.peers import WhipPublisher, offer


async def metrics(http: aiohttp.ClientSession, base: str) -> dict[str, float]:
    async with http.get(base + "/metrics") as r:
        text = await r.text()
    out = {"text": text}
    for line in text.splitlines():
        m = re.match(r"^(\w+(?:\{[^}]*\})?) (\S+)$", line)
        if m:
            out[m.group(1)] = float(m.group(2))
    return out


async def post(http, url, body, token=None, ctype="application/sdp"):
    headers = {"Content-Type": ctype}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    async with http.post(url, data=body, headers=headers) as r:
        return r.status, await r.text(), r.headers


async def test_bad_requests_get_clear_errors_and_leak_nothing(server, clip):
    base = server.base_url
    teacher = server.token("room1", "teacher")
    student = server.token("room1", "student")
    pub_offer = await offer("sendonly")
    view_offer = await offer("recvonly")
    async with aiohttp.ClientSession() as http:
        async with http.get(base + "/healthz") as r:
            assert r.status == 200
        # warm up one full publish/play cycle so lazily created resources exist before the baseline
        p = WhipPublisher(base, "warm", server.token("warm", "teacher"), clip)
        await p.start()
        await p.connected()
        await p.stop()
        await asyncio.sleep(1.0)
        before = await metrics(http, base)

        whip, whep = base + "/whip/room1", base + "/whep/room1"
        expired = server.token("room1", "teacher", ttl=1)
        await asyncio.sleep(1.1)
        none_alg = jwt.encode({"sub": "x", "room": "room1", "role": "teacher", "exp": time.time() + 60},
                              None, algorithm="none")
        no_sub = jwt.encode({"sub": "x", "room": "room1", "role": "observer", "can_subscribe": False,
                             "exp": time.time() + 60}, server.secret, algorithm="HS256")
        cases = [
            ("no token", whip, pub_offer, None, "application/sdp", 401),
            ("garbage token", whip, pub_offer, "abc", "application/sdp", 401),
            ("foreign secret", whip, pub_offer, jwt.encode({"sub": "x", "room": "room1", "role": "teacher",
                                                             "exp": time.time() + 60}, "x" * 32), "application/sdp", 401),
            ("expired", whip, pub_offer, expired, "application/sdp", 401),
            ("alg none", whip, pub_offer, none_alg, "application/sdp", 401),
            ("other room", whip, pub_offer, server.token("room2", "teacher"), "application/sdp", 403),
            ("student publishes", whip, pub_offer, student, "application/sdp", 403),
            ("no subscribe right", whep, view_offer, no_sub, "application/sdp", 403),
            ("wrong content type", whip, pub_offer, teacher, "application/json", 415),
            ("oversized body", whip, "v=0\r\n" + "a=x\r\n" * 20000, teacher, "application/sdp", 413),
            ("not sdp", whip, "hello", teacher, "application/sdp", 400),
            ("no media", whip, "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n", teacher, "application/sdp", 400),
            ("broken media", whip, pub_offer.replace("a=fingerprint", "a=fingerprintx").replace("a=ice-ufrag", "a=x"),
             teacher, "application/sdp", 400),
            ("garbled m-line", whip, re.sub(r"m=video [^\r\n]*", "m=video x y z", pub_offer), teacher,
             "application/sdp", 400),
            ("publisher that sends nothing", whip, view_offer, teacher, "application/sdp", 400),
            ("viewer that receives nothing", whep, pub_offer, student, "application/sdp", 400),
            ("binary body", whip, b"\xff\xfe\x00" * 100, teacher, "application/sdp", 400),
            ("bad room name", base + "/whip/..%2Fetc", pub_offer, teacher, "application/sdp", 400),
        ]
        for name, url, body, token, ctype, status in cases:
            got, text, headers = await post(http, url, body, token, ctype)
            assert got == status, f"{name}: {got} {text!r}"
            assert text.strip() and len(text) < 300 and "<html" not in text.lower(), f"{name}: {text!r}"
            assert headers.get("Access-Control-Allow-Origin") == "*", name

        # a second publisher in a room that has its teacher: 409
        pub = WhipPublisher(base, "room1", teacher, clip)
        await pub.start()
        got, text, _ = await post(http, whip, pub_offer, teacher)
        assert got == 409, text
        # unknown sessions: 404; ending someone else's session from another room: 404
        async with http.delete(base + "/whip/room1/nope", headers={"Authorization": f"Bearer {teacher}"}) as r:
            assert r.status == 404
        other = server.token("room2", "teacher")
        async with http.delete(base + pub.location.replace("room1", "room2"),
                               headers={"Authorization": f"Bearer {other}"}) as r:
            assert r.status == 404
        async with http.delete(base + pub.location, headers={"Authorization": f"Bearer {student}"}) as r:
            assert r.status == 403
        async with http.patch(base + pub.location, headers={"Authorization": f"Bearer {teacher}"}) as r:
            assert r.status == 405
        async with http.options(whip) as r:
            assert r.status == 204 and "POST" in r.headers["Access-Control-Allow-Methods"]
        await pub.stop()

        # nothing left behind: no sessions, rooms, tasks or file descriptors beyond the baseline
        deadline = time.monotonic() + 10
        while True:
            after = await metrics(http, base)
            settled = (after['liveclass_sessions{role="publisher"}'] == 0
                       and after['liveclass_sessions{role="viewer"}'] == 0 and after["liveclass_rooms"] == 0
                       and after["liveclass_asyncio_tasks"] <= before["liveclass_asyncio_tasks"]
                       and after["liveclass_open_fds"] <= before["liveclass_open_fds"])
            if settled or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.25)
        assert settled, f"leak: before={before} after={after}"


async def test_layer_controls_refuse_bad_input(server, clip):
    """`?max=` on WHEP, the viewer's status and its layer cap: bad values, tokens and sessions refused."""
    base = server.base_url
    terminal = server.token("caps", "terminal")
    view_offer = await offer("recvonly")
    async with aiohttp.ClientSession() as http:
        for bad in ("abc", "0", "99999", "-360"):
            status, text, _ = await post(http, f"{base}/whep/caps?max={bad}", view_offer, terminal)
            assert status == 400 and "max must be" in text, (bad, status, text)
        status, text, headers = await post(http, f"{base}/whep/caps?max=360p", view_offer, terminal)
        assert status == 201, text
        resource = base + headers["Location"]
        auth = {"Authorization": f"Bearer {terminal}"}
        async with http.get(resource, headers=auth) as r:
            assert r.status == 200
            assert (await r.json())["consumers"][0]["max_height"] == 360
        async with http.get(resource) as r:
            assert r.status == 401
        async with http.get(resource, headers={"Authorization": f"Bearer {server.token('other', 'terminal')}"}) as r:
            assert r.status == 403
        async with http.get(base + "/whep/caps/nosuchsession", headers=auth) as r:
            assert r.status == 404 and "no such session" in await r.text()
        for body in (b"not json", b"[1]", b'{"max_height": "360"}', b'{"max_height": 5}', b'{"max_height": true}'):
            async with http.post(resource + "/layer", data=body, headers=auth) as r:
                assert r.status == 400 and "max_height" in await r.text(), body
        async with http.post(resource + "/layer", json={"max_height": None}, headers=auth) as r:
            assert r.status == 200
        async with http.get(resource, headers=auth) as r:
            assert (await r.json())["consumers"][0]["max_height"] is None
        async with http.post(base + "/whep/caps/nosuchsession/layer", json={"max_height": 180}, headers=auth) as r:
            assert r.status == 404
        async with http.delete(resource, headers=auth) as r:
            assert r.status == 200
