"""Decode an audio file to its last packet, whatever its headers claim.

A container's stated length is only a claim: an MP3 without a Xing/Info header has its length
estimated from the first frame's bitrate, two recordings joined with `cat` (MP3, FLAC, Ogg)
carry the first one's header, a truncated file states more than it holds. So nothing here
trusts it: FFmpeg (PyAV) reads packet after packet to the end of the file and every packet is
decoded, and the duration probe counts the same packets without decoding them.

Damage is decoded around, never hidden: a packet that does not decode (bytes overwritten or
lost in the middle of a file) is replaced by the silence it stood for (its bytes at the
stream's byte rate), so later audio keeps its place on the recording's timeline, and one
warning per file names where the gaps are and how long. Tags that a joined file carries in its
middle (ID3, APE) are not damage. A file that is mostly damage is refused with an AudioError.
"""

from __future__ import annotations

import io
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import BinaryIO

import numpy as np

from medasr.errors import AudioError

log = logging.getLogger(__name__)

CHUNK_SAMPLES = 1 << 16  # decoded frames are grouped into chunks of about this many samples
_TAGS = (b"ID3", b"TAG", b"APETAGEX")  # metadata a joined MP3 carries between its parts
_SCALE = {"s16": 1 / 32768, "s32": 1 / 2**31, "s64": 1 / 2**63}  # integer PCM -> [-1, 1)
_DTYPES = {"u8": np.uint8, "s16": np.int16, "s32": np.int32, "s64": np.int64, "flt": np.float32, "dbl": np.float64}


@dataclass
class Gap:
    """A stretch of undecodable data, replaced by silence."""

    at_s: float  # where it starts on the decoded timeline
    nbytes: int = 0
    silence_s: float = 0.0
    rate: int = 0  # of the audio after it


@dataclass
class _Tally:
    """Bytes and seconds decoded so far: the stream's byte rate sizes the silence for a gap."""

    good_bytes: int = 0
    good_s: float = 0.0
    bad_bytes: int = 0
    gaps: list[Gap] = field(default_factory=list)
    silence_s: float = 0.0  # put in place of gaps
    open_gap: Gap | None = None
    read_error: str | None = None  # the demuxer stopped before the end of the file


def chunks(source: str | os.PathLike | BinaryIO | bytes, label: str) -> Iterator[tuple[np.ndarray, int]]:
    """(mono float32 samples, sample rate) chunks of the first audio stream, to its end.

    Channels are mixed by their mean, so a stream whose layout or rate changes part-way (two
    recordings joined) decodes whole; a change of rate starts a new chunk. Raises AudioError
    naming `label` when nothing decodes or most of the file is damage.
    """
    import av

    tally = _Tally()
    try:
        container = av.open(_input(source), mode="r")
    except (av.FFmpegError, OSError, ValueError) as err:
        raise AudioError(label, f"cannot decode audio ({type(err).__name__}: {err})") from None
    with container:
        if not container.streams.audio:
            raise AudioError(label, "contains no audio stream")
        stream = container.streams.audio[0]
        # Frames of one kind (rate, sample format, channels) are kept raw and converted together:
        # per-frame numpy work would cost more than decoding (an MP3 frame is 1152 samples).
        group: list[list[np.ndarray]] = []
        kind: tuple | None = None
        have = 0
        for frame in _frames(container, stream, tally):
            gap = isinstance(frame, Gap)
            new = None if gap else (frame.sample_rate, frame.format.name, frame.layout.nb_channels or 1)
            if gap or new != kind or have >= CHUNK_SAMPLES:
                if group:
                    yield _mono(group, kind), kind[0]
                group, have = [], 0
            if gap:  # audio again after damage: the silence it stood for first
                yield np.zeros(round(frame.silence_s * frame.rate), np.float32), frame.rate
                continue
            kind = new
            group.append(_planes(frame, kind))
            have += frame.samples
        if group:
            yield _mono(group, kind), kind[0]
    _report(tally, label)


def _frames(container, stream, tally: _Tally):
    """Decoded frames of every packet, and a Gap before the first frame after damage."""
    import av

    packets = container.demux(stream)
    while True:
        try:
            packet = next(packets)
        except StopIteration:
            break
        except (av.FFmpegError, OSError) as err:  # the container itself breaks off (truncated)
            tally.read_error = f"{type(err).__name__}: {err}"
            break
        if not packet.size:
            continue  # the demuxer's end-of-stream marker
        try:
            frames = stream.decode(packet)
        except av.FFmpegError:
            if not _is_tag(packet):
                if tally.open_gap is None:
                    tally.open_gap = Gap(tally.good_s + tally.silence_s)
                tally.open_gap.nbytes += packet.size
                tally.bad_bytes += packet.size
            continue
        tally.good_bytes += packet.size
        for frame in frames:
            if frame.samples:
                if tally.open_gap is not None:
                    yield _close_gap(tally, frame)
                tally.good_s += frame.samples / frame.sample_rate
                yield frame
    try:
        for frame in stream.decode(None):  # what the decoder still holds
            if frame.samples:
                tally.good_s += frame.samples / frame.sample_rate
                yield frame
    except av.FFmpegError:
        pass  # a last frame cut short: nothing more to get out of it
    if tally.open_gap is not None:  # damage up to the end: nothing after it to place
        tally.gaps.append(tally.open_gap)
        tally.open_gap = None


def _close_gap(tally: _Tally, frame) -> Gap:
    """Size the silence for the gap from the byte rate of the audio decoded so far."""
    gap, tally.open_gap = tally.open_gap, None
    seconds = tally.good_s + frame.samples / frame.sample_rate
    gap.rate = frame.sample_rate
    gap.silence_s = gap.nbytes * seconds / max(tally.good_bytes, 1)
    tally.silence_s += gap.silence_s
    tally.gaps.append(gap)
    return gap


def _planes(frame, kind: tuple) -> list[np.ndarray]:
    """A frame's samples as arrays over its buffers, one per channel (planar) or one in all."""
    _, name, channels = kind
    dtype = _DTYPES[name.removesuffix("p")]
    if name.endswith("p"):
        return [np.frombuffer(plane, dtype, frame.samples) for plane in frame.planes[:channels]]
    return [np.frombuffer(frame.planes[0], dtype, frame.samples * channels)]


def _mono(frames: list[list[np.ndarray]], kind: tuple) -> np.ndarray:
    """Decoded frames of one kind -> mono float32 in [-1, 1], channels mixed by their mean."""
    _, name, channels = kind
    array = np.stack([np.concatenate(plane) for plane in zip(*frames)])
    if not name.endswith("p"):  # interleaved: (1, samples * channels)
        array = array.reshape(-1, channels).T
    base = name.removesuffix("p")
    if base == "u8":
        array = (array.astype(np.float32) - 128.0) / 128.0
    elif base in _SCALE:
        array = array.astype(np.float32) * np.float32(_SCALE[base])
    return mix(array)


def mix(channels: np.ndarray) -> np.ndarray:
    """(channels, n) -> (n,) float32 channel mean. Summed row by row: numpy's mean over the short
    axis of a (n, 2) block costs more than decoding it, and for mono or stereo this gives the
    same values as `mean` (a + b, then halved exactly)."""
    out = np.array(channels[0], dtype=np.float32)
    for row in channels[1:]:
        out += row
    if len(channels) > 1:
        out /= np.float32(len(channels))
    return out


def _report(tally: _Tally, label: str) -> None:
    if tally.bad_bytes and tally.bad_bytes > tally.good_bytes:
        raise AudioError(
            label, f"cannot decode audio: {tally.bad_bytes:,} of {tally.bad_bytes + tally.good_bytes:,} bytes are damaged"
        )
    total = tally.good_s + tally.silence_s
    if tally.gaps:
        shown = ", ".join(_describe(g) for g in tally.gaps[:3])
        more = f" and {len(tally.gaps) - 3} more" if len(tally.gaps) > 3 else ""
        log.warning("%s: undecodable data %s%s; decoded around it (%.2f s in all)", label, shown, more, total)
    if tally.read_error:
        log.warning("%s: the file could not be read past %.2f s (%s): is it truncated? Decoded up to there.",
                    label, total, tally.read_error)  # fmt: skip


def _describe(gap: Gap) -> str:
    if gap.silence_s:
        return f"at {gap.at_s:.2f} s ({gap.nbytes:,} bytes, about {gap.silence_s:.2f} s, replaced by silence)"
    return f"at {gap.at_s:.2f} s, to the end of the file ({gap.nbytes:,} bytes)"


def packet_seconds(source: str | os.PathLike | BinaryIO | bytes) -> float | None:
    """The stream's duration by counting its packets to the end of the file (nothing decoded),
    or None when the file cannot be read. Tags between joined parts do not count; damaged
    packets do (decoding fills them with silence), so this agrees with a decode to within a
    frame or two (encoder delay), whatever the header says."""
    import av

    try:
        with av.open(_input(source), mode="r") as container:
            if not container.streams.audio:
                return None
            stream = container.streams.audio[0]
            mp3 = stream.codec_context.name.startswith("mp3")
            total = 0  # in the stream's time_base
            for packet in container.demux(stream):
                if packet.size and packet.duration and not (mp3 and _is_tag(packet)):
                    total += packet.duration
            return float(total * stream.time_base) if total else None
    except (av.FFmpegError, OSError, ValueError):
        return None


def _is_tag(packet) -> bool:
    return memoryview(packet)[:8].tobytes().startswith(_TAGS)


def _input(source):
    if isinstance(source, (bytes, bytearray, memoryview)):
        return io.BytesIO(bytes(source))
    if isinstance(source, os.PathLike):
        return os.fspath(source)
    return source
