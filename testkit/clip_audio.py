"""A clip's sound at a chosen bit rate, on a seamless 20 ms grid: testkit.media's clips carry libopus's stereo
default (~180 kbit/s, more than a 300 kbit/s link can take besides the picture) where a teacher's browser sends
its voice at ~30 kbit/s, and their sound starts 7 ms early (the encoder's pre-skip) and ends in a 7 ms frame, so
a looping publisher (testkit.peers.PreEncodedTrack) leaves a timestamp seam each loop, which the viewer's jitter
buffer conceals (~0.4 % of the samples on a clean link)."""
from __future__ import annotations

import fractions
from pathlib import Path

import av

from testkit.media import cached, opus_stream

OPUS_FRAME = 960  # 20 ms at 48 kHz


def with_audio_bitrate(src: Path, dst: Path, bitrate: int) -> Path:
    """`src` with its video packets unchanged and its sound re-encoded as Opus at `bitrate` bit/s, whole 20 ms
    frames stamped 0, 20, 40 ... ms (a short last frame left out), cached at `dst` (made once)."""
    def write(out) -> None:
        with av.open(str(src)) as inp:
            video_in, audio_in = inp.streams.video[0], inp.streams.audio[0]
            video_out = out.add_stream_from_template(video_in)
            audio_out = opus_stream(out)
            audio_out.bit_rate = bitrate
            sound = []
            for packet in inp.demux(video_in, audio_in):
                if packet.dts is None:  # the demuxer's end-of-stream marker
                    continue
                if packet.stream is video_in:
                    packet.stream = video_out
                    out.mux(packet)
                    continue
                for frame in packet.decode():
                    sound.extend(audio_out.encode(frame))
            sound.extend(audio_out.encode(None))
            for i, encoded in enumerate(p for p in sound if p.duration == OPUS_FRAME):
                encoded.pts = encoded.dts = i * OPUS_FRAME
                encoded.time_base = fractions.Fraction(1, 48000)
                out.mux(encoded)
    return cached(dst, "webm", write)
