"""Segmenter: one input -> a `Plan`: the pieces of speech to send to the model, or none.

Every input goes through speech detection, short clips too: a clip without speech gives an
empty transcript and no model call. A short clip (at most `max_piece_s`) that holds speech is
sent whole and unchanged, exactly as without the check (so answers on speech do not move); a
longer input is cut into pieces of speech of at most `max_piece_s` (`medasr.audio.vad`), and the
silence between them is never sent. Method "none" turns the check off: everything is sent,
long inputs cut at quiet points.

One policy for everyone (library, CLI, server, live streams): audio shorter than MIN_AUDIO_S is
refused (`AudioTooShort`, OpenAI's `audio_too_short`); pieces shorter than MIN_PIECE_S are not
sent; a speech detector that cannot run is an error (`ModelLoadError` saying to use another
method), never a silent fallback.

Memory for long files: a local file longer than the limit is never decoded whole. The plan
comes from a streamed pass (`vad.pieces_duration_peak`: ~0.6 kB per second of audio plus a few
blocks) and `piece_samples` reads the pieces back in a second streamed pass. A file that peaks
above full scale is scaled by 1 / peak, the one normalisation rule of `load_audio` (its first
pass is then run again on the scaled samples, so the pieces are those of a whole decode). Other long sources
(URLs, bytes, arrays) are decoded whole first; their pieces are views of that signal.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from medasr.audio.decode import describe, load_audio, local_file, probe_duration
from medasr.audio.vad import Piece, VadOptions, piece_audio, pieces_and_duration, pieces_duration_peak, speech_regions
from medasr.defaults import MAX_PIECE_S, MIN_AUDIO_S, MIN_PIECE_S, SAMPLE_RATE, VAD_METHODS
from medasr.errors import AudioError

PROBE_MARGIN_S = 1.0  # file headers may be slightly off: near the limit, decode and measure


class AudioTooShort(AudioError):
    """Audio shorter than MIN_AUDIO_S: nothing a model could transcribe."""

    code = "audio_too_short"

    def __init__(self, source: str, seconds: float):
        super().__init__(source, f"audio is {seconds * 1000:.0f} ms long; at least {MIN_AUDIO_S * 1000:.0f} ms is needed")


@dataclass
class Plan:
    """How one input is transcribed. `pieces` are sent in order; an empty list sends nothing."""

    source: str
    duration: float
    pieces: list[Piece]
    whole: bool  # a clip sent whole: its one segment spans the clip
    samples: np.ndarray | None = None  # the decoded signal, when it is in memory
    path: Path | None = None  # a long local file, read back piece by piece
    gain: float = 1.0  # applied to a file read back: its peak normalisation, as load_audio's

    @property
    def speech(self) -> bool:
        return bool(self.pieces)


def vad_options(method: str = "silero", max_piece_s: float = MAX_PIECE_S) -> VadOptions:
    """Speech-detection settings; ValueError names a bad method or limit."""
    if method not in VAD_METHODS:
        raise ValueError(f"unknown VAD method {method!r}: use {', '.join(map(repr, VAD_METHODS))}")
    if not max_piece_s >= 1.0:
        raise ValueError(f"max_piece_s must be at least 1 second, not {max_piece_s}")
    # cuts inside a long region are searched for in the last 5 s before the limit (less for short limits)
    return VadOptions(method=method, max_piece_s=float(max_piece_s), cut_search_s=min(5.0, max_piece_s / 3))


def plan_input(source, options: VadOptions) -> Plan:
    """Plan any source (path, URL, bytes, base64, (array, rate), Audio); long local files are
    streamed, never decoded whole. Raises AudioError (AudioTooShort) naming the input."""
    path = local_file(source)
    if path is not None:
        probed = probe_duration(path)
        if probed is not None and probed > options.max_piece_s + PROBE_MARGIN_S:
            found, duration, peak = pieces_duration_peak(path, options)  # streamed
            gain = 1.0
            if peak > 1.0:  # load_audio's rule: scaled to full scale when it clips; detect speech on that
                gain = 1.0 / peak
                found, duration, _ = pieces_duration_peak(path, options, gain)
            return Plan(describe(source), duration, _sendable(found), whole=False, path=path, gain=gain)
    audio = load_audio(source)
    return plan_samples(audio.samples, audio.source, options)


def plan_samples(samples: np.ndarray, source: str, options: VadOptions) -> Plan:
    """Plan a decoded 16 kHz mono signal (uploads, live utterances, arrays)."""
    duration = len(samples) / SAMPLE_RATE
    if duration < MIN_AUDIO_S:
        raise AudioTooShort(source, duration)
    if duration <= options.max_piece_s:
        whole = Piece(0.0, duration, ((0.0, duration),))
        if options.method == "none":
            return Plan(source, duration, [whole], whole=True, samples=samples)
        regions = speech_regions(samples, options)
        found = [Piece(0.0, duration, tuple(regions))] if regions else []
        return Plan(source, duration, found, whole=True, samples=samples)
    found, _ = pieces_and_duration(samples, options)
    return Plan(source, duration, _sendable(found), whole=False, samples=samples)


def _sendable(found: list[Piece]) -> list[Piece]:
    return [p for p in found if p.duration >= MIN_PIECE_S]


def piece_samples(plan: Plan, block_s: float = 30.0) -> Iterator[tuple[int, np.ndarray]]:
    """(piece index, its 16 kHz samples) for every piece of the plan, in order. A long file is
    read back block by block; a signal in memory is sliced (views, no copies)."""
    if plan.samples is not None:
        if plan.whole:
            if plan.pieces:
                yield 0, plan.samples
            return
        for k, p in enumerate(plan.pieces):
            yield k, p.slice(plan.samples)
        return
    index = {p: k for k, p in enumerate(plan.pieces)}
    for p, samples in piece_audio(plan.path, plan.pieces, block_s=block_s, gain=plan.gain):
        yield index[p], samples
