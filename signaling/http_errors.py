"""Every error answer is short plain text with CORS headers, whatever raised it."""
from __future__ import annotations

import logging

from aiohttp import web

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
    except Exception:
        log.exception("unhandled error in %s %s", request.method, request.path)
        return text_error(500, "internal error")
