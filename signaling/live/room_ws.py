"""GET /ws/{room}?token=… — the room WebSocket over aiohttp (protocol: docs/room-protocol.md).

Per connection: one reader (this handler) that checks token expiry, rate, size and shape before the hub sees a
message, and one writer task draining a bounded outbox, so a slow client never stalls the room.
"""
from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any, Callable, Optional

from aiohttp import WSMsgType, web

from signaling.http.app_keys import SECRET
from signaling.http.access import ROOM_RE
from signaling.http.rate_limit import FloodGuard, Verdict
from signaling.live.room_hub import RoomHub
from signaling.lesson.room_protocol import HARD_MESSAGE_BYTES, ClientMessage, Close, Code, ProtocolError, encode, error, parse
from signaling.lesson.room_state import Limits
from signaling.auth.tokens import Grant, TokenError, TokenExpired, verify
from signaling.http import access

log = logging.getLogger(__name__)

HEARTBEAT = 20.0         # s between WebSocket pings; a peer that misses the pong is dropped (and may resume)
OUTBOX_LIMIT = 512       # messages queued for one client before it counts as not reading
RATE, BURST = 20.0, 40.0
STATS_RATE, STATS_BURST = 1.0, 3.0
FLOOD_CLOSE_AFTER = 100  # messages dropped within 10 s before the connection is closed (4008)

HUB = web.AppKey("rooms_ws", RoomHub)  # the room WebSocket's lesson state (setup)


@dataclass(frozen=True)
class _Closing:
    code: int
    error: Optional[dict[str, Any]]


async def _close_ws(ws: web.WebSocketResponse, code: int, err: Optional[dict[str, Any]]) -> None:
    try:
        if err is not None:
            await ws.send_str(encode(err))
        await ws.close(code=code, message=(err["code"] if err else "").encode())
    except Exception as exc:  # the peer is gone already: nothing to tell it
        log.debug("closing a room socket: %r", exc)


class WsConnection:
    close_timeout = 2.0  # s to say goodbye before the transport is cut

    def __init__(self, ws: web.WebSocketResponse, grant: Grant, now: float,
                 abort: Callable[[], None] = lambda: None) -> None:
        self.ws = ws
        self.grant = grant
        self.guard = FloodGuard(RATE, BURST, now, close_after=FLOOD_CLOSE_AFTER)
        self.stats_guard = FloodGuard(STATS_RATE, STATS_BURST, now, close_after=None)
        self.closing = False
        self._abort = abort
        self._outbox: asyncio.Queue[str | _Closing] = asyncio.Queue()
        self._writer = asyncio.get_running_loop().create_task(self._write())
        self._expiry: Optional[asyncio.TimerHandle] = None

    def arm_expiry(self, now: float) -> None:
        """Close with 4001 when the token runs out, even if the client says nothing."""
        if self._expiry:
            self._expiry.cancel()
        self._expiry = asyncio.get_running_loop().call_later(max(0.0, self.grant.expires - now), self.expire)

    def expire(self) -> None:
        self.close(Close.UNAUTHORIZED, error(Code.TOKEN_EXPIRED, "access token expired; reconnect with a new token"))

    def send(self, text: str) -> None:
        if self.closing:
            return
        if self._outbox.qsize() >= OUTBOX_LIMIT:
            self._overflow()
            return
        self._outbox.put_nowait(text)

    def send_payload(self, payload: dict[str, Any]) -> None:
        self.send(encode(payload))

    def close(self, code: int, error: Optional[dict[str, Any]] = None) -> None:
        """Send what is queued, then `error` if any, then close with `code`."""
        if self._start_closing():
            self._outbox.put_nowait(_Closing(code, error))

    def _overflow(self) -> None:
        # not reading: what is queued would never arrive, and the writer may be stuck in a send
        if self._start_closing():
            self._writer.cancel()
            self._writer = asyncio.get_running_loop().create_task(self._close_within(Close.SLOW_CONSUMER, None))

    def _start_closing(self) -> bool:
        if self.closing:
            return False
        self.closing = True
        if self._expiry:
            self._expiry.cancel()
        return True

    async def finish(self) -> None:
        self.close(Close.NORMAL, None)
        try:
            await asyncio.wait_for(asyncio.shield(self._writer), self.close_timeout + 1)
        except asyncio.TimeoutError:
            self._writer.cancel()
            self._abort()

    async def _close_within(self, code: int, err: Optional[dict[str, Any]]) -> None:
        try:
            await asyncio.wait_for(_close_ws(self.ws, code, err), self.close_timeout)
        except asyncio.TimeoutError:
            self._abort()

    async def _write(self) -> None:
        try:
            while True:
                item = await self._outbox.get()
                if isinstance(item, _Closing):
                    await self._close_within(item.code, item.error)
                    return
                await self.ws.send_str(item)
        except Exception as exc:  # peer gone mid-write: the reader sees the close and cleans up
            self.closing = True
            log.debug("room socket writer stopped: %r", exc)


def _admit(request: web.Request, room: str) -> tuple[Optional[Grant], Optional[_Closing]]:
    if not ROOM_RE.match(room):
        return None, _Closing(Close.BAD_REQUEST, error(
            Code.BAD_REQUEST, "room names are 1-64 letters, digits, '.', '_' or '-'"))
    try:
        grant = access.verified(request, query=True)
    except TokenExpired as exc:
        return None, _Closing(Close.UNAUTHORIZED, error(Code.TOKEN_EXPIRED, str(exc)))
    except TokenError as exc:
        return None, _Closing(Close.UNAUTHORIZED, error(Code.TOKEN_INVALID, str(exc)))
    if not grant.allows_room(room):
        return None, _Closing(Close.FORBIDDEN, error(Code.WRONG_ROOM, "token is for another room"))
    return grant, None


async def room_socket(request: web.Request) -> web.StreamResponse:
    hub: RoomHub = request.app[HUB]
    ws = web.WebSocketResponse(heartbeat=HEARTBEAT, max_msg_size=HARD_MESSAGE_BYTES)
    if not ws.can_prepare(request).ok:
        raise web.HTTPUpgradeRequired(text="this is a WebSocket endpoint (protocol: docs/room-protocol.md)",
                                      headers={"Upgrade": "websocket", "Connection": "Upgrade"})
    await ws.prepare(request)
    room = request.match_info["room"]
    # refusals arrive as a message + close code, which a browser can read (an HTTP 401 it cannot)
    grant, refusal = _admit(request, room)
    if refusal is not None:
        await _close_ws(ws, refusal.code, refusal.error)
        return ws
    assert grant is not None
    await hub.prepare(room)  # cluster mode: a room taken over from a dead node comes back as it was
    transport = request.transport
    conn = WsConnection(ws, grant, hub.clock(), abort=lambda: transport.abort() if transport else None)
    if not hub.join(room, conn):
        await conn.finish()
        return ws
    conn.arm_expiry(hub.clock())
    try:
        async for frame in ws:
            if not await _on_frame(hub, request.app[SECRET], room, conn, frame) or conn.closing:
                break
    finally:
        hub.lost(room, conn)
        await conn.finish()
    return ws


async def _on_frame(hub: RoomHub, secret: str, room: str, conn: WsConnection, frame: Any) -> bool:
    """Handle one frame; False ends the connection."""
    if conn.closing:  # removed, replaced or expired while this frame was in flight
        return False
    now = hub.clock()
    if conn.grant.expired(now):  # on every message, not only by the timer
        conn.expire()
        return False
    verdict = conn.guard.check(now)
    if verdict is Verdict.CLOSE:
        conn.close(Close.RATE_LIMITED, error(Code.RATE_LIMITED, "too many messages; connection closed"))
        return False
    if verdict is not Verdict.OK:
        if verdict is Verdict.DROP_AND_WARN:
            conn.send_payload(error(Code.RATE_LIMITED, f"over {RATE:g} messages/s: messages are being dropped"))
        return True
    if frame.type is WSMsgType.BINARY:
        conn.send_payload(error(Code.BAD_MESSAGE, "binary frames are not accepted; send JSON text"))
        return True
    if frame.type is not WSMsgType.TEXT:
        return False  # ERROR (e.g. a frame over the hard limit: aiohttp has closed with 1009)
    msg: Optional[ClientMessage] = None
    try:
        msg = parse(frame.data)
        await _dispatch(hub, secret, room, conn, msg, now)
    except ProtocolError as exc:
        exc.ref = msg.ref if exc.ref is None and msg is not None else exc.ref
        conn.send_payload(exc.payload())
    except Exception:
        log.exception("room %s: message from %s failed", room, conn.grant.identity)
        conn.send_payload(error(Code.INTERNAL, "internal error", msg.ref if msg else None))
    return True


async def _dispatch(hub: RoomHub, secret: str, room: str, conn: WsConnection, msg: ClientMessage,
                    now: float) -> None:
    if msg.type == "ping":  # answered here: never worth a trip to the room's owner
        conn.send_payload({"type": "pong", "ts": round(now * 1000), "ref": msg.ref})
        return
    if msg.type == "stats" and conn.stats_guard.check(now) is not Verdict.OK:
        raise ProtocolError(Code.RATE_LIMITED, f"stats are limited to {STATS_RATE:g}/s")
    if msg.type == "token_refresh":
        _refresh(hub, secret, room, conn, msg.fields["token"], now)
    else:
        await hub.handle(room, conn, msg)
    if msg.ref is not None and msg.type != "leave":
        conn.send_payload({"type": "ack", "ref": msg.ref})


def _refresh(hub: RoomHub, secret: str, room: str, conn: WsConnection, token: str, now: float) -> None:
    """Swap in a fresh token for a long lesson; identity, role and room must stay the same."""
    try:
        grant = verify(secret, token)
    except TokenExpired as exc:
        raise ProtocolError(Code.TOKEN_EXPIRED, str(exc)) from None
    except TokenError as exc:
        raise ProtocolError(Code.TOKEN_INVALID, str(exc)) from None
    if (grant.identity, grant.role) != (conn.grant.identity, conn.grant.role) or not grant.allows_room(room):
        raise ProtocolError(Code.FORBIDDEN, "a refreshed token must name the same identity, role and room")
    conn.grant = grant
    hub.refresh(room, grant)
    conn.arm_expiry(now)


def setup(app: web.Application, limits: Limits = Limits(), max_rooms: int = 1000) -> RoomHub:
    """Register /ws/{room} and the hub at app[HUB]. Recording: the hub's recorder, set by library_api.setup."""
    hub = RoomHub(limits, max_rooms)
    app[HUB] = hub
    app.router.add_get("/ws/{room}", room_socket)

    async def shutdown(app: web.Application) -> None:
        await hub.close()

    app.on_shutdown.append(shutdown)
    return hub
