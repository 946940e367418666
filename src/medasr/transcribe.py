"""The public transcription API: load a model once, transcribe any audio sources in batches.

    import medasr
    asr = medasr.load_model("demo")            # hub id, local directory or "demo"
    for t in asr.transcribe(["a.wav", "b.mp3"], context="metoprolol, atorvastatin"):
        print(t.source, t.text)

Short inputs (at most `max_piece_s`, 30 s by default) are transcribed whole, one request each.
Longer ones go through speech detection (`medasr.vad`): their pieces of speech, at most
`max_piece_s` each, are transcribed by the same engine as the short inputs (pieces of different
inputs share batches) and merged in order into one `Transcript` whose segments lie on the
original timeline. Silence is never sent to the model, so it produces no text.

Memory for long files: a local file longer than the limit is never decoded whole. A first
streamed pass finds the pieces (`vad.pieces_and_duration`: ~0.6 kB per second of audio plus a
few 30 s blocks); a second streamed pass (`vad.piece_audio`) reads the pieces back and feeds them
to the engine in groups of at most `feed_s` seconds of audio (default max(600 s, batch size x
piece limit): 64 kB per second, ~38 MB at the defaults). So beyond the model, memory stays near
one group of samples plus one batch's features and activations, whatever the file's length
(measured in benchmarks/bench_longform.py). Other long sources (URLs, bytes, arrays) are
decoded whole first; their pieces are views of that signal.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from medasr.audio import (
    SAMPLE_RATE,
    Audio,
    describe,
    load_audio,
    local_file,
    probe_duration,
)
from medasr.checkpoint import DEFAULT_MODEL, Loaded, load
from medasr.engine import Engine, Request, Result
from medasr.errors import AudioError
from medasr.prompt import normalize_language
from medasr.records import Segment, Transcript
from medasr.vad import Piece, VadOptions, piece_audio, pieces_and_duration

MAX_PIECE_S = 30.0  # Qwen3-ASR is trained on clips of at most 30 s
FEED_S = 600.0  # audio seconds of long-input pieces handed to the engine at a time (at least)
PROBE_MARGIN_S = 1.0  # file headers may be slightly off: near the limit, decode and measure
MIN_PIECE_S = 0.1  # shorter pieces (a rounding tail) hold no words: not sent
VAD_METHODS = ("silero", "energy", "none")


@dataclass
class _Job:
    """One input: a whole short clip, or a long input and its pieces."""

    index: int
    source: str
    duration: float = 0.0
    audio: Audio | None = None  # short: the clip; long and not a file: the whole signal
    path: Path | None = None  # long local file: read back piece by piece
    pieces: list[Piece] | None = None  # None: transcribed whole
    results: dict[int, Result] = field(default_factory=dict)
    remaining: int = 0
    failed: bool = False


class ASR:
    """A loaded model with its engine. Create it with `load_model`."""

    def __init__(self, loaded: Loaded, batch_size: int = 16):
        self.loaded = loaded
        self.engine = Engine(loaded, batch_size=batch_size)

    @property
    def name(self) -> str:
        return str(self.loaded.path)

    def transcribe(
        self,
        audio,
        language: str | None = "English",
        context: str | None = None,
        batch_size: int | None = None,
        max_new_tokens: int | None = None,
        errors: str = "raise",
        on_result: Callable[[int, Transcript], None] | None = None,
        vad: str = "silero",
        max_piece_s: float = MAX_PIECE_S,
        feed_s: float | None = None,
    ) -> list[Transcript]:
        """Transcribe one source or a list of them (paths, URLs, bytes, base64, (array, rate)).

        language: "English" (default, forced), another language name or code, or "auto" to let
        the model detect it. context: free text for the system turn (hotwords such as drug names).
        errors: "raise" stops at the first bad input with an AudioError; "keep" returns a
        Transcript with `error` set for it and transcribes the others.
        on_result(index, transcript) is called as each result is ready (in batch order; a long
        input once all its pieces are done).
        vad: how inputs longer than `max_piece_s` seconds are cut: "silero" (speech detection,
        default), "energy" (loudness, no model) or "none" (everything is transcribed, cut at
        quiet points). Shorter inputs are transcribed whole, as one segment spanning the clip.
        feed_s: audio seconds of long-input pieces per engine call (bounds memory; module doc).
        """
        if errors not in ("raise", "keep"):
            raise ValueError("errors must be 'raise' or 'keep'")
        options = vad_options(vad, max_piece_s)
        sources = list(audio) if isinstance(audio, (list, tuple)) and not _is_array_pair(audio) else [audio]
        forced = normalize_language(language)
        cap = batch_size or self.engine.batch_size
        feed = feed_s if feed_s is not None else max(FEED_S, cap * options.max_piece_s)
        out: list[Transcript | None] = [None] * len(sources)

        def fail(job: _Job, err: AudioError) -> None:
            if errors == "raise":
                raise err
            job.failed = True
            out[job.index] = Transcript(job.source, "", "", round(job.duration, 3), error=str(err))
            if on_result:
                on_result(job.index, out[job.index])

        def finish(job: _Job) -> None:
            out[job.index] = _merge(job, forced)
            if on_result:
                on_result(job.index, out[job.index])

        jobs: list[_Job] = []
        for i, src in enumerate(sources):
            job = _Job(i, describe(src))
            try:
                _prepare(job, src, options)
            except AudioError as err:
                fail(job, err)
                continue
            jobs.append(job)
            if job.pieces == []:  # no speech at all: nothing to send
                finish(job)

        def finished(group: list[tuple[_Job, int]], idx: list[int], results: list[Result]) -> None:
            for j, r in zip(idx, results):
                job, k = group[j]
                if job.failed:
                    continue
                job.results[k] = r
                job.remaining -= 1
                if job.remaining == 0:
                    finish(job)

        # short clips are all in memory already: one engine call for them, as before; long
        # inputs' pieces join them and follow in groups of about `feed` seconds
        group: list[tuple[_Job, int]] = []
        requests: list[Request] = []
        seconds = 0.0
        for job, k, samples in _units(jobs, options, fail):
            if job.pieces is not None and len(samples) < MIN_PIECE_S * SAMPLE_RATE:
                job.results[k] = Result("", "", "", 0, False)
                job.remaining -= 1
                if job.remaining == 0 and not job.failed:
                    finish(job)
                continue
            group.append((job, k))
            requests.append(Request(samples, context, forced))
            if job.pieces is not None:
                seconds += len(samples) / SAMPLE_RATE
            if seconds >= feed:
                self._run(group, requests, batch_size, max_new_tokens, finished)
                group, requests, seconds = [], [], 0.0
        if requests:
            self._run(group, requests, batch_size, max_new_tokens, finished)
        return out  # type: ignore[return-value]

    def _run(self, group, requests, batch_size, max_new_tokens, finished) -> None:
        self.engine.run(
            requests,
            batch_size=batch_size,
            max_new_tokens=max_new_tokens,
            on_batch=lambda idx, results: finished(group, idx, results),
        )


def vad_options(method: str = "silero", max_piece_s: float = MAX_PIECE_S) -> VadOptions:
    """Speech-detection settings for long inputs; ValueError names a bad method or limit."""
    if method not in VAD_METHODS:
        raise ValueError(f"unknown VAD method {method!r}: use 'silero', 'energy' or 'none'")
    if not max_piece_s >= 1.0:
        raise ValueError(f"max_piece_s must be at least 1 second, not {max_piece_s}")
    # cuts inside a long region are searched for in the last 5 s before the limit (less for short limits)
    return VadOptions(method=method, max_piece_s=float(max_piece_s), cut_search_s=min(5.0, max_piece_s / 3))


def _prepare(job: _Job, src, options: VadOptions) -> None:
    """Decide how `src` is transcribed: whole (short), or VAD pieces (streamed file / in memory)."""
    limit = options.max_piece_s
    path = local_file(src)
    if path is not None:
        probed = probe_duration(path)
        if probed is not None and probed > limit + PROBE_MARGIN_S:
            job.path = path
            job.pieces, job.duration = pieces_and_duration(path, options)  # streamed: never whole
            job.remaining = len(job.pieces)
            return
    audio = load_audio(src)
    job.duration = audio.duration
    job.audio = audio
    if audio.duration <= limit:
        job.remaining = 1
        return
    job.pieces, _ = pieces_and_duration(audio.samples, options)
    job.remaining = len(job.pieces)


def _units(jobs: list[_Job], options: VadOptions, fail) -> Iterator[tuple[_Job, int, object]]:
    """(job, piece index, samples) for everything to transcribe: short clips first, then pieces.

    Long files are read back one at a time, block by block, as the consumer asks for pieces.
    """
    for job in jobs:
        if job.pieces is None:
            yield job, 0, job.audio.samples
    for job in jobs:
        if not job.pieces:
            continue
        if job.path is None:  # decoded whole already: slices are views
            samples, job.audio = job.audio.samples, None  # freed once its pieces are transcribed
            for k, p in enumerate(job.pieces):
                yield job, k, p.slice(samples)
            continue
        index = {p: k for k, p in enumerate(job.pieces)}
        try:
            for p, samples in piece_audio(job.path, job.pieces, block_s=options.block_s):
                yield job, index[p], samples
        except AudioError as err:  # the file changed or broke between the two passes
            fail(job, err)


def _merge(job: _Job, forced: str | None) -> Transcript:
    """One input's transcript from its results; long inputs get one segment per piece with text."""
    if job.pieces is None:
        return _to_transcript(job.audio, job.results[0])
    return merge_pieces(job.source, job.duration, job.pieces, [job.results.get(k) for k in range(len(job.pieces))], forced)


def merge_pieces(
    source: str, duration: float, found: list[Piece], results: list[Result | None], language: str | None
) -> Transcript:
    """Pieces and their results (None: not sent) -> one Transcript on the original timeline.

    Segments keep the pieces' order and times; pieces that gave no text give no segment; the
    text is the segments' texts joined by single spaces. The language is the forced one, or the
    one detected for most audio.
    """
    segments, detected, capped = [], Counter(), False
    for p, r in zip(found, results):
        if r is None:
            continue
        capped = capped or r.hit_token_cap
        text = " ".join(r.text.split())
        if text:
            segments.append(Segment(round(p.start, 3), round(p.end, 3), text))
        if r.language:
            detected[r.language] += p.duration
    lang = language or (detected.most_common(1)[0][0] if detected else "")
    text = " ".join(s.text for s in segments)
    return Transcript(source, text, lang, round(duration, 3), segments, hit_token_cap=capped)


def _is_array_pair(x) -> bool:
    import numpy as np

    return isinstance(x, tuple) and len(x) == 2 and isinstance(x[0], np.ndarray) and not isinstance(x[1], np.ndarray)


def _to_transcript(audio: Audio, r: Result) -> Transcript:
    segments = [Segment(0.0, round(audio.duration, 3), r.text)] if r.text else []
    return Transcript(audio.source, r.text, r.language, round(audio.duration, 3), segments, hit_token_cap=r.hit_token_cap)


def load_model(model: str = DEFAULT_MODEL, device: str = "auto", dtype: str = "auto", batch_size: int = 16) -> ASR:
    """Load Qwen3-ASR from a hub id, a local directory (either checkpoint format) or "demo"."""
    return ASR(load(model, device=device, dtype=dtype), batch_size=batch_size)
