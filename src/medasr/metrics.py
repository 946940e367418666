"""WER / CER, bootstrap confidence intervals, paired tests, medical-term and hallucination metrics.

Everything is corpus level: total edits over total reference words (or characters), never a mean
of per-utterance rates. Alignments come from jiwer (`process_words`, `process_characters`), fed
texts already prepared by a `medasr.text` normaliser, so the totals equal jiwer's own corpus
figures under the same transforms.

Empty references: an utterance whose normalised reference is empty contributes its hypothesis
words as insertions and 0 reference words. A corpus with 0 reference words divides by 1, i.e. its
WER is the number of inserted words (jiwer 4's convention): 0.0 when nothing was inserted too.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from medasr.text import Normalizer, get_normalizer

# Categories of the default lexicon that are medical terms in the M-WER sense (Omi Health's
# categories plus lab names). Its other categories (units, frequencies, routes, findings) are
# phrases for speech synthesis; they would count words like "a" or "daily" as medical.
TERM_CATEGORIES = ("drugs", "conditions", "symptoms", "anatomy", "procedures", "labs")


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
# Medical terms


def default_terms(extra_file: str | Path | None = None) -> dict[str, set[str]]:
    """The lexicon's medical-term categories (TERM_CATEGORIES) plus every category of a user
    file (`term` per line, or `category<TAB>term`; plain terms go to "custom")."""
    from medasr.lexicon import LEXICON, medical_terms  # lazy: only term metrics need it

    terms = medical_terms(extra_file)
    return {c: t for c, t in terms.items() if c in TERM_CATEGORIES or c not in LEXICON}


@dataclass(frozen=True)
class TermIndex:
    """Terms as normalised token tuples, keyed by first token, longest first."""

    by_first: dict[str, list[tuple[tuple[str, ...], frozenset[str]]]]
    categories: tuple[str, ...]


def build_term_index(
    terms: Mapping[str, Iterable[str]], normalizer: str | Normalizer = "basic"
) -> TermIndex:
    """Normalise terms the way texts are normalised, so "Crohn's disease" matches "crohns disease"."""
    norm = get_normalizer(normalizer)
    cats: dict[tuple[str, ...], set[str]] = {}
    for category, items in terms.items():
        for term in items:
            tokens = tuple(norm.words(term).split())
            if tokens:
                cats.setdefault(tokens, set()).add(category)
    by_first: dict[str, list] = {}
    for tokens, c in cats.items():
        by_first.setdefault(tokens[0], []).append((tokens, frozenset(c)))
    for options in by_first.values():
        options.sort(key=lambda o: -len(o[0]))
    return TermIndex(by_first, tuple(sorted(terms)))


def find_terms(words: Sequence[str], index: TermIndex) -> list[tuple[int, int, tuple, frozenset]]:
    """Term occurrences (start, end, tokens, categories): greedy longest match, left to right,
    so "chest pain" is one symptom, not also the anatomy term "chest"."""
    found, i, n = [], 0, len(words)
    while i < n:
        for tokens, cats in index.by_first.get(words[i], ()):
            k = len(tokens)
            if tuple(words[i : i + k]) == tokens:
                found.append((i, i + k, tokens, cats))
                i += k
                break
        else:
            i += 1
    return found


def _count_sequence(words: Sequence[str], tokens: tuple[str, ...]) -> int:
    k, count, i = len(tokens), 0, 0
    while i <= len(words) - k:
        if tuple(words[i : i + k]) == tokens:
            count, i = count + 1, i + k
        else:
            i += 1
    return count


@dataclass
class TermCounts:
    """Medical-word errors (M-WER) and term recall for one category or all of them."""

    ref_words: int = 0  # reference words inside a term occurrence
    substitutions: int = 0
    deletions: int = 0
    insertions: int = 0  # inserted hypothesis words that are part of a term
    occurrences: int = 0  # term occurrences in the references
    recalled: int = 0  # of which the hypothesis of the same utterance also contains

    @property
    def mwer(self) -> float | None:
        """(S + D + spurious medical I) / medical reference words; None without any."""
        if not self.ref_words:
            return None
        return (self.substitutions + self.deletions + self.insertions) / self.ref_words

    @property
    def recall(self) -> float | None:
        return self.recalled / self.occurrences if self.occurrences else None

    def to_dict(self) -> dict:
        return {**asdict(self), "mwer": self.mwer, "recall": self.recall}


@dataclass(frozen=True)
class Accuracy:
    total: int
    found: int

    @property
    def accuracy(self) -> float | None:
        return self.found / self.total if self.total else None

    def to_dict(self) -> dict:
        return {"total": self.total, "found": self.found, "accuracy": self.accuracy}


@dataclass
class MedicalScore:
    overall: TermCounts
    categories: dict[str, TermCounts]  # every category of the term list, "drugs" among them
    numbers: Accuracy
    doses: Accuracy

    @property
    def drugs(self) -> TermCounts:
        return self.categories.get("drugs", TermCounts())


# Unit spellings -> canonical form, so "15 milligrams" and "15 mg" are the same dose.
_UNIT_FORMS = {
    "mg": "mg milligram milligrams mgs", "mcg": "mcg µg μg ug microgram micrograms",
    "g": "g gm gram grams", "kg": "kg kilogram kilograms", "ml": "ml millilitre millilitres "
    "milliliter milliliters", "l": "l litre litres liter liters", "dl": "dl decilitre deciliter",
    "mmol": "mmol millimole millimoles", "meq": "meq milliequivalent milliequivalents",
    "unit": "unit units u", "iu": "iu", "%": "% percent", "mmhg": "mmhg", "bpm": "bpm",
    "cc": "cc", "mm": "mm millimeter millimeters millimetre millimetres",
    "cm": "cm centimeter centimeters centimetre centimetres", "tablet": "tablet tablets tab tabs",
    "capsule": "capsule capsules", "puff": "puff puffs", "drop": "drop drops",
}
_UNITS = {form: canon for canon, forms in _UNIT_FORMS.items() for form in forms.split()}
_PER = {"day": "day", "d": "day", "hour": "h", "hr": "h", "h": "h", "min": "min", "dose": "dose"}
_PER.update(_UNITS)
_QUANTITY = re.compile(r"(?<![\w.,])(\d+(?:[.,]\d+)*)(?:\s*(%|[a-zµμ]+(?:/[a-zµμ]+)*))?")


def quantities(text: str) -> tuple[list[str], list[str]]:
    """Numbers and number+unit doses in a raw text, e.g. "2.5 mg/kg daily" -> (["2.5"],
    ["2.5 mg/kg"]). Read from the text as given (lowercased), not from the normalised text:
    the basic normaliser turns "2.5" into "25". Thousands commas are dropped."""
    numbers, doses = [], []
    for m in _QUANTITY.finditer(text.lower()):
        number = m.group(1).replace(",", "")
        numbers.append(number)
        if m.group(2):
            first, *per = m.group(2).split("/")
            if first in _UNITS and all(p in _PER for p in per):
                doses.append(" ".join([number, "/".join([_UNITS[first], *(_PER[p] for p in per)])]))
    return numbers, doses


def _matched(ref: list[str], hyp: list[str]) -> int:
    return sum((Counter(ref) & Counter(hyp)).values()) if ref and hyp else 0


def medical(s: Score, terms: Mapping[str, Iterable[str]] | TermIndex | None = None) -> MedicalScore:
    """Term recall, M-WER (overall and per category) and number / dose accuracy of a Score.
    `terms`: category -> terms (default: `default_terms()`), normalised like the texts."""
    index = terms if isinstance(terms, TermIndex) else build_term_index(
        default_terms() if terms is None else terms, s.normalizer
    )
    overall = TermCounts()
    per = {c: TermCounts() for c in index.categories}
    n_total = n_found = d_total = d_found = 0
    for ref, hyp, chunks, raw_ref, raw_hyp in zip(
        s.refs, s.hyps, s.alignments, s.raw_refs, s.raw_hyps
    ):
        rn, rd = quantities(raw_ref)
        if rn:
            hn, hd = quantities(raw_hyp)
            n_total, n_found = n_total + len(rn), n_found + _matched(rn, hn)
            d_total, d_found = d_total + len(rd), d_found + _matched(rd, hd)
        rw = ref.split()
        occurrences = find_terms(rw, index)
        inserted = [c for c in chunks if c.type == "insert"]
        if not occurrences and not inserted:
            continue
        hw = hyp.split()
        ref_op: list[str] = [""] * len(rw)
        for c in chunks:
            if c.type != "insert":
                ref_op[c.ref_start_idx : c.ref_end_idx] = [c.type] * (c.ref_end_idx - c.ref_start_idx)
        for start, end, _, cats in occurrences:
            for op in ref_op[start:end]:
                for t in (overall, *(per[c] for c in cats)):
                    t.ref_words += 1
                    t.substitutions += op == "substitute"
                    t.deletions += op == "delete"
        for tokens, cats in {(o[2], o[3]) for o in occurrences}:
            r = sum(1 for o in occurrences if o[2] == tokens)
            h = min(r, _count_sequence(hw, tokens))
            for t in (overall, *(per[c] for c in cats)):
                t.occurrences, t.recalled = t.occurrences + r, t.recalled + h
        if inserted:
            hyp_cats: dict[int, frozenset] = {}
            for start, end, _, cats in find_terms(hw, index):
                hyp_cats.update(dict.fromkeys(range(start, end), cats))
            for c in inserted:
                for j in range(c.hyp_start_idx, c.hyp_end_idx):
                    if j in hyp_cats:
                        for t in (overall, *(per[k] for k in hyp_cats[j])):
                            t.insertions += 1
    return MedicalScore(overall, per, Accuracy(n_total, n_found), Accuracy(d_total, d_found))


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


# ---------------------------------------------------------------------------------------------
# One report


def report(
    s: Score,
    *,
    resamples: int = 1000,
    seed: int = 42,
    terms: Mapping[str, Iterable[str]] | TermIndex | None = None,
    include_medical: bool = True,
    hit_token_cap: Sequence[bool] | None = None,
) -> dict:
    """Everything about a Score as a JSON-ready dict (the `medasr score --format json` object)."""
    w, c = s.word_total, s.char_total
    ci = wer_ci(s, resamples=resamples, seed=seed)
    out = {
        "normalizer": s.normalizer, "n": s.n, "wer": w.rate, "cer": c.rate,
        "wer_ci95": [ci.low, ci.high], "ci_resamples": resamples, "ci_seed": seed,
        "hits": w.hits, "substitutions": w.substitutions, "deletions": w.deletions,
        "insertions": w.insertions, "ref_words": w.ref_len, "hyp_words": w.hyp_len,
        "char_hits": c.hits, "char_substitutions": c.substitutions,
        "char_deletions": c.deletions, "char_insertions": c.insertions, "ref_chars": c.ref_len,
        "hallucination": hallucination(s, hit_token_cap).to_dict(),
    }
    if s.normalizer == "english":  # its result depends on the spelling mapping found offline
        from medasr.text import english_spelling_source

        out["english_spelling_mapping"] = english_spelling_source()
    if include_medical:
        m = medical(s, terms)
        out["medical"] = {
            "overall": m.overall.to_dict(),
            "drugs": m.drugs.to_dict(),
            "categories": {k: v.to_dict() for k, v in m.categories.items()},
            "numbers": m.numbers.to_dict(),
            "doses": m.doses.to_dict(),
        }
    return out
