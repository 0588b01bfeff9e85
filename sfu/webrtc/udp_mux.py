"""One UDP socket for every peer connection of a node (as mediasoup's WebRtcServer and LiveKit's single port):
a school or data-centre firewall opens one port, not a range, and the node holds one socket, not one per peer.

Datagrams are handed to a peer connection's endpoint by the remote address they come from. Before an address is
known, a STUN Binding request names its connection: its USERNAME is "<our ufrag>:<their ufrag>", and our ufrag
is unique on the node. A request always re-routes its address to the connection it names, so a peer that comes
back from the same address and port with a new connection (a page reloaded behind a NAT that kept the mapping)
takes the address over, and the old connection, whose checks are no longer answered to it, ends by consent
freshness. Many peers behind one NAT differ by port: each (address, port) is its own route.

This module knows sockets and STUN's wire format only; fitting it under aioice's connections is the adapter's
job (sfu/webrtc/aiortc_adapter.py).
"""
from __future__ import annotations

import asyncio
import logging
import secrets
import socket
import string
import struct
from typing import Callable, Optional, Protocol

STUN_MAGIC = b"\x21\x12\xa4\x42"
STUN_HEADER = 20
BINDING_REQUEST = 0x0001
ATTR_USERNAME = 0x0006
UFRAG_ALPHABET = string.ascii_letters + string.digits
UFRAG_LENGTH = 16                  # aioice's 4 characters collide on a node with thousands of connections
SOCKET_BUFFER = 4 * 1024 * 1024    # every peer's traffic passes this one socket's buffers: a loop stall of a
                                   # few hundred ms at 1,000 datagrams/s must not overflow them (Debian's default
                                   # limit, net.core.rmem_max/wmem_max, is 208 KiB)
DRAIN_BATCH = 256                  # datagrams read per wake-up at most (then the loop's other work goes first)
DATAGRAM_MAX = 16384               # WebRTC keeps datagrams under the path MTU; DTLS flights are fragmented

Addr = tuple[str, int]
log = logging.getLogger(__name__)


class Endpoint(Protocol):
    """What the mux delivers to: one peer connection's end of the shared socket."""

    def datagram_received(self, data: bytes, addr: Addr) -> None: ...

    def connection_lost(self, exc: Optional[Exception]) -> None: ...


def binding_request_ufrag(data: bytes) -> Optional[str]:
    """Our ufrag from a STUN Binding request's USERNAME ("<ours>:<theirs>"); None for anything else (media, DTLS,
    STUN responses, malformed or truncated STUN). Reads only what it needs and never raises."""
    if len(data) < STUN_HEADER or data[4:8] != STUN_MAGIC:
        return None
    kind, length = struct.unpack_from("!HH", data, 0)
    if kind != BINDING_REQUEST:
        return None
    end = min(len(data), STUN_HEADER + length)
    pos = STUN_HEADER
    while pos + 4 <= end:
        attr, size = struct.unpack_from("!HH", data, pos)
        if attr == ATTR_USERNAME:
            if pos + 4 + size > end:
                return None
            ours, colon, _ = data[pos + 4:pos + 4 + size].partition(b":")
            try:
                return ours.decode("ascii") if colon and ours else None
            except UnicodeDecodeError:
                return None
        pos += 4 + size + (-size % 4)   # attributes are padded to 4 bytes
    return None


def new_ufrag(taken: Callable[[str], bool]) -> str:
    """A random ICE ufrag that `taken` says no connection has (ICE chars: letters and digits)."""
    while True:
        ufrag = "".join(secrets.choice(UFRAG_ALPHABET) for _ in range(UFRAG_LENGTH))
        if not taken(ufrag):
            return ufrag


def _grow_buffer(sock: socket.socket, option: int, force: Optional[int]) -> int:
    """Ask for SOCKET_BUFFER: past the system's limit where allowed (root, CAP_NET_ADMIN), else up to it.
    Returns what the kernel granted (it doubles the request for its bookkeeping)."""
    for opt in (force, option):
        if opt is None:
            continue
        try:
            sock.setsockopt(socket.SOL_SOCKET, opt, SOCKET_BUFFER)
            break
        except OSError:
            continue
    return sock.getsockopt(socket.SOL_SOCKET, option)


def buffers_too_small(granted: int) -> bool:
    """Whether the kernel granted less than asked (it reports twice what it was asked for)."""
    return granted < SOCKET_BUFFER


class UdpMux(asyncio.DatagramProtocol):
    """The node's socket on one local address: routes each datagram to the endpoint of its remote address."""

    def __init__(self) -> None:
        self.transport: Optional[asyncio.DatagramTransport] = None
        self.sock: Optional[socket.socket] = None
        self._by_addr: dict[Addr, Endpoint] = {}
        self._by_ufrag: dict[str, Endpoint] = {}
        self._addrs_of: dict[int, set[Addr]] = {}   # id(endpoint) -> the addresses routed to it
        self.unrouted = 0     # datagrams from an address no connection has claimed, and not naming one
        self.rerouted = 0     # addresses taken over by a request naming another connection
        self.handler_errors = 0
        self.receive_buffer = self.send_buffer = 0   # bytes the kernel granted
        self._loop: asyncio.AbstractEventLoop
        self._reader: Optional[socket.socket] = None

    # --- the socket -----------------------------------------------------------------------------------------

    @classmethod
    async def bind(cls, host: str, port: int) -> "UdpMux":
        """A mux on host:port (0: a free port), its receive buffer sized for every peer's traffic."""
        loop = asyncio.get_running_loop()
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        _, mux = await loop.create_datagram_endpoint(cls, local_addr=(host, port), family=family)
        return mux

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        # the socket itself (asyncio's extra info gives a wrapper without sendto): the hot path sends straight to
        # it, as it did to each connection's own
        self.sock = getattr(transport, "_sock", None)
        if self.sock is None:
            return
        self.receive_buffer = _grow_buffer(self.sock, socket.SO_RCVBUF, getattr(socket, "SO_RCVBUFFORCE", None))
        self.send_buffer = _grow_buffer(self.sock, socket.SO_SNDBUF, getattr(socket, "SO_SNDBUFFORCE", None))
        # asyncio reads one datagram per readiness: fine for a socket per peer, but this one carries every peer's
        # traffic and would fall behind the loop's pace. Drain it in batches instead (sending stays asyncio's:
        # it buffers when the kernel's buffer is full).
        # (asyncio lets one watcher own a descriptor: ours reads through a duplicate of the same socket)
        transport.pause_reading()  # type: ignore[attr-defined]
        self._reader = self.sock.dup()
        self._reader.setblocking(False)
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(self._reader.fileno(), self._drain)

    def _drain(self) -> None:
        sock = self._reader
        assert sock is not None
        for _ in range(DRAIN_BATCH):
            try:
                data, addr = sock.recvfrom(DATAGRAM_MAX)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:   # an ICMP error for one peer: the others' datagrams still wait
                continue
            try:
                self.datagram_received(data, addr)
            except Exception:
                self.handler_errors += 1
                log.exception("UDP datagram handler failed; datagram dropped")

    @property
    def local_addr(self) -> Addr:
        assert self.transport is not None
        host, port = self.transport.get_extra_info("sockname")[:2]
        return host, port

    def close(self) -> None:
        for endpoint in list(self._by_ufrag.values()):
            endpoint.connection_lost(None)
        self._by_addr.clear()
        self._by_ufrag.clear()
        self._addrs_of.clear()
        if self.transport is not None:
            if self._reader is not None:
                self._loop.remove_reader(self._reader.fileno())
                self._reader.close()
                self._reader = None
            self.transport.close()

    # --- routes ---------------------------------------------------------------------------------------------

    def has_ufrag(self, ufrag: str) -> bool:
        return ufrag in self._by_ufrag

    def register(self, ufrag: str, endpoint: Endpoint) -> None:
        if self._by_ufrag.get(ufrag, endpoint) is not endpoint:
            raise ValueError(f"ICE ufrag {ufrag!r} is taken on this port")
        self._by_ufrag[ufrag] = endpoint
        self._addrs_of.setdefault(id(endpoint), set())

    def unregister(self, ufrag: str, endpoint: Endpoint) -> None:
        """The connection closed: its ufrag and the addresses still routed to it are free."""
        if self._by_ufrag.get(ufrag) is endpoint:
            del self._by_ufrag[ufrag]
        for addr in self._addrs_of.pop(id(endpoint), ()):
            if self._by_addr.get(addr) is endpoint:
                del self._by_addr[addr]

    def claim(self, addr: Addr, endpoint: Endpoint) -> None:
        """`endpoint` sends to `addr` (its connectivity checks): answers from there are its, unless the address
        already belongs to another connection (which only a request naming this one takes over)."""
        if addr not in self._by_addr and id(endpoint) in self._addrs_of:
            self._route(addr, endpoint)

    def _route(self, addr: Addr, endpoint: Endpoint) -> None:
        old = self._by_addr.get(addr)
        if old is not None and old is not endpoint:
            self.rerouted += 1
            self._addrs_of.get(id(old), set()).discard(addr)
        self._by_addr[addr] = endpoint
        self._addrs_of[id(endpoint)].add(addr)

    def route_of(self, addr: Addr) -> Optional[Endpoint]:
        return self._by_addr.get(addr)

    @property
    def connections(self) -> int:
        return len(self._by_ufrag)

    # --- the hot path ---------------------------------------------------------------------------------------

    def datagram_received(self, data: bytes, addr: tuple) -> None:  # type: ignore[override]
        if not data:
            self.unrouted += 1
            return
        addr = (addr[0], addr[1])   # an IPv6 address comes as a four-tuple
        endpoint = self._by_addr.get(addr)
        if data[:1] in (b"\x00", b"\x01"):   # STUN (RFC 7983): a request may name another connection
            ufrag = binding_request_ufrag(data)
            named = self._by_ufrag.get(ufrag) if ufrag is not None else None
            if named is not None and named is not endpoint:
                self._route(addr, named)
                endpoint = named
        if endpoint is None:
            self.unrouted += 1
            return
        endpoint.datagram_received(data, addr)

    def error_received(self, exc: Exception) -> None:
        pass   # an ICMP error for one peer's address says nothing about the others on this socket


class MuxedTransport(asyncio.DatagramTransport):
    """One connection's view of the shared socket: it sends through it, and closing it ends only its routes."""

    def __init__(self, mux: UdpMux, endpoint: Endpoint, ufrag: str) -> None:
        super().__init__()
        self._mux, self._endpoint, self._ufrag = mux, endpoint, ufrag
        self._closing = False
        mux.register(ufrag, endpoint)

    @property
    def _sock(self) -> socket.socket:
        """The shared socket itself, for a hot path that sends straight to it."""
        assert self._mux.sock is not None
        return self._mux.sock

    def sendto(self, data, addr=None) -> None:  # type: ignore[override]
        if self._closing or self._mux.transport is None:
            return
        addr = (addr[0], addr[1])
        self._mux.claim(addr, self._endpoint)
        self._mux.transport.sendto(data, addr)

    def get_extra_info(self, name, default=None):
        return self._mux.transport.get_extra_info(name, default) if self._mux.transport else default

    def is_closing(self) -> bool:
        return self._closing

    def close(self) -> None:
        if self._closing:
            return
        self._closing = True
        self._mux.unregister(self._ufrag, self._endpoint)
        asyncio.get_running_loop().call_soon(self._endpoint.connection_lost, None)

    def abort(self) -> None:
        self.close()
