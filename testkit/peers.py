"""Real aiortc peers speaking WHIP/WHEP over HTTP: a publisher of pre-encoded media and viewers."""
from __future__ import annotations

import asyncio
import time
from collections import Counter
from pathlib import Path
from typing import Any, Callable, Optional

import aiohttp
import av
import yarl
from aiortc import RTCPeerConnection, RTCRtpSender, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from sfu.webrtc import aiortc_adapter as adapter
from sfu.rtp.rtp_header import RtpView


async def offer(direction: str, kinds=("video", "audio")) -> str:
    """A plain aiortc offer with one transceiver per kind in `direction` (for bad-input and rights tests)."""
    pc = adapter.new_peer_connection()
    for k in kinds:
        pc.addTransceiver(k, direction=direction)
    await pc.setLocalDescription(await pc.createOffer())
    sdp = pc.localDescription.sdp
    await pc.close()
    return sdp


class PreEncodedTrack(MediaStreamTrack):
    """Plays one stream of a file as encoded packets (no decoding, no re-encoding), looped with continuous pts,
    paced in real time. aiortc's sender packetizes them as they are."""

    def __init__(self, path: Path, kind: str) -> None:
        super().__init__()
        self.kind = kind
        with av.open(str(path)) as c:
            stream = c.streams.video[0] if kind == "video" else c.streams.audio[0]
            self.time_base = stream.time_base
            self.packets = [p for p in c.demux(stream) if p.size]
        # recv() rewrites each packet's pts as it loops: keep the file's own pts to compute from.
        self.file_pts = [p.pts for p in self.packets]
        first = self.packets[0].pts
        last = self.packets[-1].pts
        step = (self.packets[1].pts - first) if len(self.packets) > 1 else 1
        self.period = last - first + step
        self.first = first
        self.index = 0
        self.loops = 0
        self.start: Optional[float] = None
        self.sent = 0

    async def recv(self) -> av.Packet:
        if self.readyState != "live":
            raise MediaStreamError
        if self.start is None:
            self.start = time.monotonic()
        pkt = self.packets[self.index]
        pts = self.file_pts[self.index] - self.first + self.loops * self.period
        self.index += 1
        if self.index == len(self.packets):
            self.index = 0
            self.loops += 1
        due = self.start + float(pts * self.time_base)
        delay = due - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        pkt.pts = pts
        pkt.dts = pts
        pkt.time_base = self.time_base
        self.sent += 1
        return pkt


MAX_REDIRECTS = 3


def client_session(ssl_context: Any = None) -> aiohttp.ClientSession:
    """An HTTP client; `ssl_context` verifies an https server with a test CA."""
    if ssl_context is None:
        return aiohttp.ClientSession()
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=ssl_context))


async def post_offer(session: aiohttp.ClientSession, url: str, token: str, sdp: str) -> tuple[str, str, str]:
    """POST an SDP offer, following 307/308 redirects (RFC 9725) and sending the token again each hop (aiohttp,
    like browsers and curl, drops `Authorization` on a cross-origin redirect). Returns (answer SDP, Location,
    origin of the node that answered: the session's Location is relative to it)."""
    headers = {"Content-Type": "application/sdp", "Authorization": f"Bearer {token}"}
    for _ in range(MAX_REDIRECTS + 1):
        async with session.post(url, data=sdp, headers=headers, allow_redirects=False) as r:
            text = await r.text()
            if r.status in (307, 308) and "Location" in r.headers:
                url = str(r.url.join(yarl.URL(r.headers["Location"])))
                continue
            if r.status != 201:
                raise RuntimeError(f"{url}: HTTP {r.status}: {text.strip()}")
            return text, r.headers["Location"], str(r.url.origin())
    raise RuntimeError(f"{url}: more than {MAX_REDIRECTS} redirects")


async def _exchange(session: aiohttp.ClientSession, url: str, token: str, pc: RTCPeerConnection) -> tuple[str, str]:
    await pc.setLocalDescription(await pc.createOffer())
    text, location, origin = await post_offer(session, url, token, pc.localDescription.sdp)
    await pc.setRemoteDescription(RTCSessionDescription(sdp=text, type="answer"))
    return location, origin


class WhipPublisher:
    def __init__(self, base_url: str, room: str, token: str, clip: Path, video: bool = True, audio: bool = True,
                 video_codec: Optional[str] = None, query: str = "", ssl_context: Any = None):
        self.base_url, self.room, self.token, self.clip = base_url, room, token, clip
        self.query = query  # e.g. "?source=screen"
        self.video_codec = video_codec  # e.g. "video/H264": offer only that codec
        self.pc = adapter.new_peer_connection()
        self.tracks = []
        if video:
            self.tracks.append(PreEncodedTrack(clip, "video"))
        if audio:
            self.tracks.append(PreEncodedTrack(clip, "audio"))
        self.location: Optional[str] = None
        self.resource_base = base_url  # the node that answered (another one after a 307)
        self.http = client_session(ssl_context)

    async def start(self) -> None:
        for t in self.tracks:
            tr = self.pc.addTransceiver(t, direction="sendonly")
            if t.kind == "video" and self.video_codec:
                caps = RTCRtpSender.getCapabilities("video").codecs
                tr.setCodecPreferences([c for c in caps if c.mimeType in (self.video_codec, "video/rtx")])
        self.location, self.resource_base = await _exchange(
            self.http, f"{self.base_url}/whip/{self.room}{self.query}", self.token, self.pc)

    async def connected(self, timeout: float = 10) -> None:
        await _wait_state(self.pc, timeout)

    async def stop(self) -> None:
        if self.location:
            async with self.http.delete(self.resource_base + self.location,
                                        headers={"Authorization": f"Bearer {self.token}"}):
                pass
            self.location = None
        await self.pc.close()
        await self.http.close()


class WhepViewer:
    """A viewer. With count_only, packets are counted off the transport and never decoded (cheap, for load);
    otherwise aiortc decodes and `frames` counts decoded video frames."""

    def __init__(self, base_url: str, room: str, token: str, count_only: bool = False, query: str = "",
                 ssl_context: Any = None) -> None:
        self.base_url, self.room, self.token = base_url, room, token
        self.query = query  # e.g. "?source=stage"
        self.pc = adapter.new_peer_connection()
        self.count_only = count_only
        self.packets: Counter = Counter()      # payload type -> packets
        self.seqs: dict[int, set] = {}         # ssrc -> distinct sequence numbers
        self.first_packet_at: Optional[float] = None
        self.first_frame_at: Optional[float] = None
        self.frames = 0
        self.frame_sizes: list[tuple[int, int]] = []
        self.sender_reports: dict[int, tuple[int, int]] = {}   # ssrc -> last (ntp, rtp timestamp)
        self.clock_rates: dict[int, int] = {}                   # payload type -> clock rate
        self.kinds: dict[int, str] = {}                         # payload type -> kind
        self.sync_offsets: dict[int, list[float]] = {}          # payload type -> arrival - capture time (s)
        self.location: Optional[str] = None
        self.resource_base = base_url  # the node that answered (another one after a 307)
        self.started_at = 0.0
        self.http = client_session(ssl_context)
        self.tap: Optional[adapter.PacketTap] = None             # count_only: the transport's tap (sends RTCP too)
        self.rtp_listeners: list[Callable[[RtpView], None]] = []  # count_only: each packet, after it is counted
        self._tasks: list[asyncio.Task] = []

    def _on_rtp(self, data: bytes, arrival: float) -> None:
        v = RtpView(data)
        self.packets[v.payload_type] += 1
        self.seqs.setdefault(v.ssrc, set()).add(v.seq)
        if self.first_packet_at is None:
            self.first_packet_at = time.monotonic()
        sr = self.sender_reports.get(v.ssrc)
        clock = self.clock_rates.get(v.payload_type)
        if sr is not None and clock and len(self.sync_offsets[v.payload_type]) < 5000:
            ntp, rtp_ts = sr
            delta = ((v.timestamp - rtp_ts + (1 << 31)) & 0xFFFFFFFF) - (1 << 31)
            capture = ntp / (1 << 32) - 2208988800 + delta / clock   # sender's wall clock for this packet
            self.sync_offsets[v.payload_type].append(time.time() - capture)
        for listener in self.rtp_listeners:
            listener(v)

    def _on_rtcp(self, data: bytes) -> None:
        from aiortc.rtp import RtcpPacket, RtcpSrPacket
        for p in RtcpPacket.parse(data):
            if isinstance(p, RtcpSrPacket):
                self.sender_reports[p.ssrc] = (p.sender_info.ntp_timestamp, p.sender_info.rtp_timestamp)

    async def start(self) -> None:
        self.started_at = time.monotonic()
        self.pc.addTransceiver("video", direction="recvonly")
        self.pc.addTransceiver("audio", direction="recvonly")
        if not self.count_only:
            @self.pc.on("track")
            def on_track(track: MediaStreamTrack) -> None:
                if track.kind == "video":
                    self._tasks.append(asyncio.ensure_future(self._consume(track)))
        await self.pc.setLocalDescription(await self.pc.createOffer())
        text, self.location, self.resource_base = await post_offer(
            self.http, f"{self.base_url}/whep/{self.room}{self.query}", self.token, self.pc.localDescription.sdp)
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=text, type="answer"))
        if self.count_only:  # transports are bundled only once the answer is applied
            for t in self.pc.getTransceivers():
                for c in adapter.negotiated_codecs(t):
                    self.clock_rates[c.payloadType] = c.clockRate
                    self.kinds[c.payloadType] = t.kind
                    self.sync_offsets[c.payloadType] = []
            self.tap = adapter.PacketTap(self.pc, self._on_rtp, self._on_rtcp)

    async def _consume(self, track: MediaStreamTrack) -> None:
        try:
            while True:
                frame = await track.recv()
                self.frames += 1
                if self.first_frame_at is None:
                    self.first_frame_at = time.monotonic()
                if len(self.frame_sizes) < 1000:
                    self.frame_sizes.append((frame.width, frame.height))
        except (MediaStreamError, asyncio.CancelledError):
            pass

    def sync_offset(self, kind: str) -> Optional[float]:
        """Median of (arrival − capture time by the sender reports) for a kind; None before any SR."""
        values = sorted(x for pt, xs in self.sync_offsets.items() if self.kinds.get(pt) == kind for x in xs)
        return values[len(values) // 2] if values else None

    def distinct_packets(self) -> int:
        return sum(len(s) for s in self.seqs.values())

    async def stop(self) -> None:
        for t in self._tasks:
            t.cancel()
        if self.location:
            try:
                async with self.http.delete(self.resource_base + self.location,
                                            headers={"Authorization": f"Bearer {self.token}"}):
                    pass
            except aiohttp.ClientError:
                pass
            self.location = None
        await self.pc.close()
        await self.http.close()


async def _wait_state(pc: RTCPeerConnection, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while pc.connectionState != "connected":
        if time.monotonic() > deadline:
            raise TimeoutError(f"peer connection still {pc.connectionState}")
        await asyncio.sleep(0.05)
