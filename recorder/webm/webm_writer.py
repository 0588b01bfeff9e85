"""A WebM/Matroska file written as the lesson runs, always playable, finalized in milliseconds.

Layout: EBML header, a Segment of unknown size, space reserved for the SeekHead, Info (with space reserved for
the Duration), Tracks, then Clusters. A Cluster is built in memory (at most about a second of media, started
on every video keyframe) and appended with one write, so the file on disk is at any moment a valid live
Matroska file ending on a complete Cluster (a crash loses the Cluster being built, not the file).

Finalizing appends the Cues (one cue point per Cluster that starts on a keyframe: the seek index) and patches
the reserved SeekHead, the Duration and the Segment size in place: its cost depends on the number of Clusters,
never on the amount of media, so a 60-minute lesson finalizes as fast as a 1-minute one. `repair()` does the
same for a file whose writer died: it cuts the file after its last complete Cluster and finalizes it.

No transcoding: blocks are the encoded frames as they arrived (VP8 frames, H.264 access units in AVCC form,
Opus packets).
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import Optional

from recorder.webm import ebml

TIMESTAMP_SCALE_NS = 1_000_000        # block timestamps in milliseconds
MAX_CLUSTER_MS = 1000                 # a crash loses at most about this much of the newest media
SEEKHEAD_RESERVE = 96                 # room for three Seek entries plus padding
DURATION_RESERVE = 11                 # a Duration element: 2-byte id, 1-byte size, float64
MATROSKA_EPOCH = 978307200            # 2001-01-01T00:00:00Z, the origin of DateUTC
VIDEO_TRACK, AUDIO_TRACK = 1, 2
MAX_BLOCK_REL_MS = 32767              # SimpleBlock timestamps are int16 relative to their Cluster

CODEC_IDS = {"VP8": "V_VP8", "VP9": "V_VP9", "H264": "V_MPEG4/ISO/AVC", "opus": "A_OPUS"}


class WriteFailed(OSError):
    """Writing to the media file failed (full disk, I/O error); what was written before stays valid."""


@dataclass
class TrackSpec:
    number: int
    kind: str                       # "video" or "audio"
    codec: str                      # "VP8", "H264", "opus"
    width: int = 0
    height: int = 0
    codec_private: bytes = b""
    sample_rate: int = 48000
    channels: int = 2

    def entry(self) -> bytes:
        if self.codec not in CODEC_IDS:
            raise ValueError(f"cannot record codec {self.codec}")
        body = (ebml.uint(ebml.TRACK_NUMBER, self.number) + ebml.uint(ebml.TRACK_UID, self.number)
                + ebml.uint(ebml.TRACK_TYPE, 1 if self.kind == "video" else 2) + ebml.uint(ebml.FLAG_LACING, 0)
                + ebml.string(ebml.LANGUAGE, "und") + ebml.string(ebml.CODEC_ID, CODEC_IDS[self.codec]))
        if self.codec_private:
            body += ebml.element(ebml.CODEC_PRIVATE, self.codec_private)
        if self.kind == "video":
            body += ebml.element(ebml.VIDEO, ebml.uint(ebml.PIXEL_WIDTH, self.width or 1280)
                                 + ebml.uint(ebml.PIXEL_HEIGHT, self.height or 720))
        else:
            if self.codec == "opus":
                body += ebml.uint(ebml.SEEK_PRE_ROLL, 80_000_000)   # 80 ms, as the WebM spec asks for Opus
            body += ebml.element(ebml.AUDIO, ebml.float64(ebml.SAMPLING_FREQUENCY, float(self.sample_rate))
                                 + ebml.uint(ebml.CHANNELS, self.channels))
        return ebml.element(ebml.TRACK_ENTRY, body)


def opus_head(channels: int = 2, sample_rate: int = 48000) -> bytes:
    """The Opus identification header Matroska wants as CodecPrivate (RFC 7845 5.1), no pre-skip: WebRTC
    Opus packets carry no encoder delay to trim."""
    return (b"OpusHead" + bytes([1, channels]) + (0).to_bytes(2, "little") + sample_rate.to_bytes(4, "little")
            + (0).to_bytes(2, "little") + bytes([0]))


@dataclass
class Cue:
    time_ms: int
    cluster_pos: int    # relative to the Segment's payload
    track: int


@dataclass
class Layout:
    """Where the patchable parts of a file are (file offsets)."""
    segment_size_pos: int           # the 8-byte Segment size
    segment_data: int               # the Segment's payload: SeekHead positions count from here
    seekhead_pos: int               # the reserved SeekHead space (SEEKHEAD_RESERVE bytes)
    duration_pos: int               # the reserved Duration (DURATION_RESERVE bytes)
    info_pos: int
    tracks_pos: int
    tracks: list[int] = field(default_factory=list)   # video track numbers (cue tracks), then the others


@dataclass
class Finished:
    duration_ms: int
    size: int
    cues: int
    clusters: int
    started_at: Optional[float] = None   # wall-clock time of the file's zero


def _header(tracks: list[TrackSpec], title: str, started_at: float, doc_type: str) -> tuple[bytes, Layout]:
    head = ebml.element(ebml.EBML, ebml.uint(ebml.EBML_VERSION, 1) + ebml.uint(ebml.EBML_READ_VERSION, 1)
                        + ebml.uint(ebml.EBML_MAX_ID_LENGTH, 4) + ebml.uint(ebml.EBML_MAX_SIZE_LENGTH, 8)
                        + ebml.string(ebml.DOC_TYPE, doc_type) + ebml.uint(ebml.DOC_TYPE_VERSION, 4)
                        + ebml.uint(ebml.DOC_TYPE_READ_VERSION, 2))
    seg_size_pos = len(head) + 4
    seg = ebml.encode_id(ebml.SEGMENT) + ebml.UNKNOWN_SIZE.to_bytes(8, "big")   # live: size patched at the end
    data = len(head) + len(seg)
    reserve = ebml.void(SEEKHEAD_RESERVE)
    info_body_head = ebml.uint(ebml.TIMESTAMP_SCALE, TIMESTAMP_SCALE_NS)
    info_body = (info_body_head + ebml.void(DURATION_RESERVE)
                 + ebml.sint(ebml.DATE_UTC, int((started_at - MATROSKA_EPOCH) * 1e9))
                 + ebml.string(ebml.MUXING_APP, "liveclass") + ebml.string(ebml.WRITING_APP, "liveclass recorder")
                 + (ebml.string(ebml.TITLE, title) if title else b""))
    info = ebml.element(ebml.INFO, info_body)
    info_pos = data + len(reserve)
    duration_pos = info_pos + len(info) - len(info_body) + len(info_body_head)
    tracks_el = ebml.element(ebml.TRACKS, b"".join(t.entry() for t in tracks))
    layout = Layout(seg_size_pos, data, data, duration_pos, info_pos, info_pos + len(info),
                    [t.number for t in tracks if t.kind == "video"] + [t.number for t in tracks if t.kind != "video"])
    return head + seg + reserve + info + tracks_el, layout


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        if n <= 0:
            raise OSError("short write")
        view = view[n:]


def _pwrite_all(fd: int, data: bytes, pos: int) -> None:
    view = memoryview(data)
    while view:
        n = os.pwrite(fd, view, pos)
        if n <= 0:
            raise OSError("short write")
        view, pos = view[n:], pos + n


def _finish(fd: int, layout: Layout, cues: list[Cue], end: int, duration_ms: int) -> int:
    """Append the Cues at `end` and patch SeekHead, Duration and Segment size. Returns the file size."""
    seeks = [(ebml.INFO, layout.info_pos), (ebml.TRACKS, layout.tracks_pos)]
    if cues:
        body = b"".join(ebml.element(ebml.CUE_POINT, ebml.uint(ebml.CUE_TIME, c.time_ms) + ebml.element(
            ebml.CUE_TRACK_POSITIONS, ebml.uint(ebml.CUE_TRACK, c.track)
            + ebml.uint(ebml.CUE_CLUSTER_POSITION, c.cluster_pos))) for c in cues)
        cues_el = ebml.element(ebml.CUES, body)
        _pwrite_all(fd, cues_el, end)
        seeks.append((ebml.CUES, end))
        end += len(cues_el)
    os.ftruncate(fd, end)
    seekhead = ebml.element(ebml.SEEK_HEAD, b"".join(
        ebml.element(ebml.SEEK, ebml.element(ebml.SEEK_ID, ebml.encode_id(eid))
                     + ebml.uint(ebml.SEEK_POSITION, pos - layout.segment_data)) for eid, pos in seeks))
    _pwrite_all(fd, seekhead + ebml.void(SEEKHEAD_RESERVE - len(seekhead)), layout.seekhead_pos)
    _pwrite_all(fd, ebml.float64(ebml.DURATION, float(max(0, duration_ms))), layout.duration_pos)
    _pwrite_all(fd, ebml.encode_size(end - layout.segment_data, 8), layout.segment_size_pos)
    os.fsync(fd)
    return end


class WebmWriter:
    """Appends blocks to one file; not thread-safe (one writer thread owns it)."""

    def __init__(self, path: str | os.PathLike, tracks: list[TrackSpec], title: str = "",
                 started_at: Optional[float] = None, max_cluster_ms: int = MAX_CLUSTER_MS) -> None:
        self.path = os.fspath(path)
        self.tracks = {t.number: t for t in tracks}
        self.max_cluster_ms = max_cluster_ms
        doc_type = "webm" if all(t.codec in ("VP8", "VP9", "opus") for t in tracks) else "matroska"
        self.started_at = time.time() if started_at is None else started_at
        head, self.layout = _header(tracks, title, self.started_at, doc_type)
        self.has_video = any(t.kind == "video" for t in tracks)
        self.cue_tracks = set(self.layout.tracks[:1])   # the video track, else the first audio track
        self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        self.end = 0
        try:
            self._append(head)
        except OSError:
            os.close(self._fd)
            raise
        self.cues: list[Cue] = []
        self.clusters = 0
        self.blocks = 0
        self._cluster = bytearray()
        self._cluster_ts = 0
        self._cluster_cue: Optional[Cue] = None
        self.last_ts: dict[int, int] = {}
        self.failed: Optional[OSError] = None
        self.closed = False

    def _append(self, data: bytes) -> None:
        start = self.end
        try:
            _write_all(self._fd, data)
        except OSError as exc:
            try:
                os.ftruncate(self._fd, start)  # drop the partial write: the file still ends on a whole Cluster
            except OSError:
                pass
            raise WriteFailed(exc.errno, f"writing {os.path.basename(self.path)}: {exc.strerror or exc}") from exc
        self.end = start + len(data)

    def add(self, track: int, ts_ms: int, data: bytes, keyframe: bool) -> None:
        """One encoded frame at `ts_ms` on the recording's timeline. Raises WriteFailed (then only finish)."""
        if self.failed is not None or self.closed:
            raise WriteFailed("the recording file is closed")
        seek_point = keyframe and track in self.cue_tracks
        if self._cluster and ((seek_point and self.has_video) or ts_ms - self._cluster_ts >= self.max_cluster_ms
                              or abs(ts_ms - self._cluster_ts) > MAX_BLOCK_REL_MS):
            self.flush()
        if not self._cluster:   # a Cluster starting on a keyframe of the cue track is a seek point
            self._cluster_ts = max(0, ts_ms)
            self._cluster += ebml.uint(ebml.TIMESTAMP, self._cluster_ts)
            pos = self.end - self.layout.segment_data
            self._cluster_cue = Cue(self._cluster_ts, pos, track) if seek_point else None
        rel = ts_ms - self._cluster_ts
        header = ebml.encode_size(track) + rel.to_bytes(2, "big", signed=True) + (b"\x80" if keyframe else b"\x00")
        self._cluster += ebml.encode_id(ebml.SIMPLE_BLOCK) + ebml.encode_size(len(header) + len(data)) + header
        self._cluster += data
        self.last_ts[track] = ts_ms
        self.blocks += 1

    def flush(self) -> None:
        """Append the Cluster being built (one write)."""
        if not self._cluster:
            return
        data = ebml.encode_id(ebml.CLUSTER) + ebml.encode_size(len(self._cluster)) + bytes(self._cluster)
        self._cluster = bytearray()
        try:
            self._append(data)
        except WriteFailed as exc:
            self.failed = exc
            raise
        self.clusters += 1
        if self._cluster_cue is not None:
            self.cues.append(self._cluster_cue)

    @property
    def duration_ms(self) -> int:
        if not self.last_ts:
            return 0
        return max(ts + _frame_ms(self.tracks[n].kind == "video") for n, ts in self.last_ts.items())

    def finish(self) -> Finished:
        """Write the seek index and the header fields; closes the file. After a failed write, the Cluster
        being built is dropped and the file is finished as it stood."""
        if self.closed:
            raise ValueError("already finished")
        try:
            if self.failed is None:
                try:
                    self.flush()
                except WriteFailed:
                    pass
            duration = self.duration_ms if self.failed is None else _written_duration(self)
            size = _finish(self._fd, self.layout, self.cues, self.end, duration)
            return Finished(duration, size, len(self.cues), self.clusters, self.started_at)
        finally:
            self.closed = True
            os.close(self._fd)

    def abandon(self) -> None:
        """Close without finishing (the file stays a valid live file; `repair` finishes it)."""
        if not self.closed:
            self.closed = True
            os.close(self._fd)


def _frame_ms(video: bool) -> int:
    """How long the last block lasts, for the Duration: a video frame at 30 fps, an Opus frame."""
    return 33 if video else 20


def _written_duration(w: WebmWriter) -> int:
    """Duration of what reached the disk (the failed Cluster's blocks did not)."""
    w._cluster = bytearray()
    info = scan(w.path, w.end)
    return info.duration_ms


# ---- reading back: recovery ----------------------------------------------------------------------------------

@dataclass
class Scan:
    layout: Optional[Layout]
    cues: list[Cue]
    end: int                    # offset after the last complete Cluster
    duration_ms: int
    clusters: int
    finalized: bool
    started_at: Optional[float] = None   # wall-clock time of the file's zero (DateUTC)


def _parse_tracks(body: bytes) -> list[tuple[int, int]]:
    out = []
    for eid, entry in ebml.children(body):
        if eid != ebml.TRACK_ENTRY:
            continue
        number = kind = 0
        for cid, val in ebml.children(entry):
            if cid == ebml.TRACK_NUMBER:
                number = ebml.read_uint(val)
            elif cid == ebml.TRACK_TYPE:
                kind = ebml.read_uint(val)
        out.append((number, kind))
    return out


def _cluster_blocks(body: bytes) -> tuple[int, list[tuple[int, int, bool]]]:
    """(cluster timestamp, [(track, absolute ms, keyframe)]) of a Cluster's payload."""
    ts = 0
    blocks = []
    for eid, val in ebml.children(body):
        if eid == ebml.TIMESTAMP:
            ts = ebml.read_uint(val)
        elif eid == ebml.SIMPLE_BLOCK and len(val) >= 4:
            track, p = ebml.read_vint(val, 0)
            if p + 3 > len(val):
                raise ebml.EbmlError("truncated block")
            rel = int.from_bytes(val[p:p + 2], "big", signed=True)
            blocks.append((track, ts + rel, bool(val[p + 2] & 0x80)))
    return ts, blocks


def scan(path: str | os.PathLike, limit: Optional[int] = None) -> Scan:
    """Read a recorder file's structure without trusting what a crash may have cut: the layout, a cue per
    Cluster starting on a keyframe, and where the last complete Cluster ends. Cost: one small read per
    Cluster, plus the last Cluster in full."""
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size if limit is None else limit
        head = f.read(min(size, 4096))
        try:
            top = ebml.parse_header(head, 0)
            if top.id != ebml.EBML or top.size is None:
                raise ebml.EbmlError("not an EBML file")
            seg = ebml.parse_header(head, top.data_start + top.size)
            if seg.id != ebml.SEGMENT:
                raise ebml.EbmlError("no Segment")
        except ebml.EbmlError as exc:
            raise ebml.EbmlError(f"{os.path.basename(os.fspath(path))}: {exc}") from None
        layout = Layout(seg.start + 4, seg.data_start, seg.data_start, -1, -1, -1)
        seg_end = size if seg.size is None else min(size, seg.data_start + seg.size)
        video_tracks: list[int] = []
        all_tracks: list[int] = []
        cues: list[Cue] = []
        pos, end, clusters, finalized = seg.data_start, seg.data_start, 0, False
        last_cluster: Optional[tuple[int, int]] = None
        started_at: Optional[float] = None
        reserved = seg.data_start   # end of the SeekHead/Void run the Segment starts with
        while pos < seg_end:
            el = ebml.read_header(f, pos)
            if el is None or el.size is None or el.end > seg_end:
                break   # cut short by the crash: everything from here is discarded
            if el.id in (ebml.SEEK_HEAD, ebml.VOID) and el.start == reserved:
                reserved = el.end
            if el.id == ebml.INFO:
                layout.info_pos = el.start
                f.seek(el.data_start)
                info = f.read(el.size)
                p = 0
                for cid, val in ebml.children(info):
                    child = ebml.parse_header(info, p)
                    assert child.end is not None
                    if cid in (ebml.VOID, ebml.DURATION) and child.end - child.start == DURATION_RESERVE:
                        layout.duration_pos = el.data_start + p
                    elif cid == ebml.DATE_UTC and 0 < len(val) <= 8:  # longer: beyond a float (OverflowError)
                        started_at = MATROSKA_EPOCH + int.from_bytes(val, "big", signed=True) / 1e9
                    p = child.end
            elif el.id == ebml.TRACKS:
                layout.tracks_pos = el.start
                f.seek(el.data_start)
                parsed = _parse_tracks(f.read(el.size))
                video_tracks = [n for n, k in parsed if k == 1]
                all_tracks = [n for n, _ in parsed]
                layout.tracks = video_tracks + [n for n in all_tracks if n not in video_tracks]
            elif el.id == ebml.CLUSTER:
                f.seek(el.data_start)
                first = f.read(min(el.size, 64))
                try:
                    ts, blocks = _cluster_blocks_prefix(first)
                except ebml.EbmlError:
                    break
                cue_tracks = video_tracks or all_tracks[:1]
                if blocks and blocks[0][2] and blocks[0][0] in cue_tracks:
                    cues.append(Cue(ts, el.start - seg.data_start, blocks[0][0]))
                clusters += 1
                last_cluster = (el.data_start, el.size)
            elif el.id == ebml.CUES:
                finalized = seg.size is not None
                break   # rebuilt from the Clusters anyway
            pos = el.end
            end = pos
        duration = 0
        if last_cluster is not None:
            f.seek(last_cluster[0])
            try:
                _, blocks = _cluster_blocks(f.read(last_cluster[1]))
                duration = max((t + _frame_ms(n in video_tracks) for n, t, _ in blocks), default=0)
            except ebml.EbmlError:
                pass
        # _finish rewrites SEEKHEAD_RESERVE bytes at the Segment's start and its size as 8 bytes: in a file not
        # laid out so (a damaged header) that would overwrite Info or Tracks, so it is not repaired
        patchable = reserved - seg.data_start == SEEKHEAD_RESERVE and seg.data_start - layout.segment_size_pos == 8
        if layout.duration_pos < 0 or layout.tracks_pos < 0 or not patchable:
            return Scan(None, cues, end, duration, clusters, finalized, started_at)
        return Scan(layout, cues, end, duration, clusters, finalized, started_at)


def _cluster_blocks_prefix(buf: bytes) -> tuple[int, list[tuple[int, int, bool]]]:
    """Like _cluster_blocks on the first bytes of a Cluster: the timestamp and the first block's header."""
    ts, pos, blocks = 0, 0, []
    while pos < len(buf) and not blocks:
        el = ebml.parse_header(buf, pos)
        if el.size is None:
            raise ebml.EbmlError("unknown-size element in a Cluster")
        if el.id == ebml.TIMESTAMP:
            if el.data_start + el.size > len(buf):
                raise ebml.EbmlError("truncated")
            ts = ebml.read_uint(buf[el.data_start:el.data_start + el.size])
        elif el.id == ebml.SIMPLE_BLOCK:
            track, p = ebml.read_vint(buf, el.data_start)
            if p + 3 > len(buf):
                raise ebml.EbmlError("truncated")
            blocks.append((track, ts + int.from_bytes(buf[p:p + 2], "big", signed=True), bool(buf[p + 2] & 0x80)))
        pos = el.data_start + el.size
    return ts, blocks


def repair(path: str | os.PathLike) -> Finished:
    """Finish a file whose writer stopped without finishing it (crash, kill -9, full disk): cut it after its
    last complete Cluster, rebuild the seek index, patch the header. Idempotent."""
    info = scan(path)
    if info.layout is None:
        raise ebml.EbmlError(f"{os.path.basename(os.fspath(path))}: no recorder header (Info/Tracks) to repair")
    fd = os.open(os.fspath(path), os.O_RDWR)
    try:
        size = _finish(fd, info.layout, info.cues, info.end, info.duration_ms)
    finally:
        os.close(fd)
    return Finished(info.duration_ms, size, len(info.cues), info.clusters, info.started_at)
