"""Publisher and viewer sessions: one aiortc peer connection each, negotiated from an SDP offer."""
from __future__ import annotations

import asyncio
import logging
import re
import secrets
import time
import uuid
from typing import Callable, Optional

from aiortc import RTCPeerConnection, RTCSessionDescription

from sfu.webrtc import aiortc_adapter as adapter
from sfu.rtp import rtcp_dispatch
from sfu.rtp.rtcp_dispatch import RtcpReceiver, RtcpReceiverInfo
from sfu.webrtc import sdp_hints
from sfu.webrtc import simulcast_sdp
from sfu.webrtc.offer_feedback import SectionFeedback, offered_feedback
from sfu.congestion.estimator import ProbeOutcome, SendSideEstimator
from sfu.rtp.transport_feedback import TRANSPORT_CC_EXTENSION_URI, TransportFeedback
from sfu.forward.audio_redundancy import AudioRedundancy
from sfu.forward.consumer import Consumer
from sfu.forward.pacer import PACING_FACTOR, Pacer
from sfu.forward.transport_wide import TransportWideSequencer
from sfu.forward.viewer_out import ViewerOut
from sfu.errors import BadOffer
from sfu.room.feed import MAIN, Feed, Slot
from sfu.ingest.publisher import PayloadInfo, PublisherIngest
from sfu.room.room import Room
from sfu.room.track import Track

log = logging.getLogger(__name__)

ABS_SEND_TIME = "http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time"
CONNECT_TIMEOUT = 20.0
MAX_OFFER_MEDIA = 8
ESTIMATE_DROP = 0.95   # a transport-cc estimate this far under its recent peak re-allocates at once


def _check_offer_text(sdp: str) -> None:
    if not sdp.strip().startswith("v=0"):
        raise BadOffer("not an SDP offer (must start with v=0)")
    kinds = re.findall(r"^m=(audio|video)\s", sdp, re.M)
    if not kinds:
        raise BadOffer("offer has no audio or video media section")
    if len(re.findall(r"^m=", sdp, re.M)) > MAX_OFFER_MEDIA:
        raise BadOffer("offer has too many media sections")


def _announce(sdp: str, public_ip: Optional[str]) -> str:
    """Rewrite host candidates to the configured public address (1:1 NAT), as mediasoup's announcedIp."""
    if not public_ip:
        return sdp
    return re.sub(r"^(a=candidate:\S+ \d+ \S+ \d+ )(\S+)( \d+ typ host)", rf"\g<1>{public_ip}\g<3>", sdp, flags=re.M)


class Session:
    role = "session"

    def __init__(self, room: Room, on_closed: Callable[["Session"], None], slot: Slot = MAIN,
                 owner: str = "") -> None:
        self.id = secrets.token_urlsafe(12)
        self.room = room
        self.slot = slot
        self.owner = owner  # the identity of the token that opened it ("" when not known)
        self.pc: RTCPeerConnection = adapter.new_peer_connection()
        self.port: Optional[adapter.NodePort] = None   # the node's one UDP port (None: a socket of its own)
        self.tap: Optional[adapter.PacketTap] = None
        self.created = time.monotonic()
        self.closed = False
        self._on_closed = on_closed
        self._watchdog: Optional[asyncio.TimerHandle] = None
        self._timeout_close: Optional[asyncio.Task] = None   # referenced: the loop keeps tasks only weakly

        @self.pc.on("connectionstatechange")
        async def _state() -> None:
            if self.pc.connectionState in ("failed", "closed"):
                await self.close()

    async def _apply_offer(self, sdp: str) -> None:
        _check_offer_text(sdp)
        try:
            await self.pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="offer"))
        except Exception as exc:  # aiortc raises many types on bad SDP
            raise BadOffer(f"offer rejected: {exc or type(exc).__name__}") from exc
        adapter.drop_receive_estimators(self.pc)

    async def _answer(self, public_ip: Optional[str]) -> str:
        adapter.use_node_port(self.pc, self.port)
        adapter.answer_as_dtls_server(self.pc)
        answer = await self.pc.createAnswer()
        await self.pc.setLocalDescription(answer)
        # a timer, not a sleeping task: a connected session then holds no task for the timeout's 20 s
        self._watchdog = asyncio.get_running_loop().call_later(CONNECT_TIMEOUT, self._connect_timeout)
        return _announce(self.pc.localDescription.sdp, public_ip)

    def _connect_timeout(self) -> None:
        """A client that never completes ICE/DTLS must not hold a peer connection forever."""
        self._watchdog = None
        if not self.closed and self.pc.connectionState != "connected":
            log.info("%s %s never connected; closing", self.role, self.id)
            self._timeout_close = asyncio.get_running_loop().create_task(self.close())

    async def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self._detach()
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None
        why = await adapter.close_peer_connection(self.pc)
        if why:  # a negotiation that failed midway leaves aiortc half-built: its parts were stopped one by one
            log.info("%s %s: peer connection closed part by part (%s)", self.role, self.id, why)
        self._on_closed(self)

    def _detach(self) -> None:
        raise NotImplementedError

    def dump(self) -> dict:
        return {"id": self.id, "role": self.role, "source": str(self.slot), "owner": self.owner,
                "state": self.pc.connectionState, "age_s": round(time.monotonic() - self.created, 1),
                "srtp_profile": self.tap.srtp_profile if self.tap is not None else None}


class PublisherSession(Session):
    role = "publisher"

    def __init__(self, room: Room, feed: Feed, on_closed: Callable[["Session"], None], owner: str = "") -> None:
        super().__init__(room, on_closed, feed.slot, owner)
        self.feed = feed
        self.ingest: Optional[PublisherIngest] = None   # once the offer is negotiated

    async def negotiate(self, offer: str, public_ip: Optional[str]) -> str:
        await self._apply_offer(offer)
        payloads: dict[int, PayloadInfo] = {}
        red_pts = self._accept_red(offered_feedback(offer))
        receiving = False
        for t in self.pc.getTransceivers():
            if adapter.remote_direction(t) in ("sendonly", "sendrecv"):
                receiving = True
            adapter.keep_opus_fec(t)
            for c in adapter.negotiated_codecs(t):
                if c.payloadType in red_pts:
                    continue   # unwrapped into Opus at ingest: no stream of its own
                name = c.mimeType.split("/")[1]
                rtx_for = c.parameters.get("apt") if name.lower() == "rtx" else None
                payloads[c.payloadType] = PayloadInfo(t.kind, name, c.clockRate, rtx_for)
        if not receiving:
            raise BadOffer("offer sends no media (a publisher's media must be sendonly or sendrecv)")
        rtcp_ssrc = adapter.sender_ssrcs(self.pc.getTransceivers()[0].sender)[0]
        simulcast, rids, rid_ext, rrid_ext = self._simulcast(offer)
        self.ingest = PublisherIngest(self.feed, payloads, rtcp_ssrc, rids, rid_ext, rrid_ext, red_pts)
        self.tap = adapter.PacketTap(self.pc, self.ingest.on_rtp, self.ingest.on_rtcp)
        self.ingest.tap = self.tap
        answer = simulcast_sdp.complete_answer(await self._answer(public_ip), simulcast)
        return sdp_hints.add_start_bitrate(answer)

    def _accept_red(self, offered: dict[str, SectionFeedback]) -> dict[int, int]:
        """Take redundant audio where the publisher offers it, preferred in the answer (Chromium sends RED only
        then), so that its uplink's losses can be repaired at ingest; RED payload type -> Opus payload type."""
        accepted: dict[int, int] = {}
        for t in self.pc.getTransceivers():
            s = offered.get(t.mid or "")
            if t.kind != "audio" or s is None or s.red_pt < 0 \
                    or adapter.remote_direction(t) not in ("sendonly", "sendrecv") \
                    or accepted.get(s.red_pt, s.opus_pt) != s.opus_pt:
                continue
            if adapter.accept_red(t, s.red_pt, s.opus_pt, s.red_fmtp, prefer=True):
                accepted[s.red_pt] = s.opus_pt
        return accepted

    def _simulcast(self, offer: str) -> tuple[list[simulcast_sdp.SimulcastOffer], dict[str, list[str]], int, int]:
        """The offer's simulcast video section (one is supported), if its RID extension was negotiated."""
        for o in simulcast_sdp.parse_offer(offer):
            t = next((t for t in self.pc.getTransceivers() if t.mid == o.mid and t.kind == "video"), None)
            if o.kind != "video" or t is None:
                continue
            ext = adapter.negotiated_extensions(t)
            rid_ext = ext.get(simulcast_sdp.RID_EXT, 0)
            if rid_ext:
                return [o], {"video": o.rids}, rid_ext, ext.get(simulcast_sdp.REPAIRED_RID_EXT, 0)
        return [], {}, 0, 0

    def _detach(self) -> None:
        if self.feed.publisher is self:
            self.feed.set_publisher(None)

    def dump(self) -> dict:
        d = super().dump()
        d.update(self.ingest.dump() if self.ingest is not None else {})
        return d


class ViewerSession(Session, RtcpReceiver):
    role = "viewer"

    def __init__(self, room: Room, on_closed: Callable[["Session"], None], max_height: Optional[int] = None,
                 slot: Slot = MAIN, owner: str = "") -> None:
        super().__init__(room, on_closed, slot, owner)
        self.consumers: list[tuple[str, Consumer]] = []
        self.tracks: dict[str, Track] = {}   # the track each kind's consumer is on (once attached)
        # send-side estimation, when the viewer gives transport-wide feedback (else its REMB is the estimate)
        self.estimator: Optional[SendSideEstimator] = None
        self.transport: Optional[TransportWideSequencer] = None
        self.out: Optional[ViewerOut] = None   # the connection's paced way out, once negotiated
        self._estimate_allocated = 0   # the estimate's peak since the consumers last allocated on a fall
        self._consumer_of: dict[int, Consumer] = {}   # by SSRC, for the RTCP handlers
        self.max_height = max_height  # the viewer's own cap on picture height
        self.attached = False  # consumers are on their tracks (after negotiation)
        self.repoints = 0

    def set_max_height(self, max_height: Optional[int]) -> None:
        self.max_height = max_height
        now = time.monotonic()
        for _, c in self.consumers:
            c.max_height = max_height
            c.allocate(now)

    async def negotiate(self, offer: str, public_ip: Optional[str]) -> str:
        await self._apply_offer(offer)
        transceivers = self.pc.getTransceivers()
        stream_id = str(uuid.uuid4())
        for t in transceivers:
            if adapter.remote_direction(t) not in ("recvonly", "sendrecv"):
                continue
            sender = self.pc.addTrack(adapter.SilentTrack(t.kind))
            adapter.silence_sender_reports(sender)
            adapter.set_stream_id(sender, stream_id)
        if not any(t.sender.track is not None for t in transceivers):
            raise BadOffer("offer receives no media (a viewer's media must be recvonly or sendrecv)")
        for t in transceivers:
            adapter.keep_opus_fec(t)
        offered = offered_feedback(offer)
        self._accept_transport_cc(offered, transceivers)
        with_red = {t: offered[t.mid].red_pt for t in transceivers
                    if t.sender.track is not None and t.kind == "audio" and t.mid in offered
                    and offered[t.mid].red_pt >= 0
                    and adapter.accept_red(t, offered[t.mid].red_pt, offered[t.mid].opus_pt, offered[t.mid].red_fmtp)}
        self.tap = adapter.PacketTap(self.pc, lambda data, arrival: None, self.on_rtcp)
        self.tap.on_ready = self._on_transport_ready
        # Paced only where our own estimate sets the pace: a REMB viewer's estimator reads the pacer's queueing
        # as the network's (abs-send-time is written before the queue) and would pull the pace down with it.
        self.out = out = ViewerOut(self.tap, self.transport, Pacer() if self.transport is not None else None)
        for t in transceivers:
            if t.sender.track is None:
                continue
            pts: dict[str, tuple[int, Optional[int]]] = {}
            codecs = adapter.negotiated_codecs(t)
            for c in codecs:
                name = c.mimeType.split("/")[1]
                if name.lower() == "rtx" or name in pts:
                    continue
                rtx = next((r.payloadType for r in codecs if r.mimeType.lower().endswith("/rtx")
                            and r.parameters.get("apt") == c.payloadType), None)
                pts[name] = (c.payloadType, rtx)
            ssrc, rtx_ssrc = adapter.sender_ssrcs(t.sender)
            track = self.room.tracks_for(self.slot)[t.kind]  # re-resolved when attached, below
            consumer = Consumer(t.kind, out, ssrc, rtx_ssrc, pts,
                                adapter.negotiated_extensions(t).get(ABS_SEND_TIME, 0) if t.kind == "video" else 0,
                                track, AudioRedundancy(with_red[t]) if t in with_red else None)
            consumer.max_height = self.max_height
            if self.estimator is not None:
                consumer.on_probe_proven = self._probe_proven
                # the first layer fits the estimator's start, not the allocator's optimism for REMB viewers
                consumer.on_transport_estimate(self.estimator.estimate(time.monotonic()), 0.0, None,
                                               time.monotonic(), False)
            self.consumers.append((t.kind, consumer))
        self._consumer_of = {c.ssrc: c for _, c in self.consumers}
        answer = await self._answer(public_ip)
        if not self.closed:
            # the stage may have moved while negotiating: attach to what the slot means now
            self._attach(self.room.tracks_for(self.slot))
        return answer

    def _accept_transport_cc(self, offered: dict[str, SectionFeedback], transceivers: list) -> None:
        """Accept transport-wide congestion control if the viewer offered it on every media section we send:
        one sequence and one estimator for the whole connection (audio and video share the link)."""
        sending = [t for t in transceivers if t.sender.track is not None]
        sections = [offered.get(t.mid or "") for t in sending]
        if not sections or not all(s is not None and s.transport_cc for s in sections):
            return   # REMB it is
        ids = {s.transport_cc_id for s in sections if s is not None}
        if len(ids) != 1:   # ids that differ within one BUNDLE
            return
        for t, s in zip(sending, sections):
            adapter.accept_transport_cc(t, s.transport_cc_id, TRANSPORT_CC_EXTENSION_URI, s.transport_cc_pts)  # type: ignore[union-attr]
        self.estimator = SendSideEstimator()
        self.transport = TransportWideSequencer(ids.pop(), self.estimator.on_packet_sent)

    def _attach(self, tracks: dict[str, Track]) -> None:
        now = time.monotonic()
        for kind, consumer in self.consumers:
            self.tracks[kind] = consumer.owner = tracks[kind]
            tracks[kind].add(consumer, now)
        self.attached = True

    def repoint(self, tracks: dict[str, Track]) -> None:
        """Follow the slot to other tracks (the stage changed): each consumer continues its numbering on the new
        publisher's next keyframe (requested now), without renegotiation."""
        if not self.attached or self.closed:
            return
        now = time.monotonic()
        for kind, consumer in self.consumers:
            new = tracks[kind]
            if self.tracks[kind] is new:
                continue
            self.tracks[kind].remove(consumer)
            self.tracks[kind] = consumer.owner = new
            new.add(consumer, now)  # re-allocates: targets the new layers and asks their publisher for a keyframe
        self.repoints += 1

    def _on_transport_ready(self) -> None:
        now = time.monotonic()
        for kind, consumer in self.consumers:
            if kind == "video" and self.attached:
                consumer.owner.request_keyframe(now, consumer.target)

    def on_rtcp(self, data: bytes) -> None:
        rtcp_dispatch.dispatch(data, self, time.monotonic())

    def rtcp_nack(self, media_ssrc: int, lost: list[int], now: float) -> None:
        c = self._consumer_of.get(media_ssrc)
        if c is not None:
            c.on_nack(lost, now)

    def rtcp_keyframe_request(self, media_ssrc: int, now: float) -> None:
        c = self._consumer_of.get(media_ssrc)
        if c is not None:
            c.on_keyframe_request(now)

    def rtcp_estimate(self, bitrate: int, now: float) -> None:
        if self.estimator is not None:
            return  # our own estimate from the viewer's transport feedback is the better one
        for _, c in self.consumers:
            c.on_estimate(bitrate, now)

    def rtcp_transport_feedback(self, feedback: TransportFeedback, now: float) -> None:
        if self.estimator is None or self.out is None:
            return
        self.estimator.on_feedback(now, feedback)
        if self.out.repairs is not None:
            for lost in self.out.repairs.on_feedback(feedback):
                lost.owner.on_repair_lost(lost.out_seq, now)
        self._abort_failed_probes(now)
        estimate = self.estimator.estimate(now)
        self.out.set_rate(estimate * PACING_FACTOR)
        # allocate at once only when the estimate fell (congestion must move down within the second); the
        # consumers' once-a-second tick takes rises
        fell = estimate < ESTIMATE_DROP * self._estimate_allocated
        if fell or estimate > self._estimate_allocated:
            self._estimate_allocated = estimate   # from the last fall: its peak
        audio_bps = sum(c.share_bps for kind, c in self.consumers if kind == "audio")
        capacity = self.estimator.capacity_bps()
        acked = self.estimator.acked_bps()
        for kind, c in self.consumers:
            c.on_transport_estimate(max(0, int(estimate - audio_bps)), self.estimator.loss_level,
                                    self.estimator.interval_loss, now, fell,
                                    None if capacity is None else max(0.0, capacity - audio_bps),
                                    self.estimator.heard_loss_level,
                                    None if acked is None else max(0.0, acked - audio_bps))

    def _abort_failed_probes(self, now: float) -> None:
        """The estimator judges each probe from the feedback on its own packets. One whose packets already show
        a queue building stops now, not when its second is over (on a thin link that second's queue would
        delay the audio past the viewer's jitter buffer); one that ended with less arriving than was sent, or
        with loss above the link's own, fails before the allocator would take its rate as proven; one that
        succeeded proves what arrived, not what it aimed at."""
        for _, c in self.consumers:
            window = c.probe_window(now)
            if window is None:
                continue
            start, held_from, end = window
            if now < end:
                if self.estimator.probe_queueing(start, now):
                    c.abort_probe(now)
                continue
            verdict = self.estimator.probe_verdict(now, held_from, end, queue_from=start)
            if verdict.outcome is ProbeOutcome.FAILED:
                c.abort_probe(now)
            elif verdict.succeeded and verdict.acked_bps is not None:
                audio_bps = sum(a.share_bps for kind, a in self.consumers if kind == "audio")
                c.probe_arrived(verdict.acked_bps - audio_bps)

    def _probe_proven(self, now: float, start: float, end: float) -> None:
        """The allocator found a probe clean: the estimate takes the rate that arrived during it."""
        if self.estimator is not None:
            self.estimator.accept_probe(now, self.estimator.probe_verdict(now, start, end))

    def rtcp_report(self, block: RtcpReceiverInfo, now: float) -> None:
        c = self._consumer_of.get(block.ssrc)
        if c is not None:
            c.on_report(block.fraction_lost, block.packets_lost, block.lsr, block.dlsr, now)
            if self.estimator is not None and c.rtt is not None:
                self.estimator.on_rtt(now, c.rtt)

    def _detach(self) -> None:
        for kind, consumer in self.consumers:
            if kind in self.tracks:
                self.tracks[kind].remove(consumer)
        if self.out is not None:
            self.out.close()
        self.room.viewers.discard(self)

    def dump(self) -> dict:
        d = super().dump()
        d["consumers"] = [c.dump() for _, c in self.consumers]
        d["repoints"] = self.repoints
        if self.estimator is not None:
            d["bwe"] = self.estimator.dump(time.monotonic())
        if self.out is not None and self.out.pacer is not None:
            p = self.out.pacer
            d["pacer"] = {"rate_bps": int(p.rate_bps), "queued_bytes": p.queued_bytes, "dropped": p.dropped,
                          "probes_refused": p.probes_refused}
        return d
