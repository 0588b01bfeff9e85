"""Room protocol parsing, the rights table and the rate limiter (pure, injected time)."""
from __future__ import annotations

import json

import pytest

from signaling.http.rate_limit import FloodGuard, TokenBucket, Verdict
from signaling.lesson.room_protocol import (MAX_MESSAGE_BYTES, RIGHTS, SCHEMAS, ClientMessage, Code, ProtocolError,
                                     check_rights, parse)
from signaling.auth.tokens import ROLE_GRANTS, ROLES, Grant


def test_a_valid_message_keeps_its_id_and_drops_unknown_fields():
    msg = parse(json.dumps({"type": "chat", "id": "c1", "text": "  hello  ", "extra": [1, 2]}))
    assert msg == ClientMessage("chat", {"text": "hello"}, "c1")
    assert parse('{"type":"stats","loss":0,"rtt":12.5,"bitrate":null}').fields == {"loss": 0.0, "rtt": 12.5}
    assert parse('{"type":"publish","sources":["camera","camera","microphone"]}').fields == {
        "sources": ("camera", "microphone")}


@pytest.mark.parametrize("raw, code, ref", [
    ("not json", Code.BAD_MESSAGE, None),
    ("[1,2]", Code.BAD_MESSAGE, None),
    ('"chat"', Code.BAD_MESSAGE, None),
    ('{"id":1}', Code.BAD_MESSAGE, 1),
    ('{"type":5,"id":2}', Code.BAD_MESSAGE, 2),
    ('{"type":"","id":2}', Code.BAD_MESSAGE, 2),
    ('{"type":"fly","id":"x"}', Code.UNKNOWN_TYPE, "x"),
    ('{"type":"chat","id":3}', Code.BAD_MESSAGE, 3),
    ('{"type":"chat","text":42}', Code.BAD_MESSAGE, None),
    ('{"type":"chat","text":"   "}', Code.BAD_MESSAGE, None),
    (json.dumps({"type": "chat", "text": "x" * 1001}), Code.BAD_MESSAGE, None),
    ('{"type":"mute","identity":["a"]}', Code.BAD_MESSAGE, None),
    ('{"type":"stats","loss":2}', Code.BAD_MESSAGE, None),
    ('{"type":"stats","rtt":NaN}', Code.BAD_MESSAGE, None),
    ('{"type":"stats","rtt":true}', Code.BAD_MESSAGE, None),
    ('{"type":"publish","sources":["hologram"]}', Code.BAD_MESSAGE, None),
    ('{"type":"publish","sources":[]}', Code.BAD_MESSAGE, None),
    ('{"type":"ping","id":true}', Code.BAD_MESSAGE, None),
    ('{"type":"ping","id":{"a":1}}', Code.BAD_MESSAGE, None),
    ('{"type":"ping","id":99999999999999999999}', Code.BAD_MESSAGE, None),
    ("[" * 5000 + "]" * 5000, Code.BAD_MESSAGE, None),
    ('{"type":"ping","pad":"' + "x" * MAX_MESSAGE_BYTES + '"}', Code.TOO_LARGE, None),
    ('{"type":"chat","text":"' + "é" * (MAX_MESSAGE_BYTES // 2) + '"}', Code.TOO_LARGE, None),
])
def test_bad_messages_are_refused_with_a_code(raw, code, ref):
    with pytest.raises(ProtocolError) as info:
        parse(raw)
    assert (info.value.code, info.value.ref) == (code, ref)
    payload = info.value.payload()
    assert payload["type"] == "error" and payload["message"] and ("ref" in payload) == (ref is not None)


# every role against every type: the table in docs/room-protocol.md
EXPECTED = {
    "teacher": set(SCHEMAS) - {"hand_raise"},
    "admin": set(SCHEMAS) - {"hand_raise"},
    "terminal": {"ping", "leave", "stats", "token_refresh", "publish", "unpublish", "chat", "hand_raise",
                 "hand_lower", "mute"},
    "student": {"ping", "leave", "stats", "token_refresh", "publish", "unpublish", "chat"},
    "observer": {"ping", "leave", "stats", "token_refresh", "publish", "unpublish"},
    "recorder": {"ping", "leave", "stats", "token_refresh", "publish", "unpublish"},
}


@pytest.mark.parametrize("role", ROLES)
def test_rights_table(role):
    pub, sub, sources = ROLE_GRANTS[role]
    g = Grant("x", "x", "r", role, pub, sub, sources)
    allowed = set()
    for kind in SCHEMAS:
        try:
            check_rights(ClientMessage(kind), g)
            allowed.add(kind)
        except ProtocolError as exc:
            assert exc.code == Code.FORBIDDEN and role in exc.message
    assert allowed == EXPECTED[role]
    assert set(RIGHTS) == set(SCHEMAS)


def test_token_bucket_bursts_then_refills_and_ignores_a_clock_stepping_back():
    b = TokenBucket(rate=10, burst=3, now=0.0)
    assert [b.take(0.0) for _ in range(4)] == [True, True, True, False]
    assert b.take(0.1) and not b.take(0.1)
    assert not b.take(-5.0)  # a step back mints nothing
    assert b.take(0.2)


def test_flood_guard_warns_once_a_second_then_closes():
    g = FloodGuard(rate=1, burst=2, now=0.0, close_after=5, window=10)
    verdicts = [g.check(0.0) for _ in range(8)]
    assert verdicts == [Verdict.OK, Verdict.OK, Verdict.DROP_AND_WARN, Verdict.DROP, Verdict.DROP, Verdict.DROP,
                        Verdict.DROP, Verdict.CLOSE]


def test_flood_guard_forgives_old_drops_and_can_never_close():
    g = FloodGuard(rate=1, burst=1, now=0.0, close_after=3, window=10)
    assert [g.check(0.0) for _ in range(3)] == [Verdict.OK, Verdict.DROP_AND_WARN, Verdict.DROP]
    assert g.check(0.5) is Verdict.DROP              # 3 dropped in this window: not yet over
    assert g.check(11.0) is Verdict.OK
    assert g.check(11.0) is Verdict.DROP_AND_WARN    # a new window
    never = FloodGuard(rate=1, burst=1, now=0.0, close_after=None)
    assert Verdict.CLOSE not in {never.check(0.0) for _ in range(1000)}
