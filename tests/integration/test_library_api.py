"""The library HTTP API over a real app and a real library folder: search and paging, media with Range, edits
and deletes by admins, and every bad input answered with a short reason and never a file outside the library."""
from __future__ import annotations

import os
import time
from pathlib import Path
from typing import AsyncIterator

import aiohttp
import av
import pytest
from aiohttp import web

from recorder.store.library import Library
from signaling.app import create_app
from signaling.media.library_api import RECORDER
from signaling.auth.tokens import mint
from testkit.inprocess import serve_app
from testkit.webm_files import clip_packets, write_lesson_file

SECRET = "library-api-secret-0123456789abcdef0"
DAY = 86400
T0 = 1_750_000_000.0   # 2025-06-15


def write_lesson(library: Path, clip: Path, lesson_id: str, finish: bool = True) -> Path:
    d = library / "lessons" / lesson_id
    d.mkdir(parents=True, exist_ok=True)
    path = d / "lesson.webm"
    write_lesson_file(path, clip_packets(clip), finish=finish)
    return path


LESSONS = [  # id, title, teacher, subject, started_at
    ("a" * 16, "Fractions, part 1", "Li Wei", "Mathematics", T0),
    ("b" * 16, "Fractions, part 2", "Li Wei", "Mathematics", T0 + DAY),
    ("c" * 16, "The water cycle", "Zhang Min", "Geography", T0 + 2 * DAY),
    ("d" * 16, "Poems of the Tang dynasty", "Wang Fang", "Chinese", T0 + 3 * DAY),
]


@pytest.fixture
def library(tmp_path, clip) -> Path:
    root = tmp_path / "library"
    lib = Library(root)
    for lid, title, teacher, subject, started in LESSONS:
        path = write_lesson(root, clip, lid)
        lib.catalogue.add({"id": lid, "title": title, "room": "r1", "teacher": teacher, "subject": subject,
                           "school": "No. 3 Primary", "grade": "5", "started_at": started, "duration_s": 12.0,
                           "state": "ready", "size": path.stat().st_size, "media_file": f"lessons/{lid}/lesson.webm",
                           "tracks": [{"kind": "video", "codec": "VP8"}, {"kind": "audio", "codec": "opus"}],
                           "thumbnail": "poster.jpg" if lid == "a" * 16 else "",
                           "chapters": [{"t": 0.0, "thumbnail": "chapter-000.jpg"}] if lid == "a" * 16 else []})
    (root / "lessons" / ("a" * 16) / "poster.jpg").write_bytes(b"\xff\xd8poster\xff\xd9")
    (root / "lessons" / ("a" * 16) / "chapter-000.jpg").write_bytes(b"\xff\xd8chapter\xff\xd9")
    lib.close()
    return root


class Api:
    def __init__(self, base: str, http: aiohttp.ClientSession, app: web.Application) -> None:
        self.base, self.http, self.app = base, http, app

    async def call(self, method: str, path: str, token: str | None = None, **kw) -> tuple[int, object, dict]:
        headers = dict(kw.pop("headers", {}))
        if token:
            headers["Authorization"] = f"Bearer {token}"
        async with self.http.request(method, self.base + path, headers=headers, **kw) as r:
            body = await r.read()
            if r.content_type == "application/json":
                import json
                return r.status, json.loads(body), dict(r.headers)
            return r.status, body, dict(r.headers)


@pytest.fixture
async def api(library) -> AsyncIterator[Api]:
    app = create_app(SECRET, ["127.0.0.1"], library=str(library))
    app[RECORDER].analyze_enabled = False
    async with serve_app(app) as (base, http):
        yield Api(base, http, app)


def tok(role: str, room: str = "r1", **kw) -> str:
    return mint(SECRET, room, role, **kw)


async def ids(api: Api, query: str) -> list[str]:
    status, body, _ = await api.call("GET", "/api/library" + query)
    assert status == 200, body
    return [x["id"][0] for x in body["lessons"]]


async def test_search_filters_and_paging(api):
    status, body, _ = await api.call("GET", "/api/library")
    assert status == 200 and body["total"] == 4
    first = body["lessons"][0]
    assert first["id"] == "d" * 16   # newest first
    for key in ("id", "title", "room", "teacher", "started_at", "duration_s", "state", "media_url", "thumbnail_url",
                "chapters"):
        assert key in first
    assert first["started_at"] == time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(T0 + 3 * DAY))
    assert await ids(api, "?q=fraction") == ["b", "a"]
    assert await ids(api, "?q=WATER") == ["c"]
    assert await ids(api, "?q=No.%203") == ["d", "c", "b", "a"]   # school matches too
    assert await ids(api, "?q=100%25") == []                      # % is a character, not a wildcard
    assert await ids(api, "?teacher=li%20wei") == ["b", "a"]
    assert await ids(api, "?subject=geography") == ["c"]
    day = time.strftime("%Y-%m-%d", time.gmtime(T0 + DAY))
    assert await ids(api, f"?from={day}") == ["d", "c", "b"]
    assert await ids(api, f"?to={day}") == ["b", "a"]
    assert await ids(api, f"?from={day}&to={day}") == ["b"]
    assert await ids(api, f"?from={int(T0 + 2 * DAY)}") == ["d", "c"]
    assert await ids(api, "?limit=2") == ["d", "c"]
    status, body, _ = await api.call("GET", "/api/library?limit=2&offset=2")
    assert [x["id"][0] for x in body["lessons"]] == ["b", "a"] and body["total"] == 4
    assert await ids(api, "?offset=10") == []
    status, one, _ = await api.call("GET", f"/api/library/{'a' * 16}")
    assert status == 200 and one["title"] == "Fractions, part 1"
    assert one["thumbnail_url"] == f"/api/library/{'a' * 16}/thumbnail"
    assert one["chapters"] == [{"index": 0, "t": 0.0, "title": "Chapter 1",
                                "thumbnail_url": f"/api/library/{'a' * 16}/chapters/0/thumbnail"}]
    status, img, headers = await api.call("GET", one["thumbnail_url"])
    assert status == 200 and img.startswith(b"\xff\xd8") and headers["Content-Type"] == "image/jpeg"
    status, img, _ = await api.call("GET", one["chapters"][0]["thumbnail_url"])
    assert status == 200 and b"chapter" in img


@pytest.mark.parametrize("query,reason", [
    ("?limit=0", "limit"), ("?limit=1000", "limit"), ("?limit=x", "limit"), ("?offset=-1", "offset"),
    ("?from=yesterday", "from"), ("?to=2025-13-45", "to"), ("?from=nan", "from"), ("?state=deleted", "state"),
    ("?q=" + "x" * 500, "too long"),
])
async def test_bad_queries_are_400_with_a_reason(api, query, reason):
    status, body, _ = await api.call("GET", "/api/library" + query)
    assert status == 400 and reason in body.decode()


async def test_media_is_served_with_range_and_seeks(api, library):
    lid = "a" * 16
    size = (library / "lessons" / lid / "lesson.webm").stat().st_size
    status, body, headers = await api.call("GET", f"/api/library/{lid}/media")
    assert status == 200 and len(body) == size and headers["Content-Type"] == "video/webm"
    assert headers.get("Accept-Ranges") == "bytes"
    status, body, headers = await api.call("GET", f"/api/library/{lid}/media", headers={"Range": "bytes=100-199"})
    assert status == 206 and len(body) == 100 and headers["Content-Range"] == f"bytes 100-199/{size}"
    status, body, headers = await api.call("GET", f"/api/library/{lid}/media", headers={"Range": "bytes=-50"})
    assert status == 206 and len(body) == 50
    for bad in ("bytes=abc", "bytes=5-2", "chunks=0-10", "bytes=0-1,5-6", f"bytes={size + 10}-", "bytes=--5"):
        status, body, headers = await api.call("GET", f"/api/library/{lid}/media", headers={"Range": bad})
        assert status == 416 and body.strip(), (bad, status)
        assert headers.get("Content-Range") == f"bytes */{size}", bad


@pytest.mark.parametrize("path", [
    "/api/library/unknown", "/api/library/" + "0" * 16, "/api/library/" + "A" * 16,
    "/api/library/..%2F..%2F..%2Fetc%2Fpasswd", "/api/library/%2e%2e", "/api/library/" + "0" * 16 + "/media",
    "/api/library/..%2Fcatalogue.sqlite/media", "/api/library/" + "b" * 16 + "/thumbnail",
    "/api/library/" + "a" * 16 + "/chapters/1/thumbnail", "/api/library/" + "a" * 16 + "/chapters/-1/thumbnail",
    "/api/library/" + "a" * 16 + "/chapters/..%2F..%2Fcatalogue.sqlite/thumbnail",
    "/api/library/" + "a" * 16 + "/chapters/99999999999999999999/thumbnail",
])
async def test_unknown_ids_and_traversal_are_404(api, path):
    status, body, _ = await api.call("GET", path)
    assert status == 404 and b"root:" not in body and b"SQLite" not in body
    if path.startswith("/api/library/" + "0" * 16):
        assert body.decode().strip() in ("no such lesson", "not available for this lesson (yet)")


async def test_files_the_catalogue_names_never_leave_the_lesson_folder(api, library):
    lid = "c" * 16
    cat = api.app[RECORDER].library.catalogue
    cat.update(lid, thumbnail="../../catalogue.sqlite", chapters=[{"t": 0, "thumbnail": "/etc/passwd"}])
    assert (await api.call("GET", f"/api/library/{lid}/thumbnail"))[0] == 404
    assert (await api.call("GET", f"/api/library/{lid}/chapters/0/thumbnail"))[0] == 404
    os.symlink("/etc/passwd", library / "lessons" / lid / "poster.jpg")   # a link planted inside the library
    cat.update(lid, thumbnail="poster.jpg")
    status, body, _ = await api.call("GET", f"/api/library/{lid}/thumbnail")
    assert status == 404 and b"root:" not in body


async def test_recording_start_and_stop_need_the_rooms_teacher_or_an_admin(api):
    path = "/api/rooms/r1/recording"
    for method in ("POST", "DELETE"):
        status, body, headers = await api.call(method, path)
        assert status == 401 and b"missing access token" in body and headers.get("WWW-Authenticate") == "Bearer"
        assert (await api.call(method, path, "not-a-jwt"))[0] == 401
        assert (await api.call(method, path, mint(SECRET, "r1", "teacher", now=time.time() - 7200)))[0] == 401
        assert (await api.call(method, path, mint("another-secret-0123456789abcdefgh", "r1", "teacher")))[0] == 401
        for role in ("student", "terminal", "observer", "recorder"):
            status, body, _ = await api.call(method, path, tok(role))
            assert status == 403 and b"teacher or an admin" in body
        status, body, _ = await api.call(method, path, tok("teacher", room="r2"))
        assert status == 403 and b"another room" in body
    assert (await api.call("POST", "/api/rooms/bad%20room!/recording", tok("admin", room="*")))[0] == 400
    assert (await api.call("DELETE", path, tok("teacher")))[0] == 404   # not being recorded
    for body in (b"[1, 2]", b"{nope", b'{"title": 5.5}', b'{"colour": "red"}', b'{"title": "' + b"x" * 300 + b'"}'):
        status, text, _ = await api.call("POST", path, tok("teacher"), data=body,
                                         headers={"Content-Type": "application/json"})
        assert status == 400 and text.strip(), body
    assert api.app[RECORDER].recording("r1") is None
    status, started, _ = await api.call("POST", path, tok("teacher", name="Li Wei"), json={"title": "Decimals"})
    assert status == 201 and started["state"] == "recording" and started["teacher"] == "Li Wei"
    status, again, _ = await api.call("POST", path, tok("admin", room="*"))
    assert status == 200 and again["id"] == started["id"]   # already recording: the same lesson
    status, body, _ = await api.call("DELETE", f"/api/library/{started['id']}", tok("admin", room="*"))
    assert status == 409 and b"still being recorded" in body
    status, stopped, _ = await api.call("DELETE", path, tok("admin", room="r1"))
    assert status == 200 and stopped["id"] == started["id"] and stopped["state"] == "failed"   # no media came
    api.app[RECORDER].max_recordings = 0
    status, body, _ = await api.call("POST", path, tok("teacher"))
    assert status == 503 and b"try later" in body


async def test_admins_edit_and_delete_lessons_and_nobody_else(api, library):
    lid = "b" * 16
    path = f"/api/library/{lid}"
    assert (await api.call("PATCH", path, json={"title": "x"}))[0] == 401
    for role in ("teacher", "student", "terminal"):
        status, body, _ = await api.call("PATCH", path, tok(role), json={"title": "x"})
        assert status == 403 and b"admin" in body
        assert (await api.call("DELETE", path, tok(role)))[0] == 403
    admin = tok("admin", room="*")
    for bad in ({"state": "ready"}, {"duration_s": 1}, {"title": ""}, {"title": ["a"]}, {"grade": "x" * 201},
                {"subject": "a\nb"}):
        status, body, _ = await api.call("PATCH", path, admin, json=bad)
        assert status == 400 and body.strip(), bad
    status, body, _ = await api.call("PATCH", path, admin, data=b"\xff\xfe",
                                     headers={"Content-Type": "application/json"})
    assert status == 400
    status, edited, _ = await api.call("PATCH", path, admin, json={"title": "Fractions (revised)", "grade": "6"})
    assert status == 200 and edited["title"] == "Fractions (revised)" and edited["grade"] == "6"
    assert (await api.call("GET", "/api/library?q=revised"))[1]["total"] == 1
    assert (await api.call("PATCH", "/api/library/" + "0" * 16, admin, json={"title": "y"}))[0] == 404
    status, _, _ = await api.call("DELETE", path, admin)
    assert status == 204
    assert not (library / "lessons" / lid).exists()
    assert (await api.call("GET", path))[0] == 404
    assert (await api.call("GET", path + "/media"))[0] == 404
    assert (await api.call("DELETE", path, admin))[0] == 404
    assert (await api.call("DELETE", "/api/library/..%2F..", admin))[0] == 404
    assert (await api.call("GET", "/api/library"))[1]["total"] == 3
    assert (library / "catalogue.sqlite").exists()


async def test_unfinished_recordings_are_recovered_at_start(tmp_path, clip):
    root = tmp_path / "library"
    lib = Library(root)
    cut = write_lesson(root, clip, "e" * 16, finish=False)
    size = cut.stat().st_size
    os.truncate(cut, size - size // 3)                     # the crash cut a Cluster in half
    (root / "lessons" / ("f" * 16)).mkdir(parents=True)
    (root / "lessons" / ("f" * 16) / "lesson.webm").write_bytes(b"\x1a\x45\xdf\xa3garbage")
    for lid in ("e" * 16, "f" * 16, "9" * 16):           # 999…: no file was ever written
        lib.catalogue.add({"id": lid, "title": lid, "room": "r1", "started_at": T0, "state": "recording"})
    lib.close()
    app = create_app(SECRET, ["127.0.0.1"], library=str(root))
    app[RECORDER].analyze_enabled = False
    runner = web.AppRunner(app)
    await runner.setup()    # runs the startup: recovery
    try:
        cat = app[RECORDER].library.catalogue
        good = cat.get("e" * 16)
        assert good["state"] == "recovered" and 6.0 < good["duration_s"] < 10.0 and "recovered" in good["error"]
        assert good["tracks"] and good["size"] == cut.stat().st_size
        with av.open(str(cut)) as c:
            assert abs(c.duration / 1e6 - good["duration_s"]) < 0.1
            assert sum(1 for _ in c.decode(video=0)) > 150
        for lid in ("f" * 16, "9" * 16):
            bad = cat.get(lid)
            assert bad["state"] == "failed" and bad["error"].startswith("not recoverable"), bad
    finally:
        await runner.cleanup()
