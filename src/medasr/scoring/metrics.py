"""WER / CER, bootstrap confidence intervals, paired tests and hallucination indicators
(medical terms, numbers and doses: `medasr.scoring.medical`; the whole `medasr score` object:
`medasr.scoring.summary`).

Everything is corpus level: total edits over total reference words (or characters), never a mean
of per-utterance rates. Alignments come from jiwer (`process_words`, `process_characters`), fed
texts already prepared by a `medasr.text.normalize` normaliser, so the totals equal jiwer's own corpus
figures under the same transforms.

Empty references: an utterance whose normalised reference is empty contributes its hypothesis
words as insertions and 0 reference words. A corpus with 0 reference words divides by 1, i.e. its
WER is the number of inserted words (jiwer 4's convention): 0.0 when nothing was inserted too.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np

from medasr.text.normalize import Normalizer, get_normalizer


@dataclass(frozen=True)
class ErrorCounts:
    """Edit counts of an alignment (words or characters) of one utterance or a whole corpus."""

    hits: int = 0
    substitutions: int = 0
    deletions: int = 0
    insertions: int = 0

    @property
    def ref_len(self) -> int:
        return self.hits + self.substitutions + self.deletions

    @property
    def hyp_len(self) -> int:
        return self.hits + self.substitutions + self.insertions

    @property
    def errors(self) -> int:
        return self.substitutions + self.deletions + self.insertions

    @property
    def rate(self) -> float:
        """Error rate; with no reference units, the insertion count (see the module doc)."""
        return self.errors / max(self.ref_len, 1)

    @staticmethod
    def total(counts: Iterable[ErrorCounts]) -> ErrorCounts:
        """The sum over utterances (a corpus, a duration bucket, ...)."""
        h = s = d = i = 0
        for c in counts:
            h, s, d, i = h + c.hits, s + c.substitutions, d + c.deletions, i + c.insertions
        return ErrorCounts(h, s, d, i)


@dataclass
class Score:
    """Word and character alignments of a set of (reference, hypothesis) pairs."""

    normalizer: str
    refs: list[str]  # word-normalised texts, single spaces
    hyps: list[str]
    words: list[ErrorCounts]  # per utterance
    chars: list[ErrorCounts]
    raw_refs: list[str] = field(repr=False)
    raw_hyps: list[str] = field(repr=False)
    alignments: list = field(repr=False)  # jiwer AlignmentChunks per utterance (words)
    word_total: ErrorCounts = field(init=False)
    char_total: ErrorCounts = field(init=False)

    def __post_init__(self):
        self.word_total = ErrorCounts.total(self.words)
        self.char_total = ErrorCounts.total(self.chars)

    @property
    def n(self) -> int:
        return len(self.refs)

    @property
    def wer(self) -> float:
        return self.word_total.rate

    @property
    def cer(self) -> float:
        return self.char_total.rate

    def word_arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """Per-utterance word errors and reference word counts, for resampling."""
        errors = np.fromiter((c.errors for c in self.words), np.int64, self.n)
        ref_len = np.fromiter((c.ref_len for c in self.words), np.int64, self.n)
        return errors, ref_len


_SLOT = {"equal": 0, "substitute": 1, "delete": 2, "insert": 3}


def _per_utterance(alignments) -> list[ErrorCounts]:
    out = []
    for chunks in alignments:
        hsdi = [0, 0, 0, 0]
        for c in chunks:
            hsdi[_SLOT[c.type]] += (
                c.hyp_end_idx - c.hyp_start_idx if c.type == "insert" else c.ref_end_idx - c.ref_start_idx
            )
        out.append(ErrorCounts(*hsdi))
    return out


def score(
    refs: Sequence[str | None], hyps: Sequence[str | None], normalizer: str | Normalizer = "basic"
) -> Score:
    """Align every pair under `normalizer` ("basic", "english", "none"); None counts as ""."""
    import jiwer

    if len(refs) != len(hyps):
        raise ValueError(f"{len(refs)} references but {len(hyps)} hypotheses")
    norm = get_normalizer(normalizer)
    raw_refs = [r or "" for r in refs]
    raw_hyps = [h or "" for h in hyps]
    if not raw_refs:
        return Score(norm.name, [], [], [], [], raw_refs, raw_hyps, [])
    # Words are split on any white space; jiwer then only splits on the single spaces left.
    ref_n, hyp_n = [norm.words(t) for t in raw_refs], [norm.words(t) for t in raw_hyps]
    ref_w, hyp_w = [" ".join(t.split()) for t in ref_n], [" ".join(t.split()) for t in hyp_n]
    as_words = jiwer.Compose([jiwer.ReduceToListOfListOfWords()])
    as_chars = jiwer.Compose([jiwer.ReduceToListOfListOfChars()])
    w = jiwer.process_words(ref_w, hyp_w, as_words, as_words)
    if norm.chars is norm.words:  # e.g. english: do not pay for the normaliser twice
        ref_c, hyp_c = ref_n, hyp_n
    else:
        ref_c, hyp_c = [norm.chars(t) for t in raw_refs], [norm.chars(t) for t in raw_hyps]
    c = jiwer.process_characters(ref_c, hyp_c, as_chars, as_chars)
    return Score(
        norm.name, ref_w, hyp_w, _per_utterance(w.alignments), _per_utterance(c.alignments),
        raw_refs, raw_hyps, w.alignments,
    )


# ---------------------------------------------------------------------------------------------
# Bootstrap


@dataclass(frozen=True)
class Interval:
    """A percentile bootstrap confidence interval."""

    low: float
    high: float
    level: float = 0.95
    resamples: int = 1000
    seed: int = 42


def _resampled_sums(columns: list[np.ndarray], resamples: int, seed: int) -> list[np.ndarray]:
    # Resample utterances with replacement; the same index draws serve every column, which is
    # what makes a paired test paired. Chunked so 10,000 resamples of 16k items stay ~32 MB.
    if resamples < 1:
        raise ValueError(f"resamples must be at least 1, got {resamples}")
    rng = np.random.default_rng(seed)
    n = len(columns[0])
    out = [np.empty(resamples, np.int64) for _ in columns]
    step = max(1, 4_000_000 // max(n, 1))
    for start in range(0, resamples, step):
        idx = rng.integers(0, n, size=(min(step, resamples - start), n))
        for col, sums in zip(columns, out):
            sums[start : start + len(idx)] = col[idx].sum(axis=1)
    return out


def bootstrap_ci(
    errors: Sequence[int] | np.ndarray,
    ref_lens: Sequence[int] | np.ndarray,
    *,
    resamples: int = 1000,
    seed: int = 42,
    level: float = 0.95,
) -> Interval:
    """Confidence interval of the corpus rate sum(errors)/sum(ref_lens), resampling utterances."""
    errors, ref_lens = np.asarray(errors, np.int64), np.asarray(ref_lens, np.int64)
    if len(errors) == 0:
        return Interval(0.0, 0.0, level, resamples, seed)
    e, r = _resampled_sums([errors, ref_lens], resamples, seed)
    rates = e / np.maximum(r, 1)
    low, high = np.percentile(rates, [50 * (1 - level), 50 * (1 + level)])
    return Interval(float(low), float(high), level, resamples, seed)


def wer_ci(s: Score, *, resamples: int = 1000, seed: int = 42, level: float = 0.95) -> Interval:
    """Bootstrap confidence interval of a Score's corpus WER."""
    return bootstrap_ci(*s.word_arrays(), resamples=resamples, seed=seed, level=level)


@dataclass(frozen=True)
class PairedComparison:
    """System A against system B on the same utterances; delta = WER(A) - WER(B)."""

    wer_a: float
    wer_b: float
    delta: float
    delta_ci: Interval
    p_value: float  # two-sided: how often resampling makes the difference vanish or flip


def paired_bootstrap(
    a: Score, b: Score, *, resamples: int = 1000, seed: int = 42, level: float = 0.95
) -> PairedComparison:
    """Paired bootstrap test of two systems scored on the same references."""
    if a.refs != b.refs:
        raise ValueError("paired test needs both systems scored on the same references")
    ea, ref = a.word_arrays()
    eb, _ = b.word_arrays()
    if a.n == 0:
        return PairedComparison(0.0, 0.0, 0.0, Interval(0.0, 0.0, level, resamples, seed), 1.0)
    sa, sb, sr = _resampled_sums([ea, eb, ref], resamples, seed)
    deltas = (sa - sb) / np.maximum(sr, 1)
    low, high = np.percentile(deltas, [50 * (1 - level), 50 * (1 + level)])
    # +1 on both sides: a finite number of resamples can never show p = 0.
    tail = min(int((deltas <= 0).sum()), int((deltas >= 0).sum())) + 1
    p = min(1.0, 2 * tail / (resamples + 1))
    ci = Interval(float(low), float(high), level, resamples, seed)
    return PairedComparison(a.wer, b.wer, a.wer - b.wer, ci, p)


# ---------------------------------------------------------------------------------------------
# Hallucination indicators


def repetition_loop(words: Sequence[str], min_repeats: int = 4, max_ngram: int = 20) -> bool:
    """True if some n-gram (n <= max_ngram) occurs `min_repeats` times in a row."""
    n_words = len(words)
    # A loop needs some word at least min_repeats times: cheap rejection for most texts.
    if n_words - len(set(words)) < min_repeats - 1:
        return False
    for n in range(1, min(max_ngram, n_words // min_repeats) + 1):
        need, run = (min_repeats - 1) * n, 0
        for j in range(n_words - n):
            run = run + 1 if words[j] == words[j + n] else 0
            if run >= need:
                return True
    return False


@dataclass(frozen=True)
class Hallucination:
    n: int
    insertions: int
    ref_words: int
    empty_outputs: int  # empty hypothesis for a non-empty reference
    repetitions: int  # hypotheses looping an n-gram that their reference does not loop
    token_cap_hits: int | None  # decoding stopped at max_new_tokens (None: not recorded)

    @property
    def insertion_rate(self) -> float:
        return self.insertions / max(self.ref_words, 1)

    def to_dict(self) -> dict:
        return {**asdict(self), "insertion_rate": self.insertion_rate}


def hallucination(s: Score, hit_token_cap: Sequence[bool] | None = None) -> Hallucination:
    """Insertion rate, empty outputs, repetition loops and token-cap hits of a Score."""
    if hit_token_cap is not None and len(hit_token_cap) != s.n:
        raise ValueError(f"hit_token_cap has {len(hit_token_cap)} values for {s.n} utterances")
    empty = sum(1 for r, h in zip(s.refs, s.hyps) if r and not h)
    loops = sum(
        1
        for r, h in zip(s.refs, s.hyps)
        if repetition_loop(h.split()) and not repetition_loop(r.split())
    )
    caps = None if hit_token_cap is None else sum(map(bool, hit_token_cap))
    t = s.word_total
    return Hallucination(s.n, t.insertions, t.ref_len, empty, loops, caps)
