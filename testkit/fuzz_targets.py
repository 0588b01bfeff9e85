"""Fuzz targets: every parser that reads what a peer sends, as plain `(data: bytes) -> None` functions.

A target feeds its bytes to the code the SFU, the room socket or the recorder runs on peer input and swallows
exactly the exceptions that code's callers treat as a clean rejection; anything else escaping (or a target's
own check of what the parser handed on failing, an AssertionError) is a finding. Targets need no atheris, so
a reproducer replays in plain Python: `python -m testkit.fuzz_targets replay NAME FILE`. testkit/fuzz_runner.py
runs them under atheris, instrumenting the modules in MODULES.

Inputs that carry several packets are records: a 2-byte big-endian length, then that many bytes; a media
packet's record starts with the milliseconds since the previous packet.

The seed corpus (tests/fuzz_corpus/<target>/) is made from real packets and messages by `make_seeds()`:
`python -m testkit.fuzz_targets seeds`.
"""
from __future__ import annotations

import atexit
import os
import random
import shutil
import sys
import tempfile
from pathlib import Path
from types import SimpleNamespace
from typing import Callable, Iterable, Iterator, Optional

from aiortc.sdp import SessionDescription

from recorder.webm import ebml
from recorder.webm import webm_writer
from sfu.rtp import rtcp_builder, rtcp_dispatch
from sfu.rtp.rtcp_dispatch import RtcpReceiver, RtcpReceiverInfo
from sfu.webrtc import sdp_hints
from sfu.webrtc import simulcast_sdp
from sfu.rtp.codec_info import (h264_is_keyframe, is_keyframe_start, parse_vp8, vp8_keyframe_size,
                            write_vp8_ids)
from sfu.forward.consumer import Consumer
from sfu.forward.viewer_out import ViewerOut
from sfu.rtp.depacketizer import RESET_JUMP, Depacketizer, _vp8_frame, _vp8_start
from sfu.errors import BadOffer
from sfu.rtp.h264_depacketizer import START_CODE, h264_access_unit, h264_starts_picture
from sfu.ingest.inbound import InboundStream
from sfu.ingest.publisher import PayloadInfo, PublisherIngest
from sfu.cascade.relay_map import RelayedStream, RelayMessageError, decode, parse_slot, plan, streams_of, wants_of
from sfu.room.room import FAST_TICK, REPORT_EVERY, Room
from sfu.rtp.rtp_header import RtpParseError, RtpView
from sfu.webrtc.sessions import _check_offer_text
from signaling.lesson import room_protocol
from signaling.media.media_rights import offered_kinds
from signaling.auth.tokens import ROLES
from testkit.recording_tap import RecordingTap

REPO = Path(__file__).resolve().parent.parent
CORPUS = REPO / "tests" / "fuzz_corpus"

Target = Callable[[bytes], None]


def _require(ok: bool, what: str) -> None:
    """A target's own check of what a parser handed on (not `assert`: it must hold under -O too)."""
    if not ok:
        raise AssertionError(what)


def records(data: bytes) -> Iterator[bytes]:
    """The records of an input: 2-byte big-endian length + bytes (the last one may be cut short)."""
    pos = 0
    while pos + 2 <= len(data):
        n = int.from_bytes(data[pos:pos + 2], "big")
        yield data[pos + 2:pos + 2 + n]
        pos += 2 + n


def pack_records(items: Iterable[bytes]) -> bytes:
    return b"".join(len(x).to_bytes(2, "big") + x for x in items)


def _timed(data: bytes) -> Iterator[tuple[float, bytes]]:
    """(arrival time, packet) of timed records: each starts with the milliseconds since the previous one."""
    now = 0.0
    for rec in records(data):
        if rec:
            now += rec[0] / 1000
            yield now, rec[1:]


# ---- RTP ---------------------------------------------------------------------------------------------------

def rtp_header(data: bytes) -> None:
    """RtpView (fixed header, CSRCs, extension block, padding) and every one-/two-byte extension id: what the
    ingest reads of every packet (SSRC, PT, sequence, RID extension) before anything else looks at it."""
    try:
        v = RtpView(data)
    except RtpParseError:
        return
    _require(12 <= v.payload_start <= v.payload_end <= len(data), "payload bounds outside the packet")
    _require(v.ext_start <= v.ext_end <= v.payload_start, "extension block outside the header")
    _require(len(v.payload) == v.payload_size, "payload size")
    for ext_id in range(16):
        value = v.extension(ext_id)
        _require(value is None or len(value) <= v.ext_end - v.ext_start, "extension value beyond its block")


VP8_PT, VP8_RTX_PT, H264_PT, H264_RTX_PT, OPUS_PT, RED_PT = 96, 97, 102, 103, 111, 63
RID_EXT_ID, REPAIRED_RID_EXT_ID, ABS_SEND_TIME_ID = 10, 11, 3
_PAYLOADS = {VP8_PT: PayloadInfo("video", "VP8", 90000, None), VP8_RTX_PT: PayloadInfo("video", "rtx", 90000, VP8_PT),
             H264_PT: PayloadInfo("video", "H264", 90000, None),
             H264_RTX_PT: PayloadInfo("video", "rtx", 90000, H264_PT),
             OPUS_PT: PayloadInfo("audio", "opus", 48000, None)}
_RIDS = {"video": ["l", "m", "h"]}


def rtp_ingest(data: bytes) -> None:
    """A publisher's packets through PublisherIngest (RED unwrapping and recovery, stream learning by
    SSRC/PT/RID, RTX unwrapping, NACK generation, codec classification) and forwarded to a viewer's video and
    audio Consumers (layer choice, VP8 PictureID/TL0PICIDX rewriting at offsets the peer's descriptor gave),
    with the room timer's ticks.
    First byte: bit 0 = the offer announced simulcast RIDs. Then timed records, one RTP packet each."""
    if not data:
        return
    random.seed(0)  # consumers draw their first output sequence numbers and timestamps: replayable
    room = Room("fuzz")
    feed = room.main
    ingest = PublisherIngest(feed, _PAYLOADS, rtcp_ssrc=1, rids=_RIDS if data[0] & 1 else None,
                             rid_ext=RID_EXT_ID, repaired_rid_ext=REPAIRED_RID_EXT_ID, red_pts={RED_PT: OPUS_PT})
    tap = RecordingTap()
    ingest.tap = tap  # type: ignore[assignment]
    out = ViewerOut(tap)
    consumers = [Consumer("video", out, 0x5EED0001, 0x5EED0002,
                          {"VP8": (VP8_PT, VP8_RTX_PT), "H264": (H264_PT, H264_RTX_PT)}, ABS_SEND_TIME_ID,
                          feed.tracks["video"]),
                 Consumer("audio", out, 0x5EED0003, 0x5EED0004, {"opus": (OPUS_PT, None)}, 0,
                          feed.tracks["audio"])]
    for c in consumers:
        feed.tracks[c.kind].add(c, 0.0)
    ticks = 0
    last_report = 0.0
    for now, packet in _timed(data[1:]):
        while (ticks + 1) * FAST_TICK <= now:
            ticks += 1
            t = ticks * FAST_TICK
            ingest.fast_tick(t)
            consumers[0].fast_tick(t, FAST_TICK)
            if ticks % REPORT_EVERY == 0:
                ingest.report_tick(t, t - last_report)
                feed.tracks["video"].order_layers()
                feed.tracks["video"].tick(t)
                for c in consumers:
                    c.tick(t, 1.7e9 + t, t - last_report)
                last_report = t
        ingest.on_rtp(packet, now)
    for sent in tap.sent:  # what a viewer receives must still parse as RTP
        RtpView(sent)


# ---- RTCP --------------------------------------------------------------------------------------------------

VIEWER_VIDEO_SSRC, VIEWER_AUDIO_SSRC, PUBLISHER_SSRC, RELAYED_SSRC = 0x0A0A0A01, 0x0A0A0A02, 0x0B0B0B01, 0x0C0C0C01


def _check_seqs(lost: list[int]) -> None:
    _require(all(isinstance(s, int) and 0 <= s <= 0xFFFF for s in lost), f"NACKed sequence numbers {lost[:20]}")


class _CheckingReceiver(RtcpReceiver):
    """Receives every part the SFU reads and checks what the parse hands on: the values the viewer, publisher
    and relay handlers act on (sequence numbers to resend, report fields, sender-report clocks)."""

    def __init__(self) -> None:
        self.stream = InboundStream("video", "VP8", 90000, PUBLISHER_SSRC, VP8_PT, None)

    def rtcp_nack(self, media_ssrc: int, lost: list[int], now: float) -> None:
        _require(0 <= media_ssrc < 1 << 32, "NACK media SSRC")
        _check_seqs(lost)

    def rtcp_keyframe_request(self, media_ssrc: int, now: float) -> None:
        _require(0 <= media_ssrc < 1 << 32, "PLI/FIR media SSRC")

    def rtcp_estimate(self, bitrate: int, now: float) -> None:
        _require(isinstance(bitrate, int) and bitrate >= 0, f"REMB bitrate {bitrate!r}")

    def rtcp_report(self, block: RtcpReceiverInfo, now: float) -> None:
        _require(0 <= block.fraction_lost <= 255 and 0 <= block.lsr < 1 << 32 and 0 <= block.dlsr < 1 << 32,
                 "report block fields")

    def rtcp_sender_report(self, ssrc: int, ntp_timestamp: int, rtp_timestamp: int, now: float) -> None:
        if ssrc == PUBLISHER_SSRC:   # what the publisher side does with it: lip sync and the LSR it echoes
            self.stream.on_sender_report(ntp_timestamp, rtp_timestamp, now)
            _require(0 <= self.stream.lsr < 1 << 32, "LSR from a sender report")


def rtcp(data: bytes) -> None:
    """A compound RTCP packet through the SFU's one RTCP receive path (sfu/rtp/rtcp_dispatch.py, which the
    viewer, publisher and both relay ends use): every part it hands on is checked. A packet that does not parse
    is refused with False; nothing may raise."""
    rtcp_dispatch.dispatch(data, _CheckingReceiver(), 1.0)


# ---- codec payloads ----------------------------------------------------------------------------------------

def vp8(data: bytes) -> None:
    """One VP8 RTP payload: the RFC 7741 descriptor (what the forwarder reads and rewrites in place), the
    keyframe header's size, and the depacketizer's start test and frame join. Rewriting PictureID/TL0PICIDX
    must keep the descriptor's layout (the forwarder patches bytes at the parsed offsets)."""
    n = len(data)
    d = parse_vp8(data, 0, n)
    _require(_vp8_start(data) == (d is not None and d.start_of_partition and d.partition_id == 0), "start test")
    _require(is_keyframe_start("VP8", data, 0, n) == (d is not None and d.keyframe), "keyframe test")
    frame = _vp8_frame([data])
    _require((frame is None) == (d is None or n - d.size < 3), "frame join")
    if d is None:
        return
    _require(1 <= d.size <= n, "descriptor size")
    vp8_keyframe_size(data, d.size, n)
    buf = bytearray(data)
    write_vp8_ids(buf, d, 0x1234, 0x56)
    _require(len(buf) == n, "rewrite changed the payload size")
    again = parse_vp8(bytes(buf), 0, n)
    _require(again is not None and again.size == d.size and again.keyframe == d.keyframe, "rewrite broke it")
    if d.picture_id is not None:
        want = 0x1234 if d.picture_id_bits == 15 else 0x34
        _require(again.picture_id == want, "PictureID rewrite")  # type: ignore[union-attr]
    if d.tl0picidx is not None:
        _require(again.tl0picidx == 0x56, "TL0PICIDX rewrite")  # type: ignore[union-attr]


def h264(data: bytes) -> None:
    """The RTP payloads of one H.264 frame, as records (single NAL, STAP-A, FU-A...): the keyframe and
    picture-start tests on each, and their Annex-B access unit (what the recorder and the ladder decode)."""
    payloads = list(records(data))
    for p in payloads:
        h264_is_keyframe(p, 0, len(p))
        h264_starts_picture(p)
        is_keyframe_start("H264", p, 0, len(p))
    au = h264_access_unit(payloads)
    if au is not None:
        _require(au[0].startswith(START_CODE), "access unit without a start code")


def depacketizer(data: bytes) -> None:
    """RTP packets, reordered, lost or duplicated as the peer likes, through the Depacketizer (the recorder's
    and the ladder's frame assembly). First byte: bit 0 = H.264 (else VP8). Then timed records."""
    if not data:
        return
    dp = Depacketizer("H264" if data[0] & 1 else "VP8", max_span=16)
    for now, packet in _timed(data[1:]):
        for frame in dp.push(packet, now):
            _require(bool(frame.data), "empty frame")
    # a run of one timestamp without a marker is held whole: memory is bounded by the reset jump only
    _require(dp.stats()["buffered"] <= RESET_JUMP + 1, "depacketizer buffer beyond its bound")


# ---- SDP ---------------------------------------------------------------------------------------------------

def _answer_for(desc: SessionDescription) -> str:
    """An answer shaped as aiortc's for a parsed offer: its media sections with their mids and codecs."""
    lines = ["v=0", "o=- 1 1 IN IP4 0.0.0.0", "s=-", "t=0 0"]
    for m in desc.media:
        lines.append(f"m={m.kind} 9 UDP/TLS/RTP/SAVPF " + " ".join(str(c.payloadType) for c in m.rtp.codecs))
        if m.rtp.muxId:
            lines.append(f"a=mid:{m.rtp.muxId}")
        for c in m.rtp.codecs:
            lines.append(f"a=rtpmap:{c.payloadType} {c.mimeType.split('/')[-1]}/{c.clockRate}")
    return "\r\n".join(lines) + "\r\n"


def sdp_offer(data: bytes) -> None:
    """A WHIP/WHEP offer body as the server reads it: UTF-8 (else 400), the kinds it sends (the WHIP grant
    check, before the SFU), the SFU's first checks (BadOffer), aiortc's parse (the SFU turns any Exception
    from setRemoteDescription into BadOffer, so only a hang or a BaseException is a finding there), the
    simulcast reading and the answer's completion with the offer's RIDs and bitrate hints. The SFU's own
    readers get every text, not only what aiortc accepts: they must not fail on any."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return
    offered_kinds(text)
    offers = simulcast_sdp.parse_offer(text)
    for o in offers:
        _require(1 < len(o.rids) <= simulcast_sdp.MAX_RIDS and o.paused <= set(o.rids), "simulcast offer")
    try:
        _check_offer_text(text)
    except BadOffer:
        return
    try:
        desc = SessionDescription.parse(text)
    except Exception:  # sfu/webrtc/sessions.py: "aiortc raises many types on bad SDP" -> BadOffer
        return
    answer = simulcast_sdp.complete_answer(_answer_for(desc), offers)
    sdp_hints.add_start_bitrate(answer)


# ---- signaling and the SFU-to-SFU link ---------------------------------------------------------------------

def room_protocol_message(data: bytes) -> None:
    """A room WebSocket text frame (aiohttp hands on strict UTF-8 only): parse and the role check for every
    role. ProtocolError is the clean rejection (answered with an error message)."""
    try:
        raw = data.decode("utf-8")
    except UnicodeDecodeError:
        return
    try:
        msg = room_protocol.parse(raw)
    except room_protocol.ProtocolError:
        return
    _require(msg.type in room_protocol.SCHEMAS, "unknown type accepted")
    for role in ROLES:
        try:
            room_protocol.check_rights(msg, SimpleNamespace(role=role))  # type: ignore[arg-type]
        except room_protocol.ProtocolError:
            pass


_INSTALLED = {s.ssrc: s for s in (
    RelayedStream(0x100, "camera", "video", "VP8", 90000, 96, "h", 1280, 720),
    RelayedStream(0x101, "camera", "video", "VP8", 90000, 96, "l", 320, 180),
    RelayedStream(0x102, "camera", "audio", "opus", 48000, 111),
    RelayedStream(0x103, "classroom:pupil-1", "video", "H264", 90000, 102, "main"))}


def relay_map(data: bytes) -> None:
    """A control message on the SFU-to-SFU data channel: decode, then `streams` (validated and planned
    against installed streams, as the edge does) or `want` (slots parsed as the origin does).
    RelayMessageError is the clean rejection (the message is ignored and counted)."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return
    try:
        msg = decode(text)
        if msg["type"] == "streams":
            snapshot = streams_of(msg)
            for s in snapshot:
                s.slot_value()
            plan(_INSTALLED, snapshot)
        else:
            for slot in wants_of(msg):
                parse_slot(slot)
    except RelayMessageError:
        return


# ---- recordings --------------------------------------------------------------------------------------------

_MASTERS = {ebml.EBML, ebml.SEGMENT, ebml.SEEK_HEAD, ebml.SEEK, ebml.INFO, ebml.TRACKS, ebml.TRACK_ENTRY,
            ebml.VIDEO, ebml.AUDIO, ebml.CLUSTER, ebml.CUES, ebml.CUE_POINT, ebml.CUE_TRACK_POSITIONS}
_FLOATS = {ebml.DURATION, ebml.SAMPLING_FREQUENCY}


def _walk(buf: bytes, depth: int) -> None:
    for eid, payload in ebml.children(buf):
        if eid in _MASTERS and depth < 8:
            _walk(payload, depth + 1)
        elif eid in _FLOATS:
            ebml.read_float(payload)
        else:
            ebml.read_uint(payload[:8])


def ebml_reader(data: bytes) -> None:
    """recorder/webm/ebml.py's bounded reader on any bytes: element headers, nested children, numbers.
    EbmlError is the clean rejection; the reader must never run past the buffer."""
    try:
        el = ebml.parse_header(data, 0)
        _require(el.data_start <= len(data), "element header read past the buffer")
        _walk(data, 0)
    except ebml.EbmlError:
        return


SCRATCH_ENV = "LIVECLASS_FUZZ_SCRATCH"   # a folder for webm_repair's file (the runner's work folder)
_scratch: Optional[str] = None


def _scratch_file() -> str:
    global _scratch
    if _scratch is None:
        folder = os.environ.get(SCRATCH_ENV)
        if not folder:
            folder = tempfile.mkdtemp(prefix="liveclass-fuzz-")
            atexit.register(shutil.rmtree, folder, True)
        _scratch = os.path.join(folder, "media.webm")
    return _scratch


def webm_repair(data: bytes) -> None:
    """A recording file a crash left behind (or any file in its place): scan and repair, as recovery at start
    does (recorder/service.py). EbmlError is the clean rejection (the lesson is marked failed). A repaired
    file must scan again as finalized, and repair is idempotent (its docstring)."""
    path = _scratch_file()
    with open(path, "wb") as f:
        f.write(data)
    try:
        webm_writer.repair(path)
    except ebml.EbmlError:
        return
    with open(path, "rb") as f:
        once = f.read()
    webm_writer.repair(path)
    with open(path, "rb") as f:
        _require(f.read() == once, "repair is not idempotent")


# ---- registry ----------------------------------------------------------------------------------------------

TARGETS: dict[str, Target] = {
    "rtp_header": rtp_header,
    "rtp_ingest": rtp_ingest,
    "rtcp": rtcp,
    "vp8": vp8,
    "h264": h264,
    "depacketizer": depacketizer,
    "sdp_offer": sdp_offer,
    "room_protocol": room_protocol_message,
    "relay_map": relay_map,
    "ebml": ebml_reader,
    "webm_repair": webm_repair,
}

# per target: the modules whose code atheris instruments for coverage (what the input reaches)
MODULES: dict[str, tuple[str, ...]] = {
    "rtp_header": ("sfu.rtp.rtp_header",),
    "rtp_ingest": ("sfu.rtp.rtp_header", "sfu.ingest.publisher", "sfu.ingest.inbound", "sfu.rtp.codec_info", "sfu.ingest.nack_generator",
                   "sfu.ingest.red_unwrap", "sfu.rtp.red", "sfu.ingest.reception_stats", "sfu.room.track", "sfu.forward.consumer", "sfu.forward.munger", "sfu.allocation.allocator"),
    "rtcp": ("sfu.rtp.rtcp_builder", "sfu.rtp.rtcp_dispatch", "aiortc.rtp", "sfu.ingest.inbound"),
    "vp8": ("sfu.rtp.codec_info", "sfu.rtp.depacketizer"),
    "h264": ("sfu.rtp.codec_info", "sfu.rtp.h264_depacketizer"),
    "depacketizer": ("sfu.rtp.depacketizer", "sfu.rtp.h264_depacketizer", "sfu.rtp.codec_info", "sfu.rtp.rtp_header"),
    "sdp_offer": ("sfu.webrtc.simulcast_sdp", "sfu.webrtc.sdp_hints", "sfu.webrtc.sessions", "aiortc.sdp", "signaling.media.media_rights"),
    "room_protocol": ("signaling.lesson.room_protocol",),
    "relay_map": ("sfu.cascade.relay_map", "sfu.room.feed"),
    "ebml": ("recorder.webm.ebml",),
    "webm_repair": ("recorder.webm.webm_writer", "recorder.webm.ebml"),
}

# per target: the longest input libFuzzer makes (a datagram, an offer under the 64 KiB cap, a message)
MAX_LEN: dict[str, int] = {
    "rtp_header": 1500, "rtp_ingest": 8192, "rtcp": 1500, "vp8": 1500, "h264": 4096, "depacketizer": 8192,
    "sdp_offer": 16384, "room_protocol": 4096, "relay_map": 8192, "ebml": 4096, "webm_repair": 8192,
}
assert TARGETS.keys() == MODULES.keys() == MAX_LEN.keys()


def replay(name: str, paths: Iterable[Path]) -> int:
    """Run inputs through a target in plain Python; returns how many ran (raises on the first finding)."""
    n = 0
    for p in paths:
        TARGETS[name](Path(p).read_bytes())
        n += 1
    return n


def corpus_files(name: str) -> list[Path]:
    d = CORPUS / name
    return sorted(p for p in d.iterdir() if p.is_file()) if d.is_dir() else []


# ---- seed corpus -------------------------------------------------------------------------------------------

def _video_frames(count: int, width: int = 64, height: int = 48) -> list:
    from fractions import Fraction

    import av
    import numpy as np

    rng = np.random.default_rng(7)
    frames = []
    for i in range(count):
        img = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
        f = av.VideoFrame.from_ndarray(img, format="rgb24")
        f.pts, f.time_base = i * 3000, Fraction(1, 90000)
        frames.append(f)
    return frames


def _vp8_payloads(count: int) -> list[list[bytes]]:
    """aiortc's VP8 encoder and packetizer: the payloads (descriptor + data) of `count` frames."""
    from aiortc.codecs.vpx import Vp8Encoder

    enc = Vp8Encoder()
    return [enc.encode(f, force_keyframe=i == 0)[0] for i, f in enumerate(_video_frames(count))]


def _h264_payloads(count: int) -> list[list[bytes]]:
    """aiortc's H.264 encoder and packetizer (STAP-A with SPS/PPS, FU-A, single NAL units)."""
    from aiortc.codecs.h264 import H264Encoder

    enc = H264Encoder()
    return [enc.encode(f, force_keyframe=i == 0)[0] for i, f in enumerate(_video_frames(count, 160, 120))]


def _opus_payloads(count: int) -> list[bytes]:
    import av
    import numpy as np
    from aiortc.codecs.opus import OpusEncoder

    enc = OpusEncoder()
    out = []
    for i in range(count):
        f = av.AudioFrame.from_ndarray(np.zeros((1, 1920), dtype=np.int16), format="s16", layout="stereo")
        f.sample_rate, f.pts = 48000, i * 960
        out.extend(enc.encode(f)[0])
    return out


def _rtp(payloads: list[list[bytes]], pt: int, ssrc: int, seq: int, ext: bytes = b"") -> list[bytes]:
    from sfu.rtp.rtp_header import build_header

    out = []
    for i, frame in enumerate(payloads):
        for j, p in enumerate(frame):
            out.append(bytes(build_header(int(j == len(frame) - 1), pt, seq, 1000 + 3000 * i, ssrc, ext)) + p)
            seq = (seq + 1) & 0xFFFF
    return out


def _red_records(opus: list[bytes]) -> list[bytes]:
    """RED over Opus as Chromium sends it (0, 1 and 2 earlier frames), with a loss it repairs and a duplicate."""
    from sfu.rtp.red import RedBlock, build_red
    from sfu.rtp.rtp_header import build_header

    frames = [op[:40] for op in opus]
    out = []
    for i, frame in enumerate(frames):
        blocks = [RedBlock(OPUS_PT, 960 * k, frames[i - k]) for k in (2, 1) if k <= min(i, 1 + i % 2)]
        if i != 3:
            out.append(bytes([20]) + bytes(build_header(int(i == 0), RED_PT, 300 + i, 960 * i, 8))
                       + build_red(OPUS_PT, frame, blocks))
    return out + out[-1:]


def _seeds_rtp() -> dict[str, dict[str, bytes]]:
    from aiortc.rtp import RtpPacket, pack_header_extensions

    from sfu.rtp.rtp_header import ONE_BYTE_PROFILE, abs_send_time, build_header, one_byte_extensions
    from sfu.rtp.vp8_packetizer import Vp8Packetizer, l1t3_layer

    # payloads shortened to keep the corpus small (their descriptors and NAL/FU headers stay)
    vp8 = [[p[:60] for p in f] for f in _vp8_payloads(3)]
    h264 = [[p[:80] for p in f] for f in _h264_payloads(2)]
    opus = _opus_payloads(6)
    rid = {r: one_byte_extensions([(RID_EXT_ID, r.encode()), (ABS_SEND_TIME_ID, abs_send_time(1.5))])
           for r in "lmh"}
    header: dict[str, bytes] = {
        "vp8_rid_abs_send_time.bin": _rtp(vp8[:1], VP8_PT, 5000, 100, rid["h"])[0],
        "opus.bin": _rtp([opus[:1]], OPUS_PT, 6000, 7)[0],
    }
    p = RtpPacket(payload_type=VP8_PT, sequence_number=65535, timestamp=1, ssrc=5000, payload=vp8[1][0])
    p.csrc = [0x11111111, 0x22222222]
    p.padding_size = 4
    p.extensions.mid = "0"
    header["csrc_padding.bin"] = p.serialize(_ext_map())
    profile, block = pack_header_extensions([(RID_EXT_ID, b"h"), (15, b"x" * 20)])  # id 15: two-byte form
    header["two_byte_extensions.bin"] = (bytes([0x90]) + bytes(build_header(1, VP8_PT, 9, 9, 5000))[1:12]
                                         + _two_byte(profile, block) + vp8[0][0])
    assert profile != ONE_BYTE_PROFILE

    # simulcast: three layers of L1T3 VP8 with RIDs, a loss (NACKed) and its RTX repair; then audio
    items: list[bytes] = []
    lost_seq = 0
    packetizers = {r: Vp8Packetizer(0x1000 + i, VP8_PT, rng=random.Random(i)) for i, r in enumerate("lmh")}
    for i, frame in enumerate(vp8 * 3):
        tid, sync = l1t3_layer(i, i == 0)
        for r, pk in packetizers.items():
            for pkt in pk.packetize(_vp8_data(frame)[:16 + 8 * "lmh".index(r)], 3000 * i, tid, sync):
                if r == "h" and i == 4:
                    lost_seq = int.from_bytes(pkt[2:4], "big")
                    continue  # lost: the ingest NACKs it
                hdr = build_header(pkt[1] >> 7, VP8_PT, int.from_bytes(pkt[2:4], "big"), 3000 * i,
                                   pk.ssrc, rid[r])
                items.append(bytes([33 if r == "l" else 0]) + bytes(hdr) + pkt[12:])
        if i == 6:
            rtx_ext = one_byte_extensions([(REPAIRED_RID_EXT_ID, b"h")])
            items.append(bytes([5]) + bytes(build_header(0, VP8_RTX_PT, 50, 3000 * 4, 0x2000, rtx_ext))
                         + lost_seq.to_bytes(2, "big") + b"\x90\x80\x00\x00")
    for i, op in enumerate(opus):  # the last ones 255 ms apart: the timer's report tick runs
        items.append(bytes([20 if i < 2 else 255]) + _rtp([[op[:40]]], OPUS_PT, 6000, 7 + i)[0])
    ingest = {"simulcast_vp8_rtx_opus.bin": b"\x01" + pack_records(items)}
    plain = [bytes([33]) + x for x in _rtp(h264, H264_PT, 7000, 65530)]  # sequence numbers wrap
    plain += [bytes([33]) + x for x in _rtp(vp8, VP8_PT, 7100, 1)]
    ingest["h264_then_vp8.bin"] = b"\x00" + pack_records(plain)
    ingest["red_opus.bin"] = b"\x00" + pack_records(_red_records(opus))

    # depacketizer: a VP8 frame sequence with one packet reordered and one duplicated; H.264 likewise
    seq = [bytes([10]) + x for x in _rtp(vp8, VP8_PT, 5000, 65533)]
    seq[1], seq[2] = seq[2], seq[1]
    seq.append(seq[-1])
    h = [bytes([10]) + x for x in _rtp(h264, H264_PT, 9, 500)]
    h.insert(0, h[2])
    depack = {"vp8_reordered.bin": b"\x00" + pack_records(seq), "h264.bin": b"\x01" + pack_records(h)}

    vp8_seeds = {f"aiortc_{i}.bin": f[0] for i, f in enumerate(vp8)}
    pk = Vp8Packetizer(1, rng=random.Random(3))
    for i in range(3):
        tid, sync = l1t3_layer(i, i == 0)
        vp8_seeds[f"l1t3_{i}.bin"] = pk.packetize(_vp8_data(vp8[i]), 3000 * i, tid, sync)[0][12:]
    h264_seeds = {f"frame_{i}.bin": pack_records(f) for i, f in enumerate(h264)}
    return {"rtp_header": header, "rtp_ingest": ingest, "depacketizer": depack, "vp8": vp8_seeds,
            "h264": h264_seeds}


def _vp8_data(payloads: list[bytes]) -> bytes:
    """The VP8 frame in a frame's payloads (their descriptors dropped)."""
    return b"".join(p[parse_vp8(p, 0, len(p)).size:] for p in payloads)  # type: ignore[union-attr]


def _two_byte(profile: int, block: bytes) -> bytes:
    return profile.to_bytes(2, "big") + (len(block) // 4).to_bytes(2, "big") + block


def _ext_map():
    from aiortc.rtcrtpparameters import RTCRtpHeaderExtensionParameters
    from aiortc.rtp import HeaderExtensionsMap

    m = HeaderExtensionsMap()
    m.configure(SimpleNamespace(headerExtensions=[
        RTCRtpHeaderExtensionParameters(id=1, uri="urn:ietf:params:rtp-hdrext:sdes:mid")]))
    return m


def _seeds_rtcp() -> dict[str, bytes]:
    from struct import pack

    from aiortc.rtp import (RTCP_PSFB_FIR, RTCP_RTPFB, RTCP_RTPFB_NACK, RtcpByePacket, RtcpPsfbPacket,
                            RtcpSdesPacket, RtcpSenderInfo, RtcpSourceInfo, pack_rtcp_packet)

    v, a, pub, rel = VIEWER_VIDEO_SSRC, VIEWER_AUDIO_SSRC, PUBLISHER_SSRC, RELAYED_SSRC
    blocks = [rtcp_builder.report_block(s, 0.05, 12, 70000, 30, 0x12345678, 6554) for s in (v, a, rel)]
    sdes = bytes(RtcpSdesPacket(chunks=[RtcpSourceInfo(ssrc=77, items=[(1, b"viewer@example")])]))
    return {
        "nack.bin": rtcp_builder.nack(77, v, [100, 101, 105, 130]),
        # as libwebrtc sends it across the wrap: PID 65534, BLP naming 65535, 0 and 1
        "nack_wrap.bin": pack_rtcp_packet(RTCP_RTPFB, RTCP_RTPFB_NACK, pack("!LLHH", 77, v, 65534, 0b111)),
        "nack_relayed.bin": rtcp_builder.nack(77, rel, [7, 9]),
        "pli.bin": rtcp_builder.pli(77, v),
        "fir_relayed.bin": bytes(RtcpPsfbPacket(fmt=RTCP_PSFB_FIR, ssrc=77, media_ssrc=rel,
                                                fci=rel.to_bytes(4, "big") + b"\x05\x00\x00\x00")),
        "rr_remb.bin": rtcp_builder.receiver_report(77, blocks) + rtcp_builder.remb(77, 1_500_000, [v]),
        "sr_sdes.bin": rtcp_builder.sender_report(pub, rtcp_builder.ntp_now(1.7e9), 90000, 10, 12000) + sdes,
        "sr_reports_bye.bin": bytes(rtcp_builder.RtcpSrPacket(ssrc=77, sender_info=RtcpSenderInfo(
            ntp_timestamp=1 << 40, rtp_timestamp=1, packet_count=2, octet_count=3), reports=blocks[:1]))
        + bytes(RtcpByePacket(sources=[77])),
    }


def _seeds_sdp() -> dict[str, bytes]:
    import asyncio

    from testkit.offer_mutator import simulcast
    from testkit.peers import offer

    async def offers() -> dict[str, str]:
        publish = await offer("sendonly")
        return {"whip.sdp": publish, "whip_simulcast.sdp": simulcast(publish),
                "whep.sdp": await offer("recvonly"), "whep_sendrecv_video.sdp": await offer("sendrecv", ("video",))}

    return {k: v.encode() for k, v in asyncio.run(offers()).items()}


def _seeds_room() -> dict[str, bytes]:
    import json

    values = {"identity": "pupil-1", "text": "hello", "reason": "left the lesson", "loss": 0.02, "rtt": 40,
              "bitrate": 1.5e6, "jitter": 3.5, "sources": ["camera", "microphone"], "token": "eyJ0eXAiOiJKV1Qi.x.y"}
    out = {}
    for i, (kind, schema) in enumerate(room_protocol.SCHEMAS.items()):
        msg = {"type": kind, "id": i if i % 2 else f"m{i}", **{k: values[k] for k in schema}}
        out[f"{kind}.json"] = json.dumps(msg).encode()
    return out


def _seeds_relay() -> dict[str, bytes]:
    from sfu.cascade.relay_map import encode_streams, encode_want

    streams = list(_INSTALLED.values())
    return {"streams.json": encode_streams(streams).encode(),
            "streams_changed.json": encode_streams(streams[1:] + [RelayedStream(
                0x104, "screen", "video", "VP8", 90000, 96, "main", 1920, 1080)]).encode(),
            "want.json": encode_want(["camera", "screen", "stage", "classroom:pupil-1"]).encode()}


def _seeds_webm() -> dict[str, bytes]:
    from recorder.webm.webm_writer import TrackSpec, WebmWriter, opus_head

    vp8 = [_vp8_data(f)[:80] for f in _vp8_payloads(3)]
    out = {}
    with tempfile.TemporaryDirectory() as d:
        for name, finish in (("finished.webm", True), ("crashed.webm", False)):
            path = os.path.join(d, name)
            w = WebmWriter(path, [TrackSpec(1, "video", "VP8", 64, 48), TrackSpec(2, "audio", "opus",
                                                                                 codec_private=opus_head())],
                           title="fuzz", started_at=1.7e9, max_cluster_ms=60)
            for i in range(6):
                w.add(1, 33 * i, vp8[i % 3], i % 3 == 0)
                w.add(2, 20 * i, b"\xfc\xff\xfe", True)
            w.flush()
            w.finish() if finish else w.abandon()
            out[name] = Path(path).read_bytes()
    out["cut_in_a_cluster.webm"] = out["crashed.webm"][:-17]
    return out


def make_seeds(root: Path = CORPUS) -> dict[str, int]:
    """Write the seed corpus (files of the same names are replaced, others such as reproducers kept).
    Returns the number of files per target."""
    random.seed(1)
    rtp = _seeds_rtp()
    webm = _seeds_webm()
    seeds = {**rtp, "rtcp": _seeds_rtcp(), "sdp_offer": _seeds_sdp(), "room_protocol": _seeds_room(),
             "relay_map": _seeds_relay(), "ebml": webm, "webm_repair": webm}
    assert seeds.keys() == TARGETS.keys()
    for name, files in seeds.items():
        (root / name).mkdir(parents=True, exist_ok=True)
        for fname, data in files.items():
            (root / name / fname).write_bytes(data)
    return {name: len(corpus_files(name)) for name in TARGETS}


def main(argv: list[str]) -> int:
    if argv[:1] == ["seeds"]:
        for name, n in make_seeds().items():
            size = sum(p.stat().st_size for p in corpus_files(name))
            print(f"{name}: {n} files, {size} bytes")
        return 0
    if len(argv) >= 3 and argv[0] == "replay":
        print(f"{replay(argv[1], [Path(p) for p in argv[2:]])} inputs ran clean")
        return 0
    print("usage: python -m testkit.fuzz_targets seeds | replay TARGET FILE...", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
