"""One audio loader: any source -> mono float32 at 16 kHz, or one clear `AudioError`.

Sources: file paths (wav, flac, mp3, ogg/opus, m4a/aac, webm, ...), http(s) URLs, raw bytes,
base64 strings and data URLs, and (array, sample_rate) pairs. Channels are mixed by their mean
and the signal is resampled with soxr at the quality librosa uses, as the official package does.

`load_audio` decodes a source whole; `stream_audio` decodes a file block by block (long
recordings), and `probe_duration` measures a file's length without decoding it. All three read
to the end of the file whatever its header claims (`medasr.audio.ffmpeg`), so they agree.
`load_audio` keeps libsndfile's samples (what the official package loads) when they are the
whole file, and decodes with FFmpeg otherwise.
"""

from __future__ import annotations

import base64
import binascii
import io
import os
import re
import urllib.request
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from medasr.audio import ffmpeg
from medasr.defaults import SAMPLE_RATE
from medasr.errors import AudioError

AUDIO_EXTENSIONS = {".wav", ".flac", ".mp3", ".ogg", ".opus", ".m4a", ".aac", ".mp4", ".webm", ".wma", ".aiff", ".aif"}
MAX_URL_BYTES = 200 * 1024 * 1024
URL_TIMEOUT_S = 30.0
_BASE64 = re.compile(r"[A-Za-z0-9+/=\s]+")
LENGTH_TOLERANCE_S = 0.2  # libsndfile's decode and FFmpeg's packet count agree to this (encoder delay, padding)


@dataclass
class Audio:
    samples: np.ndarray  # mono float32 at 16 kHz
    source: str  # a short name for messages and outputs

    @property
    def duration(self) -> float:
        return len(self.samples) / SAMPLE_RATE


def load_audio(source, name: str | None = None) -> Audio:
    """Decode `source` to 16 kHz mono float32. Raises AudioError naming the input."""
    label = name or describe(source)
    if isinstance(source, Audio):
        return source
    if isinstance(source, tuple) and len(source) == 2:
        array, rate = source
        samples = _prepare(np.asarray(array), int(rate), label, channels_last=None)
    elif isinstance(source, np.ndarray):
        samples = _prepare(source, SAMPLE_RATE, label, channels_last=None)
    elif isinstance(source, (bytes, bytearray, memoryview)):
        samples = decode_bytes(bytes(source), label)
    elif isinstance(source, (str, Path)):
        samples = _load_string(str(source), label)
    else:
        raise AudioError(label, f"unsupported audio input of type {type(source).__name__}")
    return Audio(samples, label)


def describe(source) -> str:
    if isinstance(source, Audio):
        return source.source
    if isinstance(source, Path):
        return str(source)
    if isinstance(source, str):
        if source.startswith("data:"):
            return "<data URL>"
        return source if len(source) < 300 else "<base64 audio>"
    if isinstance(source, (bytes, bytearray, memoryview)):
        return f"<{len(source)} bytes>"
    if isinstance(source, tuple):
        return "<array>"
    if isinstance(source, np.ndarray):
        return "<array>"
    return f"<{type(source).__name__}>"


def _load_string(text: str, label: str) -> np.ndarray:
    if text.startswith(("http://", "https://")):
        return decode_bytes(fetch_url(text, label), label)
    if text.startswith("data:"):
        header, _, payload = text.partition(",")
        if ";base64" not in header or not payload:
            raise AudioError(label, "data URL must be of the form data:audio/...;base64,<data>")
        return decode_bytes(_b64(payload, label), label)
    if len(text) > 256 and _BASE64.fullmatch(text) and not (len(text) < 1024 and Path(text).exists()):
        return decode_bytes(_b64(text, label), label)  # bare base64, as the official package accepts
    path = Path(text).expanduser()
    try:
        if path.is_file():
            return decode_file(path, label)
        if path.is_dir():
            raise AudioError(label, "is a directory, not an audio file")
    except OSError as err:
        raise AudioError(label, f"cannot open: {err.strerror}") from None
    raise AudioError(label, "no such file")


def _b64(payload: str, label: str) -> bytes:
    try:
        return base64.b64decode(payload.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise AudioError(label, "invalid base64 audio data") from None


def fetch_url(url: str, label: str | None = None, max_bytes: int = MAX_URL_BYTES, timeout: float = URL_TIMEOUT_S) -> bytes:
    """Download audio with a size and time cap (the server applies its own address checks first)."""
    label = label or url
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            data = resp.read(max_bytes + 1)
    except Exception as err:
        raise AudioError(label, f"could not download: {err}") from None
    if len(data) > max_bytes:
        raise AudioError(label, f"download larger than {max_bytes // (1024 * 1024)} MB")
    return data


def decode_file(path: Path, label: str) -> np.ndarray:
    if path.stat().st_size == 0:
        raise AudioError(label, "file is empty (0 bytes)")
    return _decode(str(path), label)


def decode_bytes(data: bytes, label: str) -> np.ndarray:
    if not data:
        raise AudioError(label, "no audio data (0 bytes)")
    return _decode(io.BytesIO(data), label)


def _decode(source, label: str) -> np.ndarray:
    """The whole file: libsndfile's samples where they provably are the whole file, else every
    packet to the end of the file decoded by FFmpeg (never a header's estimate of the length)."""
    import soxr

    whole = _libsndfile_whole(source, label)
    if whole is not None:
        return whole
    runs: list[tuple[int, list[np.ndarray]]] = []  # consecutive chunks of one sample rate
    for chunk, rate in ffmpeg.chunks(source, label):
        if runs and runs[-1][0] == rate:
            runs[-1][1].append(chunk)
        else:
            runs.append((rate, [chunk]))
    parts = []
    for rate, run in runs:
        mono = np.concatenate(run)
        if rate != SAMPLE_RATE and mono.size:
            mono = soxr.resample(mono, rate, SAMPLE_RATE, quality="HQ").astype(np.float32, copy=False)
        parts.append(mono)
    return _finish(np.concatenate(parts) if parts else np.zeros(0, np.float32), label)


def _libsndfile_whole(source, label: str) -> np.ndarray | None:
    """libsndfile's decode, kept when its length agrees with FFmpeg's count of the file's packets.

    libsndfile reads wav/flac/ogg/mp3 as the official package loads them (librosa -> soundfile),
    sample for sample, but stops where the header says the file ends: an MP3 without a Xing/Info
    header, recordings joined with `cat` (MP3, FLAC). Then (or when it cannot read the file at
    all) the caller decodes with FFmpeg. The tolerance covers the encoder delay and padding that
    libsndfile trims and the packet count includes.
    """
    import soundfile as sf

    try:
        array, rate = sf.read(source, dtype="float32", always_2d=True)
    except Exception:  # not a libsndfile format, or it breaks part-way: FFmpeg decodes around damage
        return None
    finally:
        if hasattr(source, "seek"):
            source.seek(0)
    counted = ffmpeg.packet_seconds(source)
    if hasattr(source, "seek"):
        source.seek(0)
    if counted is not None and abs(len(array) / rate - counted) > LENGTH_TOLERANCE_S:
        return None
    return _prepare(array, rate, label, channels_last=True)


def _prepare(array: np.ndarray, rate: int, label: str, channels_last: bool | None) -> np.ndarray:
    """Mix to mono by channel mean, resample to 16 kHz, scale into [-1, 1] like qwen-asr."""
    import soxr

    if rate <= 0:
        raise AudioError(label, f"invalid sample rate {rate}")
    array = np.asarray(array)
    if array.dtype.kind not in "fiu":
        raise AudioError(label, f"audio array must be numeric, not {array.dtype}")
    if array.ndim == 2:
        if channels_last is None:  # (channels, time) or (time, channels): channels are the short axis
            channels_last = not (array.shape[0] <= 8 and array.shape[1] > array.shape[0])
        array = array.mean(axis=1 if channels_last else 0)
    elif array.ndim != 1:
        raise AudioError(label, f"audio array must be 1-D or 2-D, not {array.ndim}-D")
    array = array.astype(np.float32, copy=False)
    if array.size == 0:
        raise AudioError(label, "contains no audio samples (zero length)")
    if not np.all(np.isfinite(array)):
        raise AudioError(label, "contains NaN or infinite samples")
    if rate != SAMPLE_RATE:
        array = soxr.resample(array, rate, SAMPLE_RATE, quality="HQ").astype(np.float32, copy=False)
    return _finish(array, label)


def _finish(array: np.ndarray, label: str) -> np.ndarray:
    if array.size == 0:
        raise AudioError(label, "contains no audio samples (zero length)")
    if not np.all(np.isfinite(array)):
        raise AudioError(label, "contains NaN or infinite samples")
    peak = float(np.max(np.abs(array)))
    if peak > 1.0:
        array = array / peak
    return np.clip(array, -1.0, 1.0)


def local_file(source) -> Path | None:
    """The path when `source` names an existing local file (not a URL, data URL or base64), else None."""
    if isinstance(source, Path):
        path = source
    elif isinstance(source, str) and not source.startswith(("http://", "https://", "data:")):
        if len(source) > 256 and _BASE64.fullmatch(source) and not (len(source) < 1024 and Path(source).exists()):
            return None  # bare base64, as `load_audio` reads it
        path = Path(source)
    else:
        return None
    try:
        path = path.expanduser()
        return path if path.is_file() else None
    except (OSError, ValueError):
        return None


def probe_duration(path: str | os.PathLike) -> float | None:
    """A file's duration in seconds, or None if it cannot be read.

    Counted from the file's packets to its end, without decoding them (`ffmpeg.packet_seconds`,
    about a second per hour of MP3): a header's claim, which an MP3 without a length header,
    joined recordings or a truncated file get wrong, is never taken. Agrees with `load_audio`
    to a frame or two (encoder delay), to ~1 % for Ogg Vorbis, whose packet durations FFmpeg
    only estimates; callers keep a margin.
    """
    return ffmpeg.packet_seconds(path)


def stream_audio(source: str | os.PathLike, block_s: float = 30.0, gain: float = 1.0) -> Iterator[np.ndarray]:
    """Decode a file block by block to mono float32 at 16 kHz (blocks of `block_s`, last shorter).

    FFmpeg decodes to the end of the file in chunks of ~65k samples whatever `block_s` is
    (decoder and resampler buffers scale with the chunk), regrouped into blocks afterwards.
    Channels are mixed by their mean and soxr's streaming resampler keeps block joins seamless, as
    `load_audio` does for whole files: the samples are those of `load_audio` (exactly for
    WAV and FLAC; within ~1e-6 for MP3, which `load_audio` decodes with libsndfile for parity
    with the official package, while libsndfile's MP3 decoder changes samples when read in
    blocks). Peak normalisation needs the whole signal: blocks are multiplied by `gain`, which a
    caller that has seen the whole file sets to 1 / peak when the peak is above 1, as
    `load_audio` scales it (`segmenter.plan_input` does, from its first pass); nothing is clipped.
    """
    path = Path(source).expanduser()
    label = str(source)
    if not path.is_file():
        raise AudioError(label, "no such file" if not path.exists() else "is not a file")
    if path.stat().st_size == 0:
        raise AudioError(label, "file is empty (0 bytes)")
    out = int(block_s * SAMPLE_RATE)
    got = 0
    for block in _rebuffer(_resampled(ffmpeg.chunks(str(path), label)), out):
        if not np.all(np.isfinite(block)):
            raise AudioError(label, "contains NaN or infinite samples")
        got += len(block)
        yield block * np.float32(gain) if gain != 1.0 else block
    if not got:
        raise AudioError(label, "contains no audio samples")


def _resampled(chunks: Iterator[tuple[np.ndarray, int]]) -> Iterator[np.ndarray]:
    import soxr

    stream, stream_rate = None, None
    for chunk, rate in chunks:
        if stream is not None and rate != stream_rate:  # joined recordings of another rate
            yield stream.resample_chunk(np.zeros(0, np.float32), last=True)
            stream = None
        if rate == SAMPLE_RATE:
            yield chunk.astype(np.float32, copy=False)
            continue
        if stream is None:  # one stream per run of a rate: its filter state spans chunk joins
            stream, stream_rate = soxr.ResampleStream(rate, SAMPLE_RATE, 1, dtype="float32", quality="HQ"), rate
        yield stream.resample_chunk(np.ascontiguousarray(chunk, dtype=np.float32), last=False)
    if stream is not None:
        yield stream.resample_chunk(np.zeros(0, np.float32), last=True)  # flush the filter's delay


def _rebuffer(chunks: Iterable[np.ndarray], size: int) -> Iterator[np.ndarray]:
    """Regroup arbitrary chunks into blocks of exactly `size` samples (the last one shorter)."""
    parts, have = [], 0
    for chunk in chunks:
        if not len(chunk):
            continue
        parts.append(chunk)
        have += len(chunk)
        if have >= size:
            joined = np.concatenate(parts)
            cut = len(joined) - len(joined) % size
            for i in range(0, cut, size):
                yield joined[i : i + size]
            parts, have = ([joined[cut:]], len(joined) - cut) if cut < len(joined) else ([], 0)
    if have:
        yield np.concatenate(parts)




def expand_inputs(paths: list[str]) -> list[str]:
    """Directories expand to the audio files inside them (sorted, recursive); other inputs pass."""
    out: list[str] = []
    for p in paths:
        path = Path(p)
        if path.is_dir():
            out.extend(str(f) for f in sorted(path.rglob("*")) if f.is_file() and f.suffix.lower() in AUDIO_EXTENSIONS)
        else:
            out.append(p)
    return out
