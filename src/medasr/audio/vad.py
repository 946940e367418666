"""Speech detection for long recordings: speech regions -> pieces of at most `max_piece_s`.

Three methods share one path (frame scores -> hysteresis regions -> greedy packing):
- "silero": Silero VAD, weights from the `silero-vad` wheel's safetensors file, run by the small
  PyTorch module below (the package itself only offers TorchScript/ONNX, or a tinygrad class);
- "energy": frame loudness against an adaptive noise floor, no model;
- "none": the whole signal is one region, cut at the quietest point before each limit.

Everything streams: audio arrives in blocks (`medasr.audio.decode.stream_audio` decodes files in ~1.5 s
chunks and regroups them into `block_s` blocks). Memory bound: per file, 4 bytes per 32 ms window (speech
score) and 4 bytes per 8 ms hop (power, to find quiet cut points) = 0.6 kB per second of audio,
4.5 MB for two hours; plus, whatever the length, two or three 16 kHz blocks (64 kB per second of
`block_s`: ~6 MB at 30 s) and the model's activations for `batch_windows` windows (~10 MB at 512).
Measured (benchmarks/bench_vad.py): a 61-minute 44.1 kHz stereo FLAC streamed through `pieces`
peaks ~40 MB above a warmed-up process; loading it whole with `load_audio` first costs ~2 GB.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Literal

import numpy as np

from medasr.audio.decode import SAMPLE_RATE, Audio, stream_audio
from medasr.defaults import MAX_PIECE_S, VAD_METHODS
from medasr.errors import ModelLoadError

WINDOW = 512  # silero's window at 16 kHz (32 ms)
CONTEXT = 64  # samples of the previous window silero sees in front of each window
HOP = 128  # power hop (8 ms): 4 per window, so both grids line up on sample 0
QUIET_HOPS = 12  # the "quietest ~100 ms" window for cuts (96 ms)

AudioInput = np.ndarray | Audio | str | os.PathLike | Iterable[np.ndarray]

__all__ = [  # stream_audio lives in medasr.audio.decode now; re-exported for existing callers
    "Piece", "SpeechProbabilities", "VadOptions", "load_silero", "piece_audio", "pieces", "pieces_and_duration", "pieces_duration_peak",
    "quietest_point", "speech_regions", "stream_audio",
]


@dataclass(frozen=True)
class VadOptions:
    method: Literal["silero", "energy", "none"] = "silero"
    threshold: float = 0.5  # speech starts at a score >= this
    neg_threshold: float | None = None  # ...and may end below this (default threshold - 0.15)
    min_speech_ms: int = 250  # shorter regions are dropped (clicks, breaths)
    min_silence_ms: int = 200  # a region ends after this much silence (short pauses give cut points)
    speech_pad_ms: int = 200  # regions grow this much each side (at most half the gap)
    max_piece_s: float = MAX_PIECE_S  # no piece is longer
    cut_search_s: float = 5.0  # a long region is cut at its quietest point this far before the limit
    energy_margin_db: float = 10.0  # "energy": speech is this much above the local noise floor
    energy_min_dbfs: float = -55.0  # "energy": never speech below this level
    block_s: float = 30.0  # block size when streaming files or arrays
    batch_windows: int = 512  # silero windows per encoder batch
    threads: int | None = 1  # torch threads while silero runs (tiny convs: more threads only contend)

    def __post_init__(self):
        if self.method not in VAD_METHODS:
            raise ValueError(f"unknown VAD method {self.method!r}: use {', '.join(map(repr, VAD_METHODS))}")
        if not 0.0 < self.threshold < 1.0:
            raise ValueError("threshold must be between 0 and 1")
        if self.max_piece_s < 1.0:
            raise ValueError("max_piece_s must be at least 1 second")
        if not 0.2 <= self.cut_search_s < self.max_piece_s:
            raise ValueError("cut_search_s must be at least 0.2 s and below max_piece_s")
        if self.block_s <= 0 or self.batch_windows <= 0:
            raise ValueError("block_s and batch_windows must be positive")


@dataclass(frozen=True)
class Piece:
    """A stretch of the recording to transcribe in one go; times in seconds on the original timeline."""

    start: float
    end: float
    regions: tuple[tuple[float, float], ...]  # the speech inside it, clipped to [start, end]

    @property
    def duration(self) -> float:
        return self.end - self.start

    def slice(self, samples: np.ndarray) -> np.ndarray:
        """This piece's samples out of the whole 16 kHz signal."""
        return samples[round(self.start * SAMPLE_RATE) : round(self.end * SAMPLE_RATE)]


def speech_regions(audio: AudioInput, options: VadOptions | None = None) -> list[tuple[float, float]]:
    """Speech regions (start_s, end_s), in order, padded, within the recording."""
    options = options or VadOptions()
    scan = _scan(audio, options)
    return [(s / SAMPLE_RATE, e / SAMPLE_RATE) for s, e in _regions(scan, options)]


def pieces(audio: AudioInput, options: VadOptions | None = None) -> list[Piece]:
    """Speech regions packed greedily into pieces of at most `options.max_piece_s` seconds.

    Pieces are cut only between regions (the silence between pieces is dropped); a region longer
    than the limit is cut at the quietest ~100 ms in the `cut_search_s` before each limit.
    `audio` may be a 16 kHz array, an `Audio`, a file path (streamed) or an iterable of 16 kHz
    blocks; memory stays bounded as described in the module docstring.
    """
    return pieces_and_duration(audio, options)[0]


def pieces_and_duration(audio: AudioInput, options: VadOptions | None = None) -> tuple[list[Piece], float]:
    """`pieces`, and the recording's duration in seconds (known only once a stream is read)."""
    found, duration, _ = pieces_duration_peak(audio, options)
    return found, duration


def pieces_duration_peak(
    audio: AudioInput, options: VadOptions | None = None, gain: float = 1.0
) -> tuple[list[Piece], float, float]:
    """`pieces_and_duration`, and the largest absolute sample seen (for a stream's normalisation);
    a file's samples are multiplied by `gain` first."""
    options = options or VadOptions()
    scan = _scan(audio, options, gain)
    found = _pack(_regions(scan, options), scan.power, scan.n_samples, options)
    return found, scan.n_samples / SAMPLE_RATE, scan.peak


def piece_audio(
    audio: AudioInput, found: list[Piece], block_s: float = 30.0, gain: float = 1.0
) -> Iterator[tuple[Piece, np.ndarray]]:
    """Yield (piece, its samples) in order, reading `audio` once more block by block; a file's
    samples are multiplied by `gain` (its peak normalisation, from the first pass).

    For files this keeps only the current block and the current piece in memory; an iterator of
    blocks cannot be read twice, so pass a fresh one.
    """
    ordered = sorted(found, key=lambda p: p.start)
    bounds = [(round(p.start * SAMPLE_RATE), round(p.end * SAMPLE_RATE)) for p in ordered]
    k, pos, parts = 0, 0, []
    for block in _blocks(audio, block_s, gain):
        end = pos + len(block)
        while k < len(ordered):
            s, e = bounds[k]
            if s < end and e > pos:
                parts.append(block[max(s - pos, 0) : min(e, end) - pos])
            if e > end:
                break
            yield ordered[k], (np.concatenate(parts) if parts else np.zeros(0, np.float32))
            k, parts = k + 1, []
        pos = end
    for piece in ordered[k:]:  # pieces at the very end (rounding): give what was read
        yield piece, (np.concatenate(parts) if parts else np.zeros(0, np.float32))
        parts = []


def _blocks(audio: AudioInput, block_s: float, gain: float = 1.0) -> Iterator[np.ndarray]:
    size = max(WINDOW, int(block_s * SAMPLE_RATE))
    if isinstance(audio, Audio):
        audio = audio.samples
    if isinstance(audio, (str, os.PathLike)):
        yield from stream_audio(audio, block_s, gain)
    elif isinstance(audio, np.ndarray):
        if audio.ndim != 1:
            raise ValueError("VAD needs a mono 16 kHz signal: load it with medasr.audio.decode.load_audio")
        for i in range(0, len(audio), size):  # views: no copy of the signal
            yield audio[i : i + size]
    else:
        for block in audio:
            yield np.asarray(block, dtype=np.float32).reshape(-1)


# ---------------------------------------------------------------- frame scores


@dataclass
class _Scan:
    scores: np.ndarray  # per 32 ms window: speech probability (silero) or level in dB (energy)
    power: np.ndarray  # per 8 ms hop: mean square
    n_samples: int
    peak: float = 0.0  # largest absolute sample (a stream's peak normalisation needs it: see piece_audio)


def _scan(audio: AudioInput, options: VadOptions, gain: float = 1.0) -> _Scan:
    """One pass over the audio: window scores and hop powers, never the whole signal at once."""
    runner = _SileroRunner(options) if options.method == "silero" else None
    scores, powers = [], []
    tail = np.zeros(0, np.float32)  # samples not yet making a full window
    n, peak = 0, 0.0
    for block in _blocks(audio, options.block_s, gain):
        n += len(block)
        if len(block):
            peak = max(peak, float(np.max(np.abs(block))))
        buf = np.concatenate([tail, block.astype(np.float32, copy=False)])
        full = len(buf) - len(buf) % WINDOW
        tail = buf[full:]
        if full:
            _score(buf[:full], runner, scores, powers)
    if len(tail):  # silero pads the last partial window with zeros; so does the power grid
        _score(np.pad(tail, (0, WINDOW - len(tail))), runner, scores, powers)
    cat = lambda xs: np.concatenate(xs) if xs else np.zeros(0, np.float32)
    return _Scan(cat(scores), cat(powers), n, peak)


def _score(frames: np.ndarray, runner, scores: list, powers: list) -> None:
    hop_power = np.square(frames, dtype=np.float64).reshape(-1, HOP).mean(axis=1).astype(np.float32)
    powers.append(hop_power)
    if runner is not None:
        scores.append(runner(frames))
    else:  # energy (and "none", which ignores it): window level in dB
        window_power = hop_power.reshape(-1, WINDOW // HOP).mean(axis=1)
        scores.append((10.0 * np.log10(window_power + 1e-10)).astype(np.float32))


def _regions(scan: _Scan, options: VadOptions) -> list[tuple[int, int]]:
    """Speech regions in samples."""
    if options.method == "none":
        return [(0, scan.n_samples)] if scan.n_samples else []
    scores = scan.scores
    if options.method == "energy":
        scores = _energy_scores(scores, options)
    neg = options.neg_threshold if options.neg_threshold is not None else max(options.threshold - 0.15, 0.01)
    raw = _hysteresis(scores, options.threshold, neg, options, scan.n_samples)
    return _pad(raw, int(options.speech_pad_ms * SAMPLE_RATE / 1000), scan.n_samples)


def _energy_scores(level_db: np.ndarray, options: VadOptions) -> np.ndarray:
    """Window levels -> pseudo-probabilities against an adaptive threshold.

    Noise floor by minimum statistics: the 10th-percentile level of each ~1 s block, then the
    minimum over +-15 s, so the floor follows slow changes in background noise without rising
    into continuous speech.
    """
    if not len(level_db):
        return level_db
    per = 31  # windows per ~1 s block
    nblocks = -(-len(level_db) // per)
    padded = np.pad(level_db, (0, nblocks * per - len(level_db)), mode="edge").reshape(nblocks, per)
    block_floor = np.percentile(padded, 10, axis=1)
    span = 15
    ext = np.pad(block_floor, span, mode="edge")
    floor = np.lib.stride_tricks.sliding_window_view(ext, 2 * span + 1).min(axis=1)
    thr = np.maximum(np.repeat(floor, per)[: len(level_db)] + options.energy_margin_db, options.energy_min_dbfs)
    # a 3 dB logistic slope turns the default 0.5 / 0.35 thresholds into thr / thr - 1.9 dB
    return (1.0 / (1.0 + np.exp(-(level_db - thr) / 3.0))).astype(np.float32)


def _hysteresis(scores: np.ndarray, thr: float, neg: float, options: VadOptions, n: int) -> list[tuple[int, int]]:
    """Speech from a score >= thr until min_silence of scores that fell below neg (silero's rule)."""
    min_silence = options.min_silence_ms * SAMPLE_RATE / 1000
    min_speech = options.min_speech_ms * SAMPLE_RATE / 1000
    out: list[tuple[int, int]] = []
    start = quiet = None
    for i, p in enumerate(scores.tolist()):
        pos = i * WINDOW
        if start is None:
            if p >= thr:
                start, quiet = pos, None
            continue
        if p >= thr:
            quiet = None
        elif p < neg and quiet is None:
            quiet = pos
        if quiet is not None and pos + WINDOW - quiet >= min_silence:
            if quiet - start >= min_speech:
                out.append((start, quiet))
            start = quiet = None
    if start is not None and n - start >= min_speech:
        out.append((start, n))
    return [(s, min(e, n)) for s, e in out if s < n]


def _pad(regions: list[tuple[int, int]], pad: int, n: int) -> list[tuple[int, int]]:
    """Grow each region by `pad` each side, at most half the gap to its neighbour."""
    out = []
    for i, (s, e) in enumerate(regions):
        before = pad if i == 0 else min(pad, (s - regions[i - 1][1]) // 2)
        after = pad if i == len(regions) - 1 else min(pad, (regions[i + 1][0] - e) // 2)
        out.append((max(0, s - before), min(n, e + after)))
    return out


# ---------------------------------------------------------------- packing


def _pack(regions: list[tuple[int, int]], power: np.ndarray, n: int, options: VadOptions) -> list[Piece]:
    limit = int(options.max_piece_s * SAMPLE_RATE)
    search = int(options.cut_search_s * SAMPLE_RATE)
    done: list[tuple[int, int, list]] = []
    cur: tuple[int, int, list] | None = None
    for s, e in regions:
        if cur is not None and e - cur[0] <= limit:
            cur = (cur[0], e, cur[2] + [(s, e)])
            continue
        if cur is not None:
            done.append(cur)
        while e - s > limit:  # only a region longer than the limit is ever cut
            c = _quietest(power, s + limit - search, s + limit)
            done.append((s, c, [(s, c)]))
            s = c
        cur = (s, e, [(s, e)])
    if cur is not None:
        done.append(cur)
    sec = lambda x: x / SAMPLE_RATE
    return [Piece(sec(s), sec(e), tuple((sec(a), sec(b)) for a, b in regs)) for s, e, regs in done]


def _quietest(power: np.ndarray, lo: int, hi: int) -> int:
    """Centre of the quietest ~100 ms window lying inside [lo, hi] samples (the latest on ties)."""
    first, last = -(-lo // HOP), hi // HOP - QUIET_HOPS  # window start hops
    if last < first or last + QUIET_HOPS > len(power):
        return hi
    sums = np.convolve(power[first : last + QUIET_HOPS], np.ones(QUIET_HOPS), mode="valid")
    j = len(sums) - 1 - int(np.argmin(sums[::-1]))
    return (first + j) * HOP + QUIET_HOPS * HOP // 2


def quietest_point(samples: np.ndarray, lo: int, hi: int) -> int:
    """The centre of the quietest ~100 ms inside samples [lo, hi] (the latest on ties): where a
    piece too long for the model is cut, offline and live alike."""
    first = max(0, lo - lo % HOP)
    seg = samples[first : hi + HOP]
    n = len(seg) - len(seg) % HOP
    power = np.square(seg[:n], dtype=np.float64).reshape(-1, HOP).mean(axis=1).astype(np.float32)
    return first + _quietest(power, lo - first, hi - first)


class SpeechProbabilities:
    """Silero speech probabilities for a live stream: feed 16 kHz blocks of any size, get one
    probability per 32 ms window as soon as the window is complete (state carried across calls,
    so the scores equal those of the whole signal at once)."""

    window = WINDOW

    def __init__(self, options: VadOptions | None = None):
        self._runner = _SileroRunner(options or VadOptions())
        self._tail = np.zeros(0, np.float32)
        self.windows = 0  # complete windows scored so far

    def __call__(self, block: np.ndarray) -> np.ndarray:
        buf = np.concatenate([self._tail, np.asarray(block, dtype=np.float32).reshape(-1)])
        full = len(buf) - len(buf) % WINDOW
        self._tail = buf[full:]
        if not full:
            return np.zeros(0, np.float32)
        probs = self._runner(buf[:full])
        self.windows += len(probs)
        return probs


# ---------------------------------------------------------------- silero model


def _torch_module():
    import torch
    from torch import nn

    class SileroVad(nn.Module):
        """Silero VAD 16 kHz (the architecture of the package's tinygrad_model.py), in PyTorch.

        The convolutional front end sees one window (plus 64 samples of context) at a time, so
        it runs on many windows in one batch; only the LSTM carries state across windows, and
        nn.LSTM runs it over the whole sequence in one call.
        """

        def __init__(self):
            super().__init__()
            # a fixed STFT basis: 129 real then 129 imaginary rows
            self.stft_conv = nn.Conv1d(1, 258, 256, stride=128, bias=False)
            self.conv1 = nn.Conv1d(129, 128, 3, padding=1)
            self.conv2 = nn.Conv1d(128, 64, 3, stride=2, padding=1)
            self.conv3 = nn.Conv1d(64, 64, 3, stride=2, padding=1)
            self.conv4 = nn.Conv1d(64, 128, 3, padding=1)
            self.lstm = nn.LSTM(128, 128)  # the checkpoint's LSTMCell, run over a whole sequence per call
            self.final_conv = nn.Conv1d(128, 1, 1)
            self.fft_window = None  # set by use_fft() when stft_conv holds a Hann-windowed DFT

        def use_fft(self) -> bool:
            """Compute the STFT with rfft instead of the 258x256 convolution when they are equal.

            The checkpoint's basis is a periodic-Hann-windowed DFT; an FFT gives the same
            magnitudes (to ~1e-6) at a quarter of the cost of the convolution, which otherwise
            dominates the run time. Checked, not assumed, so another checkpoint still works.
            """
            n = torch.arange(256, dtype=torch.float64)
            k = torch.arange(129, dtype=torch.float64)[:, None]
            window = torch.hann_window(256, periodic=True, dtype=torch.float64)
            angle = 2 * torch.pi * k * n / 256
            basis = torch.cat([torch.cos(angle) * window, -torch.sin(angle) * window])
            if torch.allclose(self.stft_conv.weight.detach().squeeze(1).double(), basis, atol=1e-5):
                self.fft_window = window.float()
            return self.fft_window is not None

        def encode(self, windows: torch.Tensor) -> torch.Tensor:
            """(n, 576) windows with context -> (n, 128) features."""
            x = nn.functional.pad(windows.unsqueeze(1), (0, 64), mode="reflect")
            if self.fft_window is not None:  # (n, 4 frames, 256) -> (n, 129 bins, 4 frames)
                x = torch.fft.rfft(x.squeeze(1).unfold(1, 256, 128) * self.fft_window).abs().transpose(1, 2)
            else:
                x = self.stft_conv(x)
                x = torch.sqrt(x[:, :129] ** 2 + x[:, 129:] ** 2)
            for conv in (self.conv1, self.conv2, self.conv3, self.conv4):
                x = torch.relu(conv(x))
            return x.squeeze(-1)

        def decode(self, features: torch.Tensor, state):
            """(n, 128) features in time order -> (n,) speech probabilities, new (h, c)."""
            h, state = self.lstm(features.unsqueeze(1), state)
            x = self.final_conv(torch.relu(h.squeeze(1)).unsqueeze(-1))
            return torch.sigmoid(x).reshape(-1), state

    return SileroVad


def silero_weights_path() -> Path:
    """The safetensors weights inside the installed silero-vad wheel (found without importing
    the package, whose import sets torch to one thread for the whole process)."""
    spec = importlib.util.find_spec("silero_vad")
    if spec is None or not spec.submodule_search_locations:
        raise ModelLoadError(
            "silero-vad is not installed: `pip install silero-vad==6.2.3`, or use the 'energy' VAD method"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / "data" / "silero_vad_16k.safetensors"
    if not path.is_file():
        raise ModelLoadError(f"{path} is missing: reinstall silero-vad (6.2.3), or use the 'energy' VAD method")
    return path


@lru_cache(maxsize=1)
def load_silero():
    """The Silero VAD module with the wheel's safetensors weights (loaded once per process)."""
    from safetensors.torch import load_file

    state = load_file(str(silero_weights_path()))
    # the checkpoint names its recurrent layer lstm_cell.* (an LSTMCell); nn.LSTM calls them *_l0
    state = {(f"lstm.{k.split('.', 1)[1]}_l0" if k.startswith("lstm_cell.") else k): v for k, v in state.items()}
    model = _torch_module()()
    model.load_state_dict(state, strict=True)
    model.use_fft()
    return model.eval()


@contextmanager
def _torch_threads(n: int | None):
    # With torch's OpenMP backend the setting is per calling thread, so other threads (an engine
    # running beside the VAD) keep theirs; it is restored afterwards in this thread too.
    import torch

    old = torch.get_num_threads()
    if n:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        if n:
            torch.set_num_threads(old)


class _SileroRunner:
    """Runs the model over consecutive full windows, carrying context and LSTM state between calls."""

    def __init__(self, options: VadOptions):
        self.model = load_silero()
        self.options = options
        self.context = np.zeros(CONTEXT, np.float32)
        self.state = None

    def __call__(self, frames: np.ndarray) -> np.ndarray:
        import torch

        # each window is preceded by the last 64 samples of the previous one (zeros at the start)
        joined = np.concatenate([self.context, frames])
        windows = np.lib.stride_tricks.sliding_window_view(joined, CONTEXT + WINDOW)[::WINDOW]
        self.context = frames[-CONTEXT:].copy()
        out = []
        with _torch_threads(self.options.threads), torch.inference_mode():
            step = self.options.batch_windows
            for i in range(0, len(windows), step):
                batch = torch.from_numpy(windows[i : i + step].copy())
                probs, self.state = self.model.decode(self.model.encode(batch), self.state)
                out.append(probs.numpy())
        return np.concatenate(out)
