"""Load-generator peers for benchmarks: a very cheap WHEP viewer and a packet-counting WHIP publisher.

Bench-only helpers. `CountingViewer` in its default "poll" mode takes RTP straight off its UDP socket, before
aioice's STUN parsing, aiortc's DTLS loop and SRTP: the RTP header (sequence number, payload type, SSRC) is
in clear text in SRTP, so counting needs no decryption. Only until the first keyframe start is seen does it
decrypt video packets (to read the VP8 payload descriptor). A shared `SocketPoller` drains all viewers'
sockets in batches instead of one asyncio callback per datagram. That makes a viewer cost a few microseconds
per packet, so one load process can hold hundreds of viewers while the SFU process being measured gets the CPU.
`JanusCountingViewer` is the same viewer subscribed to a Janus VideoRoom (Janus offers, it answers), for
bench/fanout.py --against janus.

Like the SFU's own adapter, this reaches into aiortc/aioice private attributes (pinned versions, see
sfu/webrtc/aiortc_adapter.py): `RTCDtlsTransport.transport._connection._protocols`, `_rx_srtp`, `_tx_srtp`,
`_send_rtp`, `RTCRtpSender._ssrc`. It is test-side code: a broken seam fails the benchmark, not the product.
"""
from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Optional

import aiohttp
import numpy as np
from aiortc import RTCSessionDescription

from sfu.webrtc import aiortc_adapter as adapter
from sfu.rtp import rtcp_builder
from sfu.rtp.codec_info import parse_vp8
from sfu.rtp.rtp_header import RtpParseError, RtpView
from testkit.peers import WhipPublisher

SEQ_SPACE = 65536


class KindCounter:
    """Counters for one received payload type (video, audio or RTX) of one viewer."""

    __slots__ = ("kind", "packets", "octets", "first_at", "ssrc", "highest", "seen", "w_distinct", "w_packets",
                 "w_octets")

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.packets = 0
        self.octets = 0
        self.first_at: Optional[float] = None
        self.ssrc = 0
        self.highest = 0
        self.seen: Optional[bytearray] = None  # per-sequence-number flags while a measuring window is open
        self.w_distinct = 0
        self.w_packets = 0
        self.w_octets = 0

    def count(self, data: bytes, n: int) -> None:
        """One RTP packet, `n` bytes on the wire."""
        self.packets += 1
        self.octets += n
        seq = (data[2] << 8) | data[3]
        seen = self.seen
        if seen is not None:
            self.w_packets += 1
            self.w_octets += n
            if not seen[seq]:
                seen[seq] = 1
                self.w_distinct += 1
        if self.first_at is None:
            self.first_at = time.monotonic()
            self.ssrc = int.from_bytes(data[8:12], "big")
        self.highest = seq

    def open_window(self) -> None:
        self.seen = bytearray(SEQ_SPACE)
        self.w_distinct = self.w_packets = self.w_octets = 0

    def close_window(self) -> dict:
        """Window totals. `expected` is the span of sequence numbers seen (the circular complement of the
        longest never-seen run), so `gaps` = expected - distinct counts holes inside the window and is immune
        to clock skew between processes at the window edges (valid while the window holds < 65536 packets)."""
        seen, self.seen = self.seen, None
        expected = 0
        if seen is not None and self.w_distinct:
            flags = np.frombuffer(bytes(seen), dtype=np.uint8)
            idx = np.flatnonzero(flags)
            if len(idx) == 1:
                expected = 1
            else:
                gaps = np.diff(np.concatenate([idx, idx[:1] + SEQ_SPACE]))  # distances to the next seen seq
                expected = SEQ_SPACE - int(gaps.max()) + 1
        return {"distinct": self.w_distinct, "packets": self.w_packets, "octets": self.w_octets,
                "expected": expected, "gaps": max(0, expected - self.w_distinct)}


class SocketPoller:
    """Reads many viewers' UDP sockets in batches: one epoll call per tick, every ready socket drained.

    asyncio would wake up and run a callback for every single datagram; at 200 viewers x 220 packets/s that
    alone costs more CPU than the counting. Taking the sockets off asyncio's selector and draining them every
    few milliseconds costs a recvfrom per packet plus one epoll call per tick. Latencies measured by viewers
    (first packet, first keyframe) get the tick's granularity."""

    MAX_PER_SOCKET = 256  # datagrams read from one socket per tick

    def __init__(self, interval: float = 0.004) -> None:
        import select
        self.interval = interval
        self._epoll = select.epoll()
        self._entries: dict[int, tuple] = {}  # fd -> (socket, handler)
        self.ticks = 0

    def add(self, transport, handler) -> bool:
        sock = getattr(transport, "_sock", None)
        loop = asyncio.get_running_loop()
        if sock is None or not hasattr(loop, "_remove_reader"):
            return False
        fd = sock.fileno()
        loop._remove_reader(fd)  # asyncio no longer reads it (its transport still sends and closes it)
        self._entries[fd] = (sock, handler)
        import select
        try:
            self._epoll.register(fd, select.EPOLLIN)
        except FileExistsError:  # a closed socket's number, reused
            self._epoll.modify(fd, select.EPOLLIN)
        return True

    def remove(self, transport) -> None:
        sock = getattr(transport, "_sock", None)
        if sock is None or sock.fileno() < 0:
            return
        fd = sock.fileno()
        if self._entries.pop(fd, None) is not None:
            try:
                self._epoll.unregister(fd)
            except OSError:
                pass

    async def run(self, deadline: float) -> None:
        poll = self._epoll.poll
        entries = self._entries
        limit = self.MAX_PER_SOCKET
        while time.monotonic() < deadline:
            await asyncio.sleep(self.interval)
            self.ticks += 1
            for fd, _ in poll(0):
                entry = entries.get(fd)
                if entry is None:
                    continue
                recvfrom = entry[0].recvfrom
                handler = entry[1]
                try:
                    for _ in range(limit):
                        data, addr = recvfrom(2048)
                        handler(data, addr)
                except (BlockingIOError, InterruptedError):
                    pass
                except OSError:
                    entries.pop(fd, None)

    def close(self) -> None:
        self._epoll.close()


class CountingViewer:
    """A WHEP viewer that never decodes. Modes:
    "poll": its socket is drained in batches by a shared SocketPoller, RTP counted from the clear-text header
            (no SRTP after the first keyframe) -- the cheapest;
    "socket": the same counting, called by asyncio for every datagram;
    "tap": the SFU's own PacketTap path (asyncio + aioice queue + aiortc DTLS loop + SRTP unprotect)."""

    MODES = ("poll", "socket", "tap")

    def __init__(self, base_url: str, room: str, token: str, http: aiohttp.ClientSession,
                 mode: str = "poll", poller: Optional[SocketPoller] = None) -> None:
        if mode not in self.MODES or (mode == "poll" and poller is None):
            raise ValueError(f"bad viewer mode {mode!r} (poll needs a poller)")
        self.base_url, self.room, self.token, self.http, self.mode = base_url, room, token, http, mode
        self.poller = poller
        self._polled: list = []
        self.pc = adapter.new_peer_connection()
        self.by_pt: dict[int, KindCounter] = {}
        self.video: Optional[KindCounter] = None
        self.audio: Optional[KindCounter] = None
        self.other_packets = 0
        self.post_at = 0.0
        self.answer_at: Optional[float] = None
        self.connected_at: Optional[float] = None
        self.first_keyframe_at: Optional[float] = None
        self.keyframe_probe_errors = 0
        self.before_keys = 0  # video packets that arrived before this viewer had its SRTP keys
        self.location: Optional[str] = None
        self.error: Optional[str] = None
        self.dtls = None
        self._video_pt = -1
        self._rtcp_ssrc = 0x5EED0000 | (id(self) & 0xFFFF)
        self._rtcp_rounds = 0

        @self.pc.on("connectionstatechange")
        def _state() -> None:
            if self.pc.connectionState == "connected" and self.connected_at is None:
                self.connected_at = time.monotonic()

    # --- joining ------------------------------------------------------------------------------------------

    async def start(self) -> None:
        self.post_at = time.monotonic()
        self.pc.addTransceiver("video", direction="recvonly")
        self.pc.addTransceiver("audio", direction="recvonly")
        await self.pc.setLocalDescription(await self.pc.createOffer())  # gathers: sockets exist from here
        self.dtls = adapter.dtls_transports(self.pc)[0]
        if self.mode in ("poll", "socket"):
            self._hook_sockets()
        async with self.http.post(f"{self.base_url}/whep/{self.room}", data=self.pc.localDescription.sdp,
                                  headers={"Content-Type": "application/sdp",
                                           "Authorization": f"Bearer {self.token}"}) as r:
            text = await r.text()
            if r.status != 201:
                raise RuntimeError(f"WHEP: HTTP {r.status}: {text.strip()}")
            self.location = r.headers["Location"]
        self.answer_at = time.monotonic()
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=text, type="answer"))
        self._map_codecs()
        if self.mode == "tap":
            adapter.PacketTap(self.pc, self._on_decrypted_rtp, lambda data: None)

    def _map_codecs(self) -> None:
        """Counters by negotiated payload type, once both descriptions are set."""
        kinds: dict[str, KindCounter] = {}  # one counter per kind: the SFU sends one codec (one SSRC) per kind
        for t in self.pc.getTransceivers():
            for c in adapter.negotiated_codecs(t):
                kind = f"{t.kind}_rtx" if c.mimeType.lower().endswith("/rtx") else t.kind
                counter = kinds.setdefault(kind, KindCounter(kind))
                self.by_pt[c.payloadType] = counter
                if c.mimeType.lower() == "video/vp8":
                    self._video_pt = c.payloadType
        self.video, self.audio = kinds.get("video"), kinds.get("audio")

    def _hook_sockets(self) -> None:
        connection = self.dtls.transport._connection
        for protocol in connection._protocols:
            receiver = self._make_fast_receiver(protocol.datagram_received)
            protocol.datagram_received = receiver
            if self.mode == "poll" and self.poller.add(protocol.transport, receiver):
                self._polled.append(protocol.transport)

    def _make_fast_receiver(self, original):
        by_pt = self.by_pt

        def datagram_received(data: bytes, addr: tuple) -> None:
            # RFC 7983 demux: 128..191 is RTP/RTCP; RTCP packet types 192..223 sit in the second byte
            if 127 < data[0] < 192 and not 191 < data[1] < 224:
                c = by_pt.get(data[1] & 0x7F)
                if c is None:
                    self.other_packets += 1
                    return
                c.count(data, len(data))
                if self.first_keyframe_at is None and c is self.video:
                    self._probe_keyframe(data)
                return
            original(data, addr)  # STUN, DTLS and SRTCP take aioice's and aiortc's normal path

        return datagram_received

    def _probe_keyframe(self, data: bytes) -> None:
        srtp = self.dtls._rx_srtp
        if srtp is None:  # media before this viewer finished DTLS: a real client could not decrypt it
            self.before_keys += 1
            return
        try:
            self._check_keyframe(srtp.unprotect(data))
        except Exception:
            self.keyframe_probe_errors += 1

    def _check_keyframe(self, plain: bytes) -> None:
        try:
            v = RtpView(plain)
        except RtpParseError:
            return
        if v.payload_type != self._video_pt:
            return
        d = parse_vp8(plain, v.payload_start, v.payload_end)
        if d is not None and d.keyframe:  # S bit, partition 0, P bit clear
            self.first_keyframe_at = time.monotonic()

    def _on_decrypted_rtp(self, data: bytes, arrival: float) -> None:
        """mode "tap": the same counting, on packets aiortc has already taken through SRTP."""
        c = self.by_pt.get(data[1] & 0x7F)
        if c is None:
            self.other_packets += 1
            return
        # the wire size "poll" reports: with the AEAD_AES_256_GCM tag aiortc peers negotiate
        c.count(data, len(data) + 16)
        if self.first_keyframe_at is None and c is self.video:
            self._check_keyframe(data)

    # --- browser-like feedback -------------------------------------------------------------------------------

    def send_feedback(self, remb_bps: int) -> None:
        """One compound RTCP as Chromium sends about every 250 ms: RR (video; audio every 4th time) + REMB."""
        srtp = self.dtls._tx_srtp if self.dtls is not None else None
        if srtp is None or self.video is None or not self.video.ssrc:
            return
        connection = self.dtls.transport._connection
        pair = connection._nominated.get(1)
        if pair is None or pair.protocol.transport is None:
            return
        self._rtcp_rounds += 1
        blocks = [rtcp_builder.report_block(self.video.ssrc, 0.0, 0, self.video.highest, 0, 0, 0)]
        if self._rtcp_rounds % 4 == 0 and self.audio is not None and self.audio.ssrc:
            blocks.append(rtcp_builder.report_block(self.audio.ssrc, 0.0, 0, self.audio.highest, 0, 0, 0))
        packet = rtcp_builder.receiver_report(self._rtcp_ssrc, blocks)
        packet += rtcp_builder.remb(self._rtcp_ssrc, remb_bps, [self.video.ssrc])
        try:
            pair.protocol.transport.sendto(srtp.protect_rtcp(packet), pair.remote_addr)
        except Exception:
            pass

    # --- measuring ----------------------------------------------------------------------------------------------

    def counters(self) -> list[KindCounter]:
        return list({id(c): c for c in self.by_pt.values()}.values())

    def join_info(self) -> dict:
        def ms(t: Optional[float]) -> Optional[float]:
            return None if t is None else round((t - self.post_at) * 1000, 1)
        return {"post_ms": ms(self.answer_at), "connected_ms": ms(self.connected_at),
                "first_packet_ms": ms(self.video.first_at if self.video else None),
                "first_keyframe_ms": ms(self.first_keyframe_at), "video_before_keys": self.before_keys,
                "keyframe_probe_errors": self.keyframe_probe_errors,
                "error": self.error}

    async def stop(self) -> None:
        for transport in self._polled:
            self.poller.remove(transport)
        self._polled.clear()
        if self.location:
            try:
                async with self.http.delete(self.base_url + self.location,
                                            headers={"Authorization": f"Bearer {self.token}"}):
                    pass
            except (aiohttp.ClientError, asyncio.TimeoutError):
                pass
            self.location = None
        await self.pc.close()


class JanusCountingViewer(CountingViewer):
    """The same non-decoding viewer (same sockets, same counting, same feedback) subscribed to a Janus
    VideoRoom feed: Janus sends the offer and the viewer answers. `client` is the worker's shared Janus
    session (bench/janus.py). `post_at` is the join request, `answer_at` the moment Janus took the answer."""

    def __init__(self, client, room: int, feed: int, mode: str = "poll",
                 poller: Optional[SocketPoller] = None) -> None:
        super().__init__(client.base_url, str(room), "", client.http, mode, poller)
        self.client, self.room_id, self.feed = client, room, feed
        self.handle: Optional[int] = None

    async def start(self) -> None:
        from bench.janus import start_subscriber, subscribe
        self.post_at = time.monotonic()
        self.handle, offer = await subscribe(self.client, self.room_id, self.feed)
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=offer, type="offer"))
        await self.pc.setLocalDescription(await self.pc.createAnswer())  # gathers: sockets exist from here
        self.dtls = adapter.dtls_transports(self.pc)[0]
        if self.mode in ("poll", "socket"):
            self._hook_sockets()
        self._map_codecs()
        if self.mode == "tap":
            adapter.PacketTap(self.pc, self._on_decrypted_rtp, lambda data: None)
        await start_subscriber(self.client, self.handle, self.pc.localDescription.sdp)
        self.answer_at = time.monotonic()

    async def stop(self) -> None:
        for transport in self._polled:
            self.poller.remove(transport)
        self._polled.clear()
        if self.handle is not None:
            await self.client.detach(self.handle)
            self.handle = None
        await self.pc.close()


class CountingPublisher:
    """testkit's WhipPublisher (pre-encoded clip, no encoding) plus a count of media packets it sent per kind,
    and a pause: while paused no packet is sent, and on resume the clip's clock moves on by the pause so
    pacing continues without a catch-up burst. Pausing at the edges of a measuring window lets every queue
    between publisher and viewers drain, so "sent in the window" and "received" cover exactly the same packets.
    """

    def __init__(self, base_url: str, room: str, token: str, clip: Path, publisher=None) -> None:
        """`publisher`: another signalling for the same media (bench/janus.py's JanusPublisher); by default
        testkit's WhipPublisher."""
        self.pub = publisher or WhipPublisher(base_url, room, token, clip)
        self.sent: dict[int, int] = {}
        self.kind_of: dict[int, str] = {}
        self.gate = asyncio.Event()
        self.gate.set()
        for track in self.pub.tracks:
            self._make_pausable(track)

    def _make_pausable(self, track) -> None:
        original = track.recv
        gate = self.gate
        # testkit's PreEncodedTrack writes the looped pts back into its cached packets, so from the clip's
        # second loop on every due time is a whole clip period late and the stream stalls: restore each
        # packet's own pts before it is read again.
        source_pts = [p.pts for p in track.packets]

        async def recv():
            if not gate.is_set():
                waited_from = time.monotonic()
                await gate.wait()
                if track.start is not None:
                    track.start += time.monotonic() - waited_from
            track.packets[track.index].pts = source_pts[track.index]
            return await original()

        track.recv = recv

    async def pause(self, settle: float = 0.15) -> dict[str, int]:
        """Stop sending; returns the packets sent so far by kind once the frame in flight has gone out."""
        self.gate.clear()
        await asyncio.sleep(settle)
        return self.sent_by_kind()

    def resume(self) -> None:
        self.gate.set()

    async def start(self, timeout: float = 20) -> None:
        await self.pub.start()
        for t in self.pub.pc.getTransceivers():
            ssrc, rtx_ssrc = adapter.sender_ssrcs(t.sender)
            self.kind_of[ssrc] = t.kind
            self.kind_of[rtx_ssrc] = f"{t.kind}_rtx"
        dtls = adapter.dtls_transports(self.pub.pc)[0]
        original = dtls._send_rtp
        sent = self.sent

        async def counting_send(data: bytes) -> None:
            if not 191 < data[1] < 224:
                ssrc = int.from_bytes(data[8:12], "big")
                sent[ssrc] = sent.get(ssrc, 0) + 1
            await original(data)

        dtls._send_rtp = counting_send
        await self.pub.connected(timeout)

    def sent_by_kind(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for ssrc, n in self.sent.items():
            kind = self.kind_of.get(ssrc, "other")
            out[kind] = out.get(kind, 0) + n
        return out

    async def stop(self) -> None:
        await self.pub.stop()
