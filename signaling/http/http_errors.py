"""Every error answer is short plain text with CORS headers, whatever raised it."""
from __future__ import annotations

import errno
import logging

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

log = logging.getLogger(__name__)

CORS_HEADERS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Allow-Methods": "GET, POST, DELETE, PATCH, OPTIONS",
    "Access-Control-Allow-Headers": "Authorization, Content-Type, If-Match",
    "Access-Control-Expose-Headers": "Location, ETag, Link",
}

KEPT_HEADERS = ("WWW-Authenticate", "Content-Range", "Allow", "Retry-After")


def text_error(status: int, reason: str) -> web.Response:
    return web.Response(status=status, text=reason.rstrip() + "\n", headers=CORS_HEADERS)


@web.middleware
async def error_middleware(request: web.Request, handler):
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        reason = exc.text if exc.text and not exc.text.startswith(f"{exc.status}:") else exc.reason
        response = text_error(exc.status, reason or "error")
        for name in KEPT_HEADERS:  # what the client needs to act on the error
            if name in exc.headers:
                response.headers[name] = exc.headers[name]
        return response
    except OSError as exc:
        if exc.errno in NOT_A_FILE:   # a static path no file system holds (too long, NUL, ...): not ours
            return text_error(404, "not found")
        log.exception("unhandled error in %s %s", request.method, request.path)
        return text_error(500, "internal error")
    except Exception:
        log.exception("unhandled error in %s %s", request.method, request.path)
        return text_error(500, "internal error")


NOT_A_FILE = (errno.ENAMETOOLONG, errno.EINVAL, errno.ENOTDIR, errno.ELOOP, errno.EILSEQ)


class QuietBadRequests(logging.Filter):
    """aiohttp answers a request it cannot parse (bad characters in the URL, bad headers) with 400 and logs it with
    a traceback at ERROR: one traceback per bad request anyone sends. Such records become one INFO line."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, HttpProcessingError):
            record.levelno, record.levelname = logging.INFO, "INFO"
            record.msg = f"{record.getMessage()}: {type(exc).__name__} {exc.code}: {exc.message.splitlines()[0]}"
            record.args = ()
            record.exc_info = record.exc_text = None
            return logging.getLogger(record.name).isEnabledFor(logging.INFO)
        return True


def quiet_bad_requests() -> None:
    server_log = logging.getLogger("aiohttp.server")
    if not any(isinstance(f, QuietBadRequests) for f in server_log.filters):
        server_log.addFilter(QuietBadRequests())
