"""The one place that touches aiortc's private internals (pinned: aiortc==1.16.0, aioice==0.13.0).

aiortc gives us ICE, DTLS and SRTP. Its RTP path decodes and re-encodes, which an SFU must never do, so we
take packets off the DTLS transport right after SRTP (raw bytes, before aiortc parses or routes them), and
send by SRTP-protecting and writing to the nominated ICE pair's socket ourselves. Everything here catches
its own exceptions: one escaping into aiortc's DTLS loop would kill the whole transport.
"""
from __future__ import annotations

import asyncio
import inspect
import logging
import random
import re
import time
import weakref
from typing import Callable, Iterable, Optional

import aioice.candidate
import aioice.ice
import aioice.stun
import aiortc
import aiortc.codecs as aiortc_codecs
from aiortc import RTCConfiguration, RTCPeerConnection, RTCRtpReceiver, RTCRtpSender, RTCRtpTransceiver
from aiortc.mediastreams import MediaStreamTrack
from aiortc.rtcrtpparameters import RTCRtcpFeedback, RTCRtpCodecParameters, RTCRtpHeaderExtensionParameters
from aiortc.rtcdtlstransport import RTCDtlsTransport
from aiortc.rtcicetransport import RTCIceGatherer
from aiortc.rtcdtlstransport import State as DtlsState
from pylibsrtp import SRTP_MAX_TRAILER_LEN
from pylibsrtp._binding import ffi as srtp_ffi
from pylibsrtp._binding import lib as srtp_lib

from sfu.native import native_forward
from sfu.webrtc.forward_latency import ArrivalStamps, LatencyHistogram
from sfu.webrtc.send_batch import SendBatch
from sfu.webrtc.udp_mux import MuxedTransport, UdpMux, buffers_too_small, new_ufrag

log = logging.getLogger(__name__)

PINNED_AIORTC = "1.16.0"
PINNED_PYLIBSRTP = "1.0.0"

RtpHandler = Callable[[bytes, float], None]  # (decrypted packet, arrival on the monotonic clock)
RtcpHandler = Callable[[bytes], None]

_original_get_host_addresses = aioice.ice.get_host_addresses
_host_addresses: Optional[list[str]] = None


def configure_host_addresses(addresses: Optional[Iterable[str]]) -> None:
    """Gather ICE host candidates only on these addresses (loopback allowed); None restores aioice's own.

    aioice skips 127.0.0.1 and would otherwise offer every interface of the server; a media server wants
    exactly the addresses the operator configured.
    """
    global _host_addresses
    _host_addresses = list(addresses) if addresses else None
    aioice.ice.get_host_addresses = _gather_host_addresses if _host_addresses else _original_get_host_addresses


def _gather_host_addresses(use_ipv4: bool, use_ipv6: bool) -> list[str]:
    assert _host_addresses is not None
    return [a for a in _host_addresses if (":" in a and use_ipv6) or (":" not in a and use_ipv4)]


_original_check_incoming = aioice.ice.Connection.check_incoming


def _check_incoming_noting_life(self: aioice.ice.Connection, message, addr, protocol) -> None:
    # An authenticated check from the peer proves it is alive even if it never answers ours (FFmpeg's WHIP
    # muxer stops answering consent checks after the handshake, and aioice would drop it after ~30 s).
    self._liveclass_peer_seen = time.monotonic()
    _original_check_incoming(self, message, addr, protocol)


async def _query_consent(self: aioice.ice.Connection) -> None:
    """RFC 7675 consent freshness as aioice does it, except that recent authenticated checks from the peer
    count as consent, and a connection already closing never starts (aioice 0.13 race: close() during the
    end of connect() would otherwise leave this loop running forever with no pair)."""
    if getattr(self, "_closing", False):
        return
    failures = 0
    while True:
        await asyncio.sleep(aioice.ice.CONSENT_INTERVAL * (0.8 + 0.4 * random.random()))
        if self._closing or not self._nominated:
            return
        for pair in list(self._nominated.values()):
            request = self.build_request(pair, nominate=False)
            try:
                await pair.protocol.request(request, pair.remote_addr,
                                            integrity_key=self.remote_password.encode("utf8"), retransmissions=0)
                failures = 0
            except aioice.stun.TransactionError:
                seen = getattr(self, "_liveclass_peer_seen", None)
                if seen is not None and time.monotonic() - seen < 2 * aioice.ice.CONSENT_INTERVAL:
                    failures = 0
                else:
                    failures += 1
        if failures >= aioice.ice.CONSENT_FAILURES:
            self._query_consent_task = None
            await self.close()
            return


aioice.ice.Connection.check_incoming = _check_incoming_noting_life  # type: ignore[method-assign]


# --- one UDP port for the node ---------------------------------------------------------------------------------
# aioice binds a socket per connection and address. Connections of a node with a NodePort (use_node_port) instead
# get an endpoint on the node's one socket per address (udp_mux.py); others (test clients in the same process,
# load peers) keep aioice's way.

# RTP datagrams' arrival on the node's sockets, and how long until their copies were sent (forward_latency.py)
arrivals = ArrivalStamps()
forward_latency = LatencyHistogram()


class NodePort:
    """A node's one UDP port: a socket per host address, bound at start (or at the first connection)."""

    def __init__(self, port: int) -> None:
        self.port = port            # 0: a free port, chosen at the first bind
        self.muxes: dict[str, UdpMux] = {}
        self._opening: dict[str, asyncio.Future] = {}

    async def open(self) -> dict[str, int]:
        """Bind on each host address now (a port in use fails the start, not the first viewer): address -> port."""
        for host in aioice.ice.get_host_addresses(use_ipv4=True, use_ipv6=True):
            await self.mux_for(host)
        return self.ports()

    async def mux_for(self, host: str) -> UdpMux:
        mux = self.muxes.get(host)
        if mux is not None:
            return mux
        opening = self._opening.get(host)
        if opening is None:   # one bind per address, however many connections gather at once
            port = self.port or next(iter(self.ports().values()), 0)   # a free port: the same on every address
            opening = self._opening[host] = asyncio.ensure_future(UdpMux.bind(host, port))
            try:
                self.muxes[host] = await opening
            finally:
                self._opening.pop(host, None)
            return self.muxes[host]
        return await asyncio.shield(opening)

    def ports(self) -> dict[str, int]:
        return {host: mux.local_addr[1] for host, mux in self.muxes.items() if mux.transport is not None}

    def new_ufrag(self) -> str:
        return new_ufrag(lambda u: any(m.has_ufrag(u) for m in self.muxes.values()))

    def small_buffers(self) -> list[str]:
        """The sockets whose kernel buffers stayed under what one port for every peer needs, and by how much."""
        return [f"{host}: receive {m.receive_buffer // 1024} KiB, send {m.send_buffer // 1024} KiB"
                for host, m in self.muxes.items()
                if buffers_too_small(m.receive_buffer) or buffers_too_small(m.send_buffer)]

    def stats(self) -> dict:
        return {"udp_port": self.port, "sockets": self.ports(),
                "connections": sum(m.connections for m in self.muxes.values()),
                "unrouted": sum(m.unrouted for m in self.muxes.values()),
                "rerouted": sum(m.rerouted for m in self.muxes.values())}

    def close(self) -> None:
        for mux in self.muxes.values():
            mux.close()
        self.muxes.clear()


class _MuxedStunProtocol(aioice.ice.StunProtocol):
    """aioice's endpoint on the node's socket. Media skips aioice's attempt to parse every datagram as STUN (an
    exception per RTP packet): by its first byte (RFC 7983) DTLS, RTP and RTCP are never STUN."""

    def datagram_received(self, data: bytes | str, addr: tuple) -> None:
        if data[0] > 3:   # type: ignore[operator]
            if 127 < data[0] < 192:   # type: ignore[operator]
                arrivals.note(data, time.monotonic())   # type: ignore[arg-type]
            self.receiver.data_received(data, self.local_candidate.component)
        else:
            super().datagram_received(data, addr)


def use_node_port(pc: RTCPeerConnection, port: Optional[NodePort]) -> None:
    """Put `pc`'s ICE connections on the node's port (None: a socket each). Call once the offer or the
    transceivers made them, before the SDP is created: each gets a ufrag unique on the port, by which its first
    checks are routed."""
    if port is None:
        return
    for ice in getattr(pc, "_RTCPeerConnection__iceTransports", ()):
        connection = ice.iceGatherer._connection
        if getattr(connection, "_liveclass_port", None) is None:
            connection._liveclass_port = port
            connection._local_username = port.new_ufrag()


async def _get_component_candidates(self: aioice.ice.Connection, component: int, addresses: list[str],
                                    timeout: int = 5) -> list:
    port: Optional[NodePort] = getattr(self, "_liveclass_port", None)
    if port is None:
        return await _original_get_component_candidates(self, component, addresses, timeout)
    candidates = []
    for address in addresses:
        try:
            mux = await port.mux_for(address)
        except OSError as exc:
            log.warning("could not bind the node's UDP port on %s: %s", address, exc)
            continue
        protocol = _MuxedStunProtocol(self)
        protocol.connection_made(MuxedTransport(mux, protocol, self.local_username))
        host, number = mux.local_addr
        protocol.local_candidate = aioice.candidate.Candidate(
            foundation=aioice.candidate.candidate_foundation("host", "udp", host), component=component,
            transport="udp", priority=aioice.candidate.candidate_priority(component, "host"),
            host=host, port=number, type="host")
        self._protocols.append(protocol)
        candidates.append(protocol.local_candidate)
    return candidates


_original_get_component_candidates = aioice.ice.Connection.get_component_candidates
aioice.ice.Connection.get_component_candidates = _get_component_candidates  # type: ignore[method-assign]

# Simulcast needs the RID header extensions negotiated (the SFU demuxes encodings by them); aiortc answers
# only extensions it lists as its own.
SIMULCAST_EXTENSIONS = ("urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id",
                        "urn:ietf:params:rtp-hdrext:sdes:repaired-rtp-stream-id")


def _register_simulcast_extensions() -> None:
    video = aiortc_codecs.HEADER_EXTENSIONS["video"]
    for i, uri in enumerate(SIMULCAST_EXTENSIONS):
        if not any(e.uri == uri for e in video):
            video.append(RTCRtpHeaderExtensionParameters(id=10 + i, uri=uri))


_register_simulcast_extensions()
aioice.ice.Connection.query_consent = _query_consent  # type: ignore[method-assign]

_original_dtls_start = RTCDtlsTransport.start


async def _dtls_start_over_live_ice(self: RTCDtlsTransport, remoteParameters) -> None:
    """aiortc starts DTLS once ICE's start returns, even when ICE failed or was closed meanwhile (every session
    closed before it connected): that built an OpenSSL context and connection (~100 KB of C heap) for a handshake
    that cannot happen, after the session had ended, kept until the cyclic GC. It fails at once instead, as the
    handshake would have."""
    if self.transport.state in ("failed", "closed"):
        self._set_state(DtlsState.FAILED)
        return
    await _original_dtls_start(self, remoteParameters)


RTCDtlsTransport.start = _dtls_start_over_live_ice  # type: ignore[method-assign]

# aioice reads every datagram on an ICE socket as STUN first and takes a ValueError to mean "not STUN, media".
# Its attribute decoders raise struct.error (and others) on a malformed attribute, which escape into asyncio's
# datagram callback: one logged traceback per garbage datagram anyone sends at the media port. Any failure to
# parse is a ValueError here, so such datagrams go the way of all non-STUN input (DTLS/SRTP reject them).
_original_parse_message = aioice.stun.parse_message


def _parse_message_or_value_error(data: bytes, *args, **kwargs):
    try:
        return _original_parse_message(data, *args, **kwargs)
    except ValueError:
        raise
    except Exception as exc:
        raise ValueError(f"malformed STUN message: {type(exc).__name__}: {exc}") from None


aioice.stun.parse_message = _parse_message_or_value_error


_alive: "weakref.WeakSet[RTCPeerConnection]" = weakref.WeakSet()


def new_peer_connection() -> RTCPeerConnection:
    """A peer connection that gathers no STUN/TURN candidates (the server has no network but its own)."""
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    _alive.add(pc)
    return pc


def peer_connections_alive() -> int:
    """Peer connections made here and still in memory, open or closed: one that outlives its session is held by
    a reference somewhere (or waits for the cyclic collector)."""
    return len(_alive)


async def close_peer_connection(pc: RTCPeerConnection) -> Optional[str]:
    """Close `pc`, even a half-built one. aiortc's own close() stops every transceiver and then every transport in
    one pass and gives up at the first error: after a negotiation that failed midway (a transceiver without a
    transport) it raises and leaves the ICE sockets open, and a later close() waits forever for the first. Then
    every part is stopped on its own. Returns why the plain close failed (None: it did not)."""
    try:
        await pc.close()
        return None
    except Exception as exc:  # aiortc raises what its half-built parts raise
        why = f"{type(exc).__name__}: {exc}"
    for t in pc.getTransceivers():
        try:
            await t.stop()
        except Exception:
            pass
    parts: list = []
    for t in pc.getTransceivers():
        for end in (t.sender, t.receiver):
            d = getattr(end, "transport", None)
            if d is not None and d not in parts:
                parts.append(d)
    parts += [d for d in getattr(pc, "_RTCPeerConnection__dtlsTransports", ()) if d not in parts]
    parts += [i for i in getattr(pc, "_RTCPeerConnection__iceTransports", ()) if i not in parts]
    for part in parts:   # DTLS before ICE: the ICE transports own the sockets
        try:
            await part.stop()
        except Exception:
            pass
    closed = getattr(pc, "_RTCPeerConnection__isClosed", None)
    if isinstance(closed, asyncio.Future) and not closed.done():
        closed.set_result(True)
    pc.remove_all_listeners()
    return why


def drop_receive_estimators(pc: RTCPeerConnection) -> None:
    """Drop aiortc's receive-side bandwidth estimator of each transceiver (call once the offer made them). The
    tap takes every RTP packet before aiortc's receivers, so it never sees one, yet each video receiver's holds
    1000 preallocated rate buckets: 76 KB and a thousand objects for the cyclic collector, the largest part of
    a session. aiortc skips it when None (audio receivers have none)."""
    for t in pc.getTransceivers():
        t.receiver._RTCRtpReceiver__remote_bitrate_estimator = None  # type: ignore[attr-defined]


def dtls_transports(pc: RTCPeerConnection) -> list[RTCDtlsTransport]:
    seen: list[RTCDtlsTransport] = []
    for t in pc.getTransceivers():
        d = t.receiver.transport
        if d is not None and d not in seen:
            seen.append(d)
    return seen


def answer_as_dtls_server(pc: RTCPeerConnection) -> None:
    """Answer `a=setup:passive` where the offer leaves the choice to us (`actpass`): the offerer becomes the DTLS
    client and lists its SRTP profiles, and aiortc's list puts AES-GCM first. Chromium offers AES-GCM but, as
    the DTLS server aiortc's `active` answer makes it, picks AES-CM/HMAC-SHA1 itself; GCM protects a 1,200-byte
    packet in 0.55 us here against 1.41 us (and is authenticated encryption in one pass)."""
    remote = pc.remoteDescription
    if remote is None:
        return
    setups = set(re.findall(r"^a=setup:(\w+)", remote.sdp, re.M))
    if setups != {"actpass"}:
        return   # the offerer chose its role (or said nothing): aiortc answers to match
    for t in dtls_transports(pc):
        if t._role == "auto":
            t._set_role("server")


class SrtpError(Exception):
    pass


def fast_protect(session) -> Callable[[bytes | bytearray], bytes]:
    """SRTP protect for the forwarding hot path: pylibsrtp's own wrapper allocates an int and insists on
    bytes for every call; this reuses both and takes the bytearray we built directly (pylibsrtp==1.0.0)."""
    cdata, buffer, srtp = session._cdata, session._buffer, session._srtp[0]
    len_p = srtp_ffi.new("int *")
    limit = len(cdata) - SRTP_MAX_TRAILER_LEN
    protect = srtp_lib.srtp_protect

    def fn(data: bytes | bytearray) -> bytes:
        n = len(data)
        if n > limit:
            raise SrtpError("packet too long for SRTP")
        buffer[0:n] = data
        len_p[0] = n
        rc = protect(srtp, cdata, len_p)
        if rc:
            raise SrtpError(f"srtp_protect failed: {rc}")
        return buffer[0:len_p[0]]

    return fn


_batch: Optional[SendBatch] = None
_batch_made = False


def send_batch() -> Optional[SendBatch]:
    """The process's one send batch, through the native kernel with pylibsrtp's own srtp_protect (None when
    the kernel was not built or LIVECLASS_NATIVE=0: each packet is then protected and sent from Python)."""
    global _batch, _batch_made
    if not _batch_made:
        kernel = native_forward()
        if kernel is not None:
            _batch = SendBatch(kernel, srtp_address(srtp_ffi.addressof(srtp_lib, "srtp_protect")))
        _batch_made = True
    return _batch


def srtp_address(cdata: object) -> int:
    """A libsrtp pointer (a function, a session) as the native kernel takes it."""
    return int(srtp_ffi.cast("uintptr_t", cdata))


class PacketTap:
    """Raw decrypted RTP/RTCP from one peer connection, and a lean SRTP send path back to it."""

    def __init__(self, pc: RTCPeerConnection, on_rtp: RtpHandler, on_rtcp: RtcpHandler) -> None:
        transports = dtls_transports(pc)
        if len(transports) != 1:
            raise ValueError("the SFU requires BUNDLE: one transport for all media")
        self.dtls = transports[0]
        self._on_rtp = on_rtp
        self._on_rtcp = on_rtcp
        self._pair: object = None
        self._sock_sendto: Callable[[bytes, tuple], object] | None = None
        self._buffered_sendto: Callable[[bytes, tuple], None] | None = None
        self._addr: tuple = ()
        self._protect: Callable[[bytes | bytearray], bytes] | None = None
        self._protect_rtcp: Callable[[bytes], bytes] | None = None
        # the native path: the node's batch, this connection's socket, SRTP session (held: the kernel uses its
        # address) and remote address as the kernel takes them
        self._batch: Optional[SendBatch] = None
        self._fd = -1
        self._session: object = None
        self._session_address = 0
        self._sockaddr = b""
        # True once DTLS is up and the send path is cached: checked per packet instead of aiortc's state.
        self.ready = False
        self.on_ready: Callable[[], None] = lambda: None
        self.send_errors = 0
        self.send_buffered = 0
        self.hook_errors = 0
        # aiortc awaits these two on every datagram: instance attributes shadow its methods.
        self.dtls._handle_rtp_data = self._rtp_hook  # type: ignore[method-assign]
        self.dtls._handle_rtcp_data = self._rtcp_hook  # type: ignore[method-assign]
        self.dtls.on("statechange", self._on_dtls_state)
        if self.dtls.state == "connected":  # tapping a connection that is already up
            self._refresh()

    async def _rtp_hook(self, data: bytes, arrival_time_ms: int) -> None:
        try:
            self._on_rtp(data, time.monotonic())
        except Exception:
            self.hook_errors += 1
            log.exception("RTP handler failed; packet dropped")
        if _batch is not None:
            _batch.flush()   # every viewer's copy of this packet is built: send them
        arrived = arrivals.take(int.from_bytes(data[8:12], "big"), int.from_bytes(data[2:4], "big"))
        if arrived is not None:
            forward_latency.add(time.monotonic() - arrived)

    async def _rtcp_hook(self, data: bytes) -> None:
        try:
            self._on_rtcp(data)
        except Exception:
            self.hook_errors += 1
            log.exception("RTCP handler failed; packet dropped")
        if _batch is not None:
            _batch.flush()   # its repairs

    def _on_dtls_state(self) -> None:
        try:
            if self.dtls.state == "connected":
                if self._refresh():
                    self.on_ready()
            else:
                self.ready = False
        except Exception:
            self.hook_errors += 1
            log.exception("DTLS state handler failed")

    @property
    def srtp_profile(self) -> Optional[str]:
        """The SRTP protection profile DTLS negotiated (AES-GCM protects a packet in about 0.4x the time of
        AES-CM with HMAC-SHA1 here), or None before the handshake."""
        try:
            profile = self.dtls._ssl.get_selected_srtp_profile()
        except Exception:
            return None
        return profile.decode() if profile else None

    @property
    def connected(self) -> bool:
        return self.dtls._tx_srtp is not None and self.dtls.state == "connected"

    def check_path(self) -> None:
        """Follow a change of the nominated ICE pair (call on a timer; the per-packet path does not look)."""
        if self.ready and self._pair is not self.dtls.transport._connection._nominated.get(1):
            self._refresh()

    def _refresh(self) -> bool:
        self.ready = False
        srtp = self.dtls._tx_srtp
        if srtp is None or self.dtls.state != "connected":
            return False
        pair = self.dtls.transport._connection._nominated.get(1)
        if pair is None or pair.protocol.transport is None:
            return False
        transport = pair.protocol.transport
        self._pair = pair
        # The socket itself: asyncio's DatagramTransport.sendto adds checks and buffering we only need
        # when the kernel's send buffer is full (BlockingIOError), so that case goes through it.
        self._sock_sendto = transport._sock.sendto
        self._buffered_sendto = transport.sendto
        self._addr = pair.remote_addr
        self._protect = fast_protect(srtp)
        self._protect_rtcp = srtp.protect_rtcp
        self._batch = send_batch()
        if self._batch is not None:
            try:
                self._sockaddr = self._batch.sockaddr(self._addr[0], self._addr[1])
                self._fd = transport._sock.fileno()
            except (ValueError, OSError):
                self._batch = None   # (a name, not an address): this connection sends from Python
            self._session = srtp
            self._session_address = srtp_address(srtp._srtp[0])
        self.ready = True
        return True

    def send_rtp(self, packet: bytes | bytearray) -> bool:
        """Protect and send one RTP packet; False (dropped) when not connected."""
        if not self.ready:
            return False
        if self._batch is not None:
            self._batch.add(self._fd, packet, self._session, self._session_address, self._sockaddr, self)
            return True
        try:
            data = self._protect(packet)  # type: ignore[misc]
            try:
                self._sock_sendto(data, self._addr)  # type: ignore[misc]
            except BlockingIOError:
                self.send_buffered += 1
                self._buffered_sendto(data, self._addr)  # type: ignore[misc]
            return True
        except Exception:
            self.send_errors += 1
            self._refresh()
            return False

    def send_leftover(self, datagram: bytes) -> None:
        """A protected packet the socket had no room for: asyncio's transport queues it."""
        try:
            self._buffered_sendto(datagram, self._addr)  # type: ignore[misc]
        except Exception:
            self.send_errors += 1

    def send_rtcp(self, packet: bytes) -> bool:
        if not self.ready:
            return False
        try:
            self._buffered_sendto(self._protect_rtcp(packet), self._addr)  # type: ignore[misc]
            return True
        except Exception:
            self.send_errors += 1
            self._refresh()
            return False


class SilentTrack(MediaStreamTrack):
    """A track that never yields a frame: it makes aiortc answer `sendonly` with SSRCs, and its sender's
    encoding loop then blocks forever instead of polling (we send RTP ourselves)."""

    def __init__(self, kind: str) -> None:
        super().__init__()
        self.kind = kind
        self._never: asyncio.Future = asyncio.get_event_loop().create_future()

    async def recv(self):  # type: ignore[override]
        await asyncio.shield(self._never)


def silence_sender_reports(sender: RTCRtpSender) -> None:
    """Stop aiortc's own RTCP loop for this sender (its SRs would carry zero NTP/RTP times); we send ours.

    Must run before the sender starts (before setLocalDescription's connect)."""

    async def run_rtcp() -> None:
        sender._RTCRtpSender__rtcp_started.set()  # type: ignore[attr-defined]
        try:
            await asyncio.get_event_loop().create_future()
        except asyncio.CancelledError:
            pass
        finally:
            sender._RTCRtpSender__rtcp_exited.set()  # type: ignore[attr-defined]

    sender._run_rtcp = run_rtcp  # type: ignore[method-assign]


def set_stream_id(sender: RTCRtpSender, stream_id: str) -> None:
    """Put a viewer's audio and video in one MediaStream (a=msid) so the browser lip-syncs them."""
    sender._stream_id = stream_id


def sender_ssrcs(sender: RTCRtpSender) -> tuple[int, int]:
    """The media and RTX SSRCs aiortc put in the SDP for this sender."""
    return sender._ssrc, sender._rtx_ssrc


def remote_direction(transceiver: RTCRtpTransceiver) -> Optional[str]:
    """The direction the remote offer declared for this media section (aiortc stores its reverse)."""
    d = transceiver._offerDirection
    return {"sendonly": "recvonly", "recvonly": "sendonly"}.get(d, d) if d else None


def negotiated_codecs(transceiver: RTCRtpTransceiver) -> list:
    """Codec parameters negotiated for a transceiver (payload types as agreed with the remote)."""
    return list(transceiver._codecs)


def negotiated_extensions(transceiver: RTCRtpTransceiver) -> dict[str, int]:
    """Header-extension URI → negotiated id."""
    return {e.uri: e.id for e in transceiver._headerExtensions}


def accept_transport_cc(transceiver: RTCRtpTransceiver, ext_id: int, uri: str, feedback_pts: set[int]) -> None:
    """Answer the viewer's offer of transport-wide congestion control, which aiortc does not know: the header
    extension (under the offer's id) and `transport-cc` feedback on the codecs that offered it. Call between
    setRemoteDescription and createAnswer; aiortc then writes both into the answer."""
    if not any(e.uri == uri for e in transceiver._headerExtensions):
        transceiver._headerExtensions.append(RTCRtpHeaderExtensionParameters(id=ext_id, uri=uri))
    for codec in transceiver._codecs:
        if codec.payloadType in feedback_pts and not any(f.type == "transport-cc" for f in codec.rtcpFeedback):
            codec.rtcpFeedback.append(RTCRtcpFeedback(type="transport-cc"))


def keep_opus_fec(transceiver: RTCRtpTransceiver) -> None:
    """Say `useinbandfec=1` for Opus in the answer (aiortc writes no Opus parameters): a publisher's Chromium
    then lets its encoder add in-band FEC as the loss it is told of grows, and a viewer knows we pass it on."""
    for codec in transceiver._codecs:
        if codec.mimeType.lower() == "audio/opus":
            codec.parameters.setdefault("minptime", 10)
            codec.parameters["useinbandfec"] = 1


def accept_red(transceiver: RTCRtpTransceiver, red_pt: int, opus_pt: int, fmtp: str, prefer: bool = False) -> bool:
    """Answer an offer of redundant audio over Opus (RFC 2198), which aiortc does not know, if Opus itself was
    negotiated under `opus_pt`. `prefer` lists it before Opus in the answer: a publisher's Chromium sends RED
    only then (a viewer's answer keeps Opus first; we choose per packet what we send it). Call between
    setRemoteDescription and createAnswer."""
    codecs = transceiver._codecs
    opus = next((i for i, c in enumerate(codecs) if c.payloadType == opus_pt and c.mimeType.lower() == "audio/opus"),
                None)
    if opus is None:
        return False
    taken = next((c for c in codecs if c.payloadType == red_pt), None)
    if taken is not None:   # answered already, or the type is another codec's
        return taken.mimeType.lower() == "audio/red"
    red = RTCRtpCodecParameters(mimeType="audio/red", clockRate=48000, channels=2, payloadType=red_pt,
                                parameters={fmtp: None})
    codecs.insert(opus if prefer else len(codecs), red)
    return True


def self_test() -> list[str]:
    """Check every private seam this module uses still exists; returns the problems (empty when fine)."""
    problems = []
    if aiortc.__version__ != PINNED_AIORTC:
        problems.append(f"aiortc {aiortc.__version__} installed, adapter written for {PINNED_AIORTC}")
    import pylibsrtp
    if pylibsrtp.__version__ != PINNED_PYLIBSRTP:
        problems.append(f"pylibsrtp {pylibsrtp.__version__} installed, adapter written for {PINNED_PYLIBSRTP}")
    if "self._cdata" not in inspect.getsource(pylibsrtp.Session.__init__) or \
            "self._buffer" not in inspect.getsource(pylibsrtp.Session.__init__):
        problems.append("pylibsrtp.Session buffers missing")
    if not isinstance(getattr(aiortc_codecs, "HEADER_EXTENSIONS", None), dict):
        problems.append("aiortc.codecs.HEADER_EXTENSIONS missing")
    if [s.name for s in DtlsState] != ["NEW", "CONNECTING", "CONNECTED", "CLOSED", "FAILED"]:
        problems.append("aiortc DTLS states changed")
    if "await dtlsTransport.start(" not in inspect.getsource(RTCPeerConnection):
        problems.append("RTCPeerConnection no longer starts DTLS itself")
    if "if self.__remote_bitrate_estimator is not None" not in inspect.getsource(RTCRtpReceiver):
        problems.append("RTCRtpReceiver needs its remote bitrate estimator")
    for owner, name in ((RTCDtlsTransport, "_handle_rtp_data"), (RTCDtlsTransport, "_handle_rtcp_data"),
                        (RTCDtlsTransport, "_set_state"),
                        (RTCRtpSender, "_run_rtcp"), (aioice.ice, "get_host_addresses"),
                        (aioice.ice.Connection, "sendto"), (aioice.ice.Connection, "check_incoming"),
                        (aioice.ice.Connection, "build_request"), (aioice.ice, "CONSENT_INTERVAL"),
                        (aioice.stun, "parse_message"),
                        (aioice.ice, "CONSENT_FAILURES"), (aioice.ice, "StunProtocol"),
                        (aioice.ice.Connection, "get_component_candidates"),
                        (aioice.candidate, "candidate_foundation"), (aioice.candidate, "candidate_priority")):
        if not hasattr(owner, name):
            problems.append(f"{getattr(owner, '__name__', owner)}.{name} missing")
    # attributes assigned in constructors: look for them in the source
    for owner, names in ((RTCDtlsTransport, ("self._tx_srtp",)),
                         (RTCRtpSender, ("self.__rtcp_started", "self.__rtcp_exited", "self._ssrc", "self._rtx_ssrc")),
                         (RTCRtpReceiver, ("self.__remote_bitrate_estimator",)),
                         (RTCRtpTransceiver, ("self._codecs", "self._headerExtensions", "self._offerDirection")),
                         (RTCPeerConnection, ("self.__dtlsTransports", "self.__iceTransports", "self.__isClosed")),
                         (aioice.ice.Connection, ("self._nominated", "self._closing", "self._query_consent_task",
                                                  "self.remote_password", "self._local_username",
                                                  "self._protocols")),
                         (RTCIceGatherer, ("self._connection",))):
        source = inspect.getsource(owner.__init__)
        problems += [f"{owner.__name__}: {n} missing" for n in names if n not in source]
    import asyncio.selector_events
    if "self._sock = sock" not in inspect.getsource(asyncio.selector_events._SelectorTransport.__init__):
        problems.append("asyncio selector transport has no _sock")
    if "pause_reading" not in asyncio.selector_events._SelectorTransport.__dict__:
        problems.append("asyncio selector transport cannot pause reading (the node's port drains its socket)")
    return problems
