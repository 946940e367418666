"""The public transcription API: load a model once, transcribe any audio sources in batches.

    import medasr
    asr = medasr.load_model("demo")            # hub id, local directory or "demo"
    for t in asr.transcribe(["a.wav", "b.mp3"], context="metoprolol, atorvastatin"):
        print(t.source, t.text)
    t = asr.transcribe("a.wav", timestamps="word", aligner="demo")[0]   # + t.words (start, end, probability)

It runs the one pipeline (`medasr.pipeline`): each input is planned by the segmenter (speech
detection on every input: a clip without speech gives an empty transcript and no model call; a
short clip with speech is sent whole; a longer one is cut into pieces of speech of at most
`max_piece_s`), the pieces of all inputs share the scheduler's batches, and the assembler
builds each input's Transcript (segments on the original timeline, scores) as soon as its
pieces are done; with timestamps="word" the word stage (`medasr.pipeline.words`) then times
and scores its words.

Memory for long files: a local file longer than the limit is never decoded whole: it is planned
in a streamed pass and its pieces are read back in a second one, handed to the scheduler in
groups of at most `feed_s` seconds of audio (default max(600 s, batch size x piece limit): 64 kB
per second, ~38 MB at the defaults), so memory stays near one group of samples plus one batch's
activations whatever the file's length (benchmarks/bench_longform.py).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from medasr.audio.decode import describe
from medasr.defaults import (
    DEFAULT_MODEL,
    DEFAULT_VAD,
    MAX_CONTEXT_TOKENS,
    MAX_PIECE_S,
    MIN_PIECE_S,
    SAMPLE_RATE,
    TIMESTAMPS,
    VAD_METHODS,
    default_aligner,
)
from medasr.errors import AudioError
from medasr.model.checkpoint import Loaded, load
from medasr.model.prompt import normalize_language
from medasr.model.weights import release_memory
from medasr.pipeline.assembler import assemble, failed
from medasr.pipeline.engine import Engine, Request, Result
from medasr.pipeline.scheduler import BULK, Scheduler
from medasr.pipeline.segmenter import Plan, piece_samples, plan_input, vad_options
from medasr.pipeline.words import WordTimer, plan_clips
from medasr.records import Transcript

FEED_S = 600.0  # audio seconds of pieces handed to the scheduler at a time (at least)

__all__ = ["ASR", "MAX_PIECE_S", "MIN_PIECE_S", "VAD_METHODS", "load_model", "vad_options"]


@dataclass
class _Job:
    index: int
    source: str
    plan: Plan | None = None
    results: dict[int, Result] = field(default_factory=dict)
    failed: bool = False


class ASR:
    """A loaded model with its engine and scheduler. Create it with `load_model`."""

    def __init__(self, loaded: Loaded, batch_size: int = 16, max_context_tokens: int = MAX_CONTEXT_TOKENS):
        self.loaded = loaded
        self.engine = Engine(loaded, batch_size=batch_size, max_context_tokens=max_context_tokens)
        self._timers: dict[str, WordTimer] = {}  # forced aligners, loaded when words are first asked for

    def word_timer(self, aligner=None) -> WordTimer:
        """The word stage for `aligner` (hub id, directory, "demo" or a LoadedAligner; None: the
        default for this model, `medasr.defaults.default_aligner`), loaded once per model object
        and kept for later calls."""
        aligner = default_aligner(self.loaded.path) if aligner is None else aligner
        key = aligner if isinstance(aligner, str) else f"object:{id(aligner)}"
        if key not in self._timers:
            self._timers[key] = WordTimer(aligner, device=str(self.loaded.device), dtype=_dtype_name(self.loaded.dtype))
        return self._timers[key]

    @property
    def name(self) -> str:
        return str(self.loaded.path)

    @property
    def quantize(self) -> str | None:
        """"int8" when the model's linear layers are quantized, else None."""
        return self.loaded.quantize

    def transcribe(
        self,
        audio,
        language: str | None = "English",
        context: str | None = None,
        batch_size: int | None = None,
        max_new_tokens: int | None = None,
        errors: str = "raise",
        on_result: Callable[[int, Transcript], None] | None = None,
        vad: str = DEFAULT_VAD,
        max_piece_s: float = MAX_PIECE_S,
        feed_s: float | None = None,
        temperature: float = 0.0,
        seed: int | None = None,
        timestamps: str = "segment",
        aligner=None,
    ) -> list[Transcript]:
        """Transcribe one source or a list of them (paths, URLs, bytes, base64, (array, rate)).

        language: "English" (default, forced), another language name or code, or "auto" to let
        the model detect it. context: free text for the system turn (hotwords such as drug names),
        at most `engine.max_context_tokens` tokens (ContextTooLong otherwise, before any work).
        errors: "raise" stops at the first bad input with an AudioError; "keep" returns a
        Transcript with `error` (and `error_code`) set for it and transcribes the others.
        on_result(index, transcript) is called as each input's transcript is ready.
        vad: speech detection on every input: "silero" (default), "energy" (loudness, no model)
        or "none" (off: everything is sent, long inputs cut at quiet points).
        temperature: 0 (default) decodes greedily; above 0 samples (seeded by `seed`).
        feed_s: audio seconds of long-input pieces handed over at a time (bounds memory).
        timestamps: "segment" (default) or "word": each transcript also gets `words` (start, end,
        probability) from a forced aligner (`aligner`: hub id, directory or "demo"; default
        `medasr.defaults.default_aligner(model)`: "demo" for the demo model, else
        Qwen/Qwen3-ForcedAligner-0.6B), loaded on first use and kept by this object. A
        transcript whose words cannot be had keeps its text, with `words == []` and a warning in
        `warnings`; an aligner that cannot be loaded raises ModelLoadError before any work.
        """
        if errors not in ("raise", "keep"):
            raise ValueError("errors must be 'raise' or 'keep'")
        if not 0.0 <= temperature <= 2.0:
            raise ValueError(f"temperature must be between 0 and 2, not {temperature}")
        if timestamps not in TIMESTAMPS:
            raise ValueError(f"timestamps must be one of {', '.join(map(repr, TIMESTAMPS))}, not {timestamps!r}")
        self.engine.check_context(context)
        timer = self.word_timer(aligner) if timestamps == "word" else None
        if timer is not None:
            timer.load()  # a bad aligner is an error now, not after the transcription
        options = vad_options(vad, max_piece_s)
        sources = list(audio) if isinstance(audio, (list, tuple)) and not _is_array_pair(audio) else [audio]
        forced = normalize_language(language)
        cap = batch_size or self.engine.batch_size
        feed = feed_s if feed_s is not None else max(FEED_S, cap * options.max_piece_s)
        out: list[Transcript | None] = [None] * len(sources)
        scheduler = Scheduler(self.engine, max_rows=cap, policy=self.engine.mode)

        def report(job: _Job, t: Transcript) -> None:
            out[job.index] = t
            if on_result:
                on_result(job.index, t)

        def fail(job: _Job, err: AudioError) -> None:
            if errors == "raise":
                raise err
            job.failed = True
            duration = round(job.plan.duration, 3) if job.plan else 0.0
            report(job, failed(job.source, duration, str(err), getattr(err, "code", "invalid_audio")))

        def finished(job: _Job) -> None:
            plan = job.plan
            t = assemble(plan, [job.results.get(k) for k in range(len(plan.pieces))], forced, temperature)
            if timer is not None:
                timer.add_words(t, plan_clips(plan, t.segments, block_s=options.block_s))
                plan.samples = None
            report(job, t)

        engine_errors: list[Exception] = []

        def on_piece(job: _Job, k: int, res: Result | Exception) -> None:
            if isinstance(res, Exception):
                engine_errors.append(res)
                return
            if job.failed:
                return
            job.results[k] = res
            if len(job.results) == len(job.plan.pieces):
                finished(job)

        jobs: list[_Job] = []
        for i, src in enumerate(sources):
            job = _Job(i, describe(src))
            try:
                job.plan = plan_input(src, options)
            except AudioError as err:
                fail(job, err)
                continue
            if not job.plan.pieces:  # no speech at all: nothing to send
                finished(job)
                continue
            jobs.append(job)

        # short clips first (all in memory already), then long inputs' pieces, in groups of about
        # `feed` seconds; each group joins the rows still running from the one before
        group: list[tuple[_Job, int, Request]] = []
        seconds = 0.0
        for job in sorted(jobs, key=lambda j: not j.plan.whole):
            try:
                for k, samples in piece_samples(job.plan, block_s=options.block_s):
                    group.append((job, k, Request(samples, context, forced, max_new_tokens, temperature, seed)))
                    seconds += len(samples) / SAMPLE_RATE if not job.plan.whole else 0.0
                    if seconds >= feed:
                        self._submit(scheduler, group, on_piece)
                        scheduler.run_until_queue_empty()
                        group, seconds = [], 0.0
            except AudioError as err:  # the file changed or broke between the two passes
                fail(job, err)
            if not job.plan.whole and (timer is None or job.plan.path is not None):
                job.plan.samples = None  # its pieces are handed over: free the signal (a file is read again for words)
        self._submit(scheduler, group, on_piece)
        scheduler.run_all()
        del scheduler  # its decoder's KV cache goes with it ...
        release_memory()  # ... and out of the resident set
        if engine_errors:
            raise engine_errors[0]
        return out  # type: ignore[return-value]

    @staticmethod
    def _submit(scheduler: Scheduler, group, on_piece) -> None:
        group = sorted(group, key=lambda g: g[2].duration, reverse=True)  # similar lengths prefill together
        scheduler.submit([r for _, _, r in group], BULK, lambda i, res: on_piece(group[i][0], group[i][1], res))


def _is_array_pair(x) -> bool:
    import numpy as np

    return isinstance(x, tuple) and len(x) == 2 and isinstance(x[0], np.ndarray) and not isinstance(x[1], np.ndarray)


def _dtype_name(dtype) -> str:
    return str(dtype).removeprefix("torch.")


def load_model(model: str = DEFAULT_MODEL, device: str = "auto", dtype: str = "auto", batch_size: int = 16,
               max_context_tokens: int = MAX_CONTEXT_TOKENS, quantize: str | None = None) -> ASR:  # fmt: skip
    """Load Qwen3-ASR from a hub id, a local directory (either checkpoint format) or "demo".

    max_context_tokens: the longest context (prompt, hotwords) a request may carry.
    quantize: None / "none" (weights as `dtype`) or "int8" (CPU: int8 linear layers and output
    head with dynamic int8 activations, `medasr.model.quantize`)."""
    return ASR(load(model, device=device, dtype=dtype, quantize=quantize), batch_size=batch_size, max_context_tokens=max_context_tokens)
