"""Word stage: a Transcript's words, timed by a forced aligner and scored by the ASR tokens.

The one place every path gets words from (`ASR.transcribe`, so the CLI; the server's uploads;
live finals): after the assembler has built a transcript, each segment's own audio and text go
to the aligner (`medasr.pipeline.align.align_clips`, pieces of at most 30 s on the recording's timeline),
and each aligned word gets a probability from the tokens the model generated for that segment.

Probability rule (as faster-whisper and openai-whisper): the mean of the probabilities
exp(logprob) of the tokens that spell the word. A token belongs to every word it has a
character of (punctuation glued to a word counts for it; a token spanning two words counts for
both); tokens of white space alone belong to no word. The tokens are matched to the text by
their exact bytes, so characters split over several tokens are handled; where the text differs
from what was generated (the official repetition clean-up removed some of it) only words whose
every character is found among the tokens get a probability, the others None.

Failure is never fatal: a transcript whose words cannot be had (the aligner refuses the
language, more words than the audio can hold, the aligner fails) keeps its text, gets an empty
word list and a warning saying why. Words are all or nothing: one piece that cannot be aligned
leaves the whole transcript without words, so a word list always covers the whole text.
Only an aligner that cannot be loaded is an error (`ModelLoadError`), raised before any work.
"""

from __future__ import annotations

import concurrent.futures
import difflib
import logging
import math
import threading
from collections.abc import Iterable, Iterator, Sequence

from medasr.defaults import DEFAULT_ALIGNER
from medasr.errors import AlignmentError, ModelLoadError
from medasr.records import Segment, TokenLogprob, Transcript, Word

log = logging.getLogger(__name__)

ALIGN_BATCH = 8  # pieces aligned per forward (a streamed long file is read back this many at a time)


class WordTimer:
    """A forced aligner loaded on first use (once), and the word stage run with it. One
    alignment at a time (a lock): callers in several threads share one model."""

    def __init__(self, aligner=DEFAULT_ALIGNER, device: str = "auto", dtype: str = "auto", batch_size: int = ALIGN_BATCH):
        self.spec = aligner  # hub id, directory, "demo", or a LoadedAligner already loaded
        self.device, self.dtype, self.batch_size = device, dtype, batch_size
        self._aligner = None if isinstance(aligner, str) else aligner
        self._error: ModelLoadError | None = None
        self._load_lock = threading.Lock()
        self._run_lock = threading.Lock()
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None

    @property
    def name(self) -> str:
        return self.spec if isinstance(self.spec, str) else str(self.spec.path)

    @property
    def loaded(self) -> bool:
        return self._aligner is not None

    def load(self):
        """The LoadedAligner; loads it the first time. Raises ModelLoadError (every time, without
        trying again) when it cannot be loaded."""
        with self._load_lock:
            if self._aligner is None:
                if self._error is not None:
                    raise self._error
                from medasr.model.aligner import load_aligner

                try:
                    self._aligner = load_aligner(self.spec, device=self.device, dtype=self.dtype)
                except Exception as err:  # a wrong or broken directory, no hub: said as the aligner's
                    why = str(err) if isinstance(err, ModelLoadError) else f"{type(err).__name__}: {err}"
                    self._error = ModelLoadError(f"the aligner {self.spec} failed to load: {why}")
                    raise self._error from err
                log.info("aligner loaded: %s", self.name)
            return self._aligner

    def add_words(self, t: Transcript, clips: Iterable) -> Transcript:
        """Set `t.words` (in place; returns `t`). `clips`: one `medasr.pipeline.align.Clip` per segment of
        `t`, in order (its own samples, its start, its text), e.g. `plan_clips`."""
        from medasr.pipeline.align import align_clips

        t.words = []
        if not t.segments:
            return t
        aligner = self.load()
        per_segment: list[list[Word]] = []
        try:
            with self._run_lock:
                for batch in _batches(clips, self.batch_size):
                    per_segment += align_clips(aligner, batch, t.language or None)
        except AlignmentError as err:
            return _warn(t, f"no word timestamps: {err}")
        except Exception as err:  # the aligner itself failed: the text is still good
            log.exception("the forced aligner failed on %s", t.source)
            return _warn(t, f"no word timestamps: the aligner failed ({type(err).__name__}: {err})")
        if len(per_segment) != len(t.segments):
            return _warn(t, f"no word timestamps: {len(per_segment)} pieces aligned for {len(t.segments)} segments")
        tokens = _segment_tokens(t)
        for seg, words, toks in zip(t.segments, per_segment, tokens):
            for w, p in zip(words, word_probabilities(seg.text, [w.word for w in words], toks)):
                w.probability = p
            t.words += words
        return t

    def submit(self, t: Transcript, clips: Iterable) -> concurrent.futures.Future:
        """`add_words` on the timer's own worker thread (off the scheduler's and the event loop's)."""
        with self._load_lock:
            if self._pool is None:
                self._pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="medasr-align")
        return self._pool.submit(self.add_words, t, list(clips))


def _warn(t: Transcript, message: str) -> Transcript:
    log.warning("%s: %s", t.source, message)
    t.words = []
    t.warnings.append(message)
    return t


def _batches(items: Iterable, n: int) -> Iterator[list]:
    batch = []
    for x in items:
        batch.append(x)
        if len(batch) >= n:
            yield batch
            batch = []
    if batch:
        yield batch


def _segment_tokens(t: Transcript) -> list[list[TokenLogprob]]:
    """Each segment's generated tokens with their log-probabilities (t.logprobs is all of them in
    segment order); empty lists when the counts do not match (no scores kept)."""
    sizes = [len(s.tokens) for s in t.segments]
    if sum(sizes) != len(t.logprobs):
        return [[] for _ in sizes]
    out, at = [], 0
    for n in sizes:
        out.append(t.logprobs[at : at + n])
        at += n
    return out


def word_probabilities(text: str, words: Sequence[str], tokens: Sequence[TokenLogprob]) -> list[float | None]:
    """Each word's probability: the mean of exp(logprob) over the tokens that spell it (see the
    module's docstring); None for a word the tokens cannot be mapped onto. `words` are written
    forms found in `text` in order (white space inside one is any white space in the text)."""
    none: list[float | None] = [None] * len(words)
    if not tokens or not words:
        return none
    raw = b"".join(bytes(x.bytes) for x in tokens)
    decoded = raw.decode("utf-8", "replace")
    if decoded.encode("utf-8") != raw:  # bytes that are not the tokens' own: no safe mapping
        return none
    # the tokens that own each character of the generated text
    owners: list[list[int]] = [[] for _ in decoded]
    char_of_byte = [ci for ci, ch in enumerate(decoded) for _ in ch.encode("utf-8")]
    at = 0
    for k, x in enumerate(tokens):
        if x.bytes:
            for ci in range(char_of_byte[at], char_of_byte[at + len(x.bytes) - 1] + 1):
                owners[ci].append(k)
        at += len(x.bytes)
    gen = [ci for ci, ch in enumerate(decoded) if not ch.isspace()]
    ours = [ci for ci, ch in enumerate(text) if not ch.isspace()]
    # non-space characters of the text -> those of the generated text
    a, b = "".join(text[i] for i in ours), "".join(decoded[i] for i in gen)
    if a == b:
        mapped = dict(zip(ours, gen))
    else:
        mapped = {}
        for blk in difflib.SequenceMatcher(None, a, b, autojunk=False).get_matching_blocks():
            for j in range(blk.size):
                mapped[ours[blk.a + j]] = gen[blk.b + j]
    out = []
    pos = 0
    for word in words:
        chars, found = [], True
        for part in word.split():
            i = text.find(part, pos)
            if i < 0:
                found = False
                break
            chars += [c for c in range(i, i + len(part)) if not text[c].isspace()]
            pos = i + len(part)
        if not found or not chars or any(c not in mapped for c in chars):
            out.append(None)
            continue
        owned = sorted({k for c in chars for k in owners[mapped[c]]})
        probs = [math.exp(tokens[k].logprob) for k in owned]
        out.append(round(sum(probs) / len(probs), 4) if probs else None)
    return out


def plan_clips(plan, segments: Sequence[Segment], block_s: float = 30.0) -> Iterator:
    """One `medasr.pipeline.align.Clip` per segment of the transcript assembled from `plan`: a clip sent
    whole gives its whole signal; a long input's pieces are sliced from the signal in memory or
    read back from the file (streamed, `ALIGN_BATCH` pieces at a time)."""
    from medasr.pipeline.align import Clip
    from medasr.pipeline.segmenter import piece_samples

    if not segments:
        return
    if plan.whole:
        yield Clip(plan.samples, 0.0, segments[0].text)
        return
    by_start = {s.start: s for s in segments}
    wanted = {k for k, p in enumerate(plan.pieces) if round(p.start, 3) in by_start}
    if plan.samples is not None:
        pieces = ((k, plan.pieces[k].slice(plan.samples)) for k in sorted(wanted))
    else:
        pieces = ((k, x) for k, x in piece_samples(plan, block_s=block_s) if k in wanted)
    for k, samples in pieces:
        seg = by_start[round(plan.pieces[k].start, 3)]
        yield Clip(samples, seg.start, seg.text)
