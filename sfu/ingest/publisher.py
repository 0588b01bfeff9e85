"""The ingest side of a publisher connection: demux by SSRC/payload type, repair loss, feed its feed's tracks
(and leave out a closed microphone's audio)."""
from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Optional

from sfu.rtp import rtcp_builder, rtcp_dispatch
from sfu.rtp.rtcp_dispatch import RtcpReceiver
from sfu.ingest.contracts import IngestFeed
from sfu.ingest.inbound import InboundStream
from sfu.ingest.ingest_estimator import IngestEstimator
from sfu.ingest.red_unwrap import RedUnwrap
from sfu.rtp.rtp_header import RtpParseError, RtpView, seq_diff

if TYPE_CHECKING:
    from sfu.webrtc.aiortc_adapter import PacketTap

log = logging.getLogger(__name__)

_OSN_LEN = 2
DOWNSTREAM_LOSS_CAP = 0.019
MAX_DROPOUT = 3000      # RFC 3550 A.1: a jump further ahead than this is not loss
MAX_MISORDER = 100      # ... and one further back is not reordering
SSRC_TAKEOVER_SILENCE = 1.0  # a new SSRC replaces a kind's stream only after the old one fell silent


class PayloadInfo:
    __slots__ = ("kind", "codec", "clock_rate", "rtx_for")

    def __init__(self, kind: str, codec: str, clock_rate: int, rtx_for: Optional[int]) -> None:
        self.kind = kind
        self.codec = codec
        self.clock_rate = clock_rate
        self.rtx_for = rtx_for  # the media payload type an RTX payload type repairs


class PublisherIngest(RtcpReceiver):
    def __init__(self, feed: IngestFeed, payloads: dict[int, PayloadInfo], rtcp_ssrc: int,
                 rids: Optional[dict[str, list[str]]] = None, rid_ext: int = 0, repaired_rid_ext: int = 0,
                 red_pts: Optional[dict[int, int]] = None) -> None:
        self.feed = feed
        self.payloads = payloads
        self.rtcp_ssrc = rtcp_ssrc
        self.rids = rids or {}             # kind -> simulcast encoding ids the offer announced
        self.rid_ext = rid_ext             # negotiated header extension ids of rtp-stream-id and
        self.repaired_rid_ext = repaired_rid_ext  # repaired-rtp-stream-id (0: not negotiated)
        self.tap: Optional["PacketTap"] = None
        self.streams: dict[int, InboundStream] = {}      # media SSRC -> stream
        self.rtx: dict[int, InboundStream] = {}          # RTX SSRC -> repaired stream
        self.by_key: dict[tuple[str, Optional[str]], InboundStream] = {}  # (kind, rid) -> stream
        self.estimator = IngestEstimator()
        # RED payload type -> its Opus payload type, as negotiated: each pair's unwrapper under both types
        self.red_unwraps = [RedUnwrap(red_pt, opus_pt) for red_pt, opus_pt in (red_pts or {}).items()]
        self.red = {pt: u for u in self.red_unwraps for pt in (u.red_pt, u.opus_pt)}
        self.malformed = 0
        self.unknown = 0
        self.muted_dropped = 0   # audio packets left out while the microphone was closed
        self._audio_gap = False
        self.probe_bytes = 0
        self.remb_bps = 0
        self.downstream_audio_loss = 0.0

    # --- packets in ----------------------------------------------------------------------------------------

    def on_rtp(self, data: bytes, now: float) -> None:
        """One decrypted packet from the publisher; `now` is its arrival time (monotonic seconds)."""
        try:
            view = RtpView(data)
        except RtpParseError:
            self.malformed += 1
            return
        self.estimator.on_bytes(len(data), now)
        red = self.red.get(view.payload_type) if self.red else None
        if red is None:
            self._on_packet(view, now, False)
            return
        for unwrapped in red.push(view):   # plain Opus from here on: no one after this sees RED
            self._on_packet(unwrapped.view, now, unwrapped.recovered)

    def _on_packet(self, view: RtpView, now: float, recovered: bool) -> None:
        stream = self.streams.get(view.ssrc)
        if stream is None:
            repaired = self.rtx.get(view.ssrc)
            if repaired is not None:
                self._on_rtx(view, repaired, now)
                return
            stream = self._learn(view, now)
            if stream is None:
                return
        self._on_media(view, stream, now, recovered)

    def _on_media(self, view: RtpView, stream: InboundStream, now: float, recovered: bool = False) -> None:
        """`recovered`: rebuilt from redundancy, not received; the reception statistics (the loss reported to
        the publisher) leave it out, as the network lost it."""
        if view.payload_type != stream.payload_type and view.payload_type in self.payloads:
            info = self.payloads[view.payload_type]
            if info.rtx_for is not None or info.kind != stream.kind:
                self.unknown += 1
                return
        if stream.stats.base_seq is not None:
            d = seq_diff(view.seq, stream.stats.max_seq)
            if d > MAX_DROPOUT or d < -MAX_MISORDER:
                # RFC 3550 A.1: accept a jump only when the next packet confirms it (a source restart);
                # forwarding one stray wild sequence number would break viewers' SRTP replay windows.
                if view.seq != stream.bad_seq:
                    stream.bad_seq = (view.seq + 1) & 0xFFFF
                    self.malformed += 1
                    return
                stream = self._restart(stream, view, now)
        stream.last_packet_at = now
        if not recovered:
            stream.stats.on_packet(view.seq, view.timestamp, now, view.payload_size)
        if stream.nack is not None:
            lost = stream.nack.on_packet(view.seq, now)
            if lost:
                self._feedback(rtcp_builder.nack(self.rtcp_ssrc, stream.ssrc, lost))
        if view.payload_size == 0:
            return  # padding-only probe: counted above, nothing to forward
        if stream.kind == "audio":
            if self.feed.muted:  # a closed microphone: nothing of it reaches anyone (nor the recorder)
                self.muted_dropped += 1
                self._audio_gap = True
                return
            if self._audio_gap:  # opened again: a fresh stream, so viewers continue numbering without a hole
                self._audio_gap = False
                old, stream = stream, self._restart(stream, view, now, "continues after the microphone opened")
                stream.sr, stream.lsr, stream.lsr_time = old.sr, old.lsr, old.lsr_time  # lip sync at once
                stream.last_packet_at = now
                if not recovered:
                    stream.stats.on_packet(view.seq, view.timestamp, now, view.payload_size)
        pkt = stream.classify(view, now)
        track = self.feed.tracks.get(stream.kind)
        if track is not None:
            track.forward(pkt, stream, now)

    def _on_rtx(self, view: RtpView, stream: InboundStream, now: float) -> None:
        if view.payload_size < _OSN_LEN:
            self.probe_bytes += len(view.data)  # padding probe on the RTX stream
            return
        d = view.data
        osn = (d[view.payload_start] << 8) | d[view.payload_start + 1]
        if stream.nack is None or not stream.nack.was_requested(osn):
            stream.rtx_dropped += 1   # a bandwidth probe or a repair someone else asked for
            self.probe_bytes += len(d)
            return
        stream.rtx_forwarded += 1
        # rebuild the original packet: same header as the RTX packet but the media SSRC, PT and sequence
        header = bytearray(d[:view.payload_start])
        header[0] &= 0xDF  # padding is stripped below
        header[1] = (header[1] & 0x80) | stream.payload_type
        header[2] = osn >> 8
        header[3] = osn & 0xFF
        header[8:12] = stream.ssrc.to_bytes(4, "big")
        original = RtpView(bytes(header) + d[view.payload_start + _OSN_LEN:view.payload_end])
        self._on_media(original, stream, now)

    def _learn(self, view: RtpView, now: float) -> Optional[InboundStream]:
        """First packet of an unknown SSRC: classify it by payload type and, for simulcast, by its RID."""
        info = self.payloads.get(view.payload_type)
        if info is None:
            self.unknown += 1
            return None
        if info.rtx_for is not None:
            media_info = self.payloads.get(info.rtx_for)
            target = None
            if media_info is not None:
                rid = self._rid(view, media_info.kind, self.repaired_rid_ext)
                target = self.by_key.get((media_info.kind, rid)) if rid != "" else None
            if target is None:
                self.unknown += 1
                return None
            target.rtx_ssrc = view.ssrc
            self.rtx[view.ssrc] = target
            self._on_rtx(view, target, now)
            return None
        rid = self._rid(view, info.kind, self.rid_ext)
        if rid == "":
            self.unknown += 1   # a simulcast packet without a known RID cannot be placed in a layer
            return None
        old = self.by_key.get((info.kind, rid))
        if old is not None:
            if now - old.last_packet_at < SSRC_TAKEOVER_SILENCE:
                self.unknown += 1   # a stray SSRC must not hijack a live stream
                return None
            self.streams.pop(old.ssrc, None)   # the publisher restarted this source with a new SSRC
            if old.rtx_ssrc is not None:
                self.rtx.pop(old.rtx_ssrc, None)
        stream = InboundStream(info.kind, info.codec, info.clock_rate, view.ssrc, view.payload_type, rid)
        self._install(stream, now)
        log.info("%s: %s stream %s ssrc=%d rid=%s", self.feed.label, info.kind, info.codec, view.ssrc, rid)
        return stream

    def _rid(self, view: RtpView, kind: str, ext_id: int) -> Optional[str]:
        """None when `kind` is not simulcast; "" when it is but the packet names no announced RID."""
        announced = self.rids.get(kind)
        if not announced:
            return None
        raw = view.extension(ext_id)
        rid = raw.decode("ascii", "replace").rstrip("\x00") if raw else ""
        return rid if rid in announced else ""

    def adopt(self, stream: InboundStream, now: float) -> None:
        """Take a stream described out of band (an SFU-to-SFU link names its SSRCs): no learning by RID."""
        self.forget(stream.ssrc)
        self._install(stream, now)

    def forget(self, ssrc: int) -> None:
        """A stream that will not come back (the link said so): its SSRC is unknown again."""
        stream = self.streams.pop(ssrc, None)
        if stream is not None and self.by_key.get((stream.kind, stream.rid)) is stream:
            del self.by_key[(stream.kind, stream.rid)]

    def _install(self, stream: InboundStream, now: float) -> None:
        self.streams[stream.ssrc] = stream
        self.by_key[(stream.kind, stream.rid)] = stream
        if stream.rtx_ssrc is not None:
            self.rtx[stream.rtx_ssrc] = stream
        track = self.feed.tracks.get(stream.kind)
        if track is not None:
            track.attach(stream, now)

    def _restart(self, old: InboundStream, view: RtpView, now: float,
                 why: str = "restarted its sequence") -> InboundStream:
        """Same SSRC, discontinuous sequence: a fresh stream, so viewers re-sync on its next keyframe."""
        stream = InboundStream(old.kind, old.codec, old.clock_rate, old.ssrc, old.payload_type, old.rid)
        stream.rtx_ssrc = old.rtx_ssrc
        self._install(stream, now)
        log.info("%s: %s stream ssrc=%d %s", self.feed.label, old.kind, old.ssrc, why)
        return stream

    def on_rtcp(self, data: bytes) -> None:
        if not rtcp_dispatch.dispatch(data, self, time.monotonic()):
            self.malformed += 1

    def rtcp_sender_report(self, ssrc: int, ntp_timestamp: int, rtp_timestamp: int, now: float) -> None:
        stream = self.streams.get(ssrc)
        if stream is not None:
            stream.on_sender_report(ntp_timestamp, rtp_timestamp, now)

    # --- feedback out --------------------------------------------------------------------------------------

    def _feedback(self, data: bytes) -> None:
        if self.tap is not None:
            self.tap.send_rtcp(data)

    def set_downstream_loss(self, audio_loss: float) -> None:
        """The steady loss of the lossiest classroom that hears this publisher. Told to the publisher as its
        audio's loss, capped under the 2 % at which a sender's loss-based estimate stops growing (audio is a
        small share of the packets such an estimate weighs)."""
        self.downstream_audio_loss = min(audio_loss, DOWNSTREAM_LOSS_CAP)

    def request_keyframe(self, stream: InboundStream, now: float) -> None:
        if stream.keyframes.request(now):
            self._feedback(rtcp_builder.pli(self.rtcp_ssrc, stream.ssrc))

    def fast_tick(self, now: float) -> None:
        """Every ~50 ms: repeat NACKs still unanswered, send deferred keyframe requests."""
        for stream in self.streams.values():
            if stream.nack is not None:
                again = stream.nack.poll(now)
                if again:
                    self._feedback(rtcp_builder.nack(self.rtcp_ssrc, stream.ssrc, again))
            if stream.keyframes.poll(now) and self.feed.tracks[stream.kind].consumers:
                self._feedback(rtcp_builder.pli(self.rtcp_ssrc, stream.ssrc))

    def report_tick(self, now: float, interval: float = 1.0) -> None:
        """Every second: layer bitrates, receiver reports and REMB to the publisher."""
        blocks = []
        worst = 0.0
        for stream in self.streams.values():
            stream.update_rates(interval)
            fl = stream.stats.interval_fraction_lost()
            worst = max(worst, fl)
            if stream.kind == "audio":
                # what the publisher's Opus encoder plans its in-band FEC for: the classrooms' loss too
                fl = max(fl, self.downstream_audio_loss)
            dlsr = int((now - stream.lsr_time) * 65536) if stream.lsr else 0
            blocks.append(rtcp_builder.report_block(stream.ssrc, fl, stream.stats.lost, stream.stats.extended_max,
                                                    stream.stats.jitter, stream.lsr, dlsr))
        if not blocks:
            return
        packet = rtcp_builder.receiver_report(self.rtcp_ssrc, blocks)
        video = [s.ssrc for s in self.streams.values() if s.kind == "video"]
        if video:
            self.remb_bps = self.estimator.update(now, worst)
            packet += rtcp_builder.remb(self.rtcp_ssrc, self.remb_bps, video)
        self._feedback(packet)

    def dump(self) -> dict:
        return {
            "streams": [{
                "kind": s.kind, "codec": s.codec, "ssrc": s.ssrc, "rtx_ssrc": s.rtx_ssrc, "rid": s.rid,
                "width": s.width, "height": s.height, "bitrate_bps": [int(r) for r in s.rates],
                "frame_rates": [round(f, 1) for f in s.frame_rates],
                "packets": s.stats.received, "lost": s.stats.lost, "keyframes": s.keyframes_seen,
                "plis_sent": s.keyframes.sent_count, "rtx_forwarded": s.rtx_forwarded, "rtx_dropped": s.rtx_dropped,
                "nack_recovered": s.nack.recovered if s.nack else 0,
            } for s in self.streams.values()],
            "remb_bps": self.remb_bps, "received_bps": int(self.estimator.received_bps),
            "malformed": self.malformed, "unknown": self.unknown, "muted": self.feed.muted,
            "muted_dropped": self.muted_dropped,
            "red": [u.dump() for u in self.red_unwraps],
        }
