"""Medical-term metrics: term recall and M-WER per category (drugs, conditions, ...), and the
numbers and doses a transcript must get exactly right. Terms are normalised the way texts are,
so "Crohn's disease" matches "crohns disease"; a user file adds categories (`default_terms`)."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from medasr.scoring.metrics import Score
from medasr.text.normalize import Normalizer, get_normalizer

# Categories of the default lexicon that are medical terms in the M-WER sense (Omi Health's
# categories plus lab names). Its other categories (units, frequencies, routes, findings) are
# phrases for speech synthesis; they would count words like "a" or "daily" as medical.
TERM_CATEGORIES = ("drugs", "conditions", "symptoms", "anatomy", "procedures", "labs")


def default_terms(extra_file: str | Path | None = None) -> dict[str, set[str]]:
    """The lexicon's medical-term categories (TERM_CATEGORIES) plus every category of a user
    file (`term` per line, or `category<TAB>term`; plain terms go to "custom")."""
    from medasr.text.lexicon import LEXICON, medical_terms  # lazy: only term metrics need it

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
