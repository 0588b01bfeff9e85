"""Webhook signing, back-off and which answers are worth a retry (the sender itself: tests/integration)."""
from __future__ import annotations

from signaling.school.webhooks import backoff, retryable, secret_from, sign, verify


def test_signature_is_hmac_sha256_of_the_body():
    import hashlib
    import hmac
    body = b'{"type":"lesson_started"}'
    assert sign(b"k", body) == "sha256=" + hmac.new(b"k", body, hashlib.sha256).hexdigest()
    assert verify(b"k", body, sign(b"k", body))
    assert not verify(b"k", body + b" ", sign(b"k", body)) and not verify(b"other", body, sign(b"k", body))
    assert not verify(b"k", body, None)


def test_backoff_doubles_up_to_its_cap():
    assert [backoff(i, 1.0, 10.0) for i in range(6)] == [1, 2, 4, 8, 10, 10]


def test_retry_only_what_may_change():
    assert retryable(500) and retryable(503) and retryable(429) and retryable(408)
    assert not retryable(400) and not retryable(404) and not retryable(410)


def test_secret_option_env_or_generated():
    assert secret_from("opt", "env") == ("opt", False)
    assert secret_from(None, "env") == ("env", False)
    s, generated = secret_from(None, None)
    assert generated and len(s) >= 32
