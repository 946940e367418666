"""Everything about a scored corpus as one JSON-ready dict: the `medasr score --format json`
object and each system's row of the evaluation report."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from medasr.scoring.medical import TermIndex, medical
from medasr.scoring.metrics import Score, hallucination, wer_ci


def summary(
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
        from medasr.text.normalize import english_spelling_source

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
