"""`medasr score`: WER / CER with confidence interval, medical-term and hallucination metrics of
hypotheses against references."""

from __future__ import annotations

import argparse
from dataclasses import dataclass

NAME = "score"
HELP = "score hypotheses against references: WER, CER, 95 % CI, medical-term metrics"
DESCRIPTION = """Score hypotheses against references at corpus level.

REFS and HYPS are text files with one utterance per line (matched by line), or JSONL files
with {"id", "text"} per line (matched by id; a hypothesis record may carry "hit_token_cap").
Texts are compared as given under the chosen normaliser; references are not rewritten
(evaluation applies the written form before scoring).

normalisers:
  basic    lowercase, punctuation deleted (COVID-19 -> covid19), spaces collapsed (default)
  english  Whisper's English normaliser (Open ASR Leaderboard style)
  none     texts compared exactly as given

examples:
  medasr score --refs refs.txt --hyps hyps.txt
  medasr score --refs test.jsonl --hyps out.jsonl --normalizer english --format md
  medasr score --refs refs.txt --hyps hyps.txt --terms my_terms.txt   # category<TAB>term lines
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--refs", required=True, metavar="REFS", help="reference texts (.txt or .jsonl)")
    parser.add_argument("--hyps", required=True, metavar="HYPS", help="hypothesis texts (.txt or .jsonl)")
    parser.add_argument("--normalizer", choices=("basic", "english", "none"), default="basic",
                        help="text normaliser applied to both sides (default: basic)")
    parser.add_argument("--format", choices=("json", "md"), default="json",
                        help="json object or markdown tables (default: json)")
    parser.add_argument("--terms", metavar="FILE",
                        help="extra medical terms, one per line or category<TAB>term, added to the "
                        "built-in lexicon")
    parser.add_argument("--resamples", type=int, default=1000,
                        help="bootstrap resamples for the 95 %% CI (default: 1000)")
    parser.add_argument("--seed", type=int, default=42, help="bootstrap seed (default: 42)")


@dataclass
class Texts:
    """The utterances of one input file."""

    path: str
    texts: list[str]
    ids: list[str] | None  # None for plain text files
    token_cap: list[bool] | None  # from JSONL "hit_token_cap", when present


def _names(items: list[str], limit: int = 10) -> str:
    shown = ", ".join(items[:limit])
    return shown + (f" (and {len(items) - limit} more)" if len(items) > limit else "")


def read_texts(path: str) -> Texts:
    import json
    from pathlib import Path

    from medasr.errors import DataError

    try:
        content = Path(path).read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise DataError(f"{path} does not exist") from None
    except (OSError, UnicodeDecodeError) as err:
        raise DataError(f"cannot read {path}: {err}") from None
    # Split on "\n" only: str.splitlines would also break at U+2028 and friends inside a text.
    lines = [line.removesuffix("\r") for line in content.removesuffix("\n").split("\n")] if content else []
    first = next((line for line in lines if line.strip()), "")
    jsonl = path.endswith((".jsonl", ".json")) or first.lstrip().startswith("{")
    if not jsonl:
        return Texts(path, lines, None, None)
    records = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            raise DataError(f"{path}:{number}: not valid JSON ({err.msg})") from None
        if not isinstance(record, dict) or "text" not in record:
            raise DataError(f"{path}:{number}: expected an object with \"id\" and \"text\"")
        records.append(record)
    with_id = sum("id" in r for r in records)
    if with_id not in (0, len(records)):
        raise DataError(f"{path}: {len(records) - with_id} of {len(records)} records have no \"id\"")
    ids = [str(r["id"]) for r in records] if with_id else None
    if ids and len(set(ids)) < len(ids):
        seen: set[str] = set()
        dup = sorted({i for i in ids if i in seen or seen.add(i)})
        raise DataError(f"{path}: duplicate ids: {_names(dup)}")
    texts = [r["text"] or "" for r in records]
    if any(not isinstance(t, str) for t in texts):
        raise DataError(f"{path}: every \"text\" must be a string")
    caps = [bool(r.get("hit_token_cap")) for r in records] if any("hit_token_cap" in r for r in records) else None
    return Texts(path, texts, ids, caps)


def pair_up(refs: Texts, hyps: Texts) -> tuple[list[str], list[str], list[bool] | None]:
    """References and hypotheses in reference order: by id when both files have ids, else by
    position. Raises DataError naming what does not match."""
    from medasr.errors import DataError

    if not refs.texts:
        raise DataError(f"{refs.path}: no utterances")
    if refs.ids is not None and hyps.ids is not None:
        ref_set, hyp_set = set(refs.ids), set(hyps.ids)
        missing = [i for i in refs.ids if i not in hyp_set]
        extra = [i for i in hyps.ids if i not in ref_set]
        problems = []
        if missing:
            problems.append(f"{len(missing)} reference ids have no hypothesis in {hyps.path}: {_names(missing)}")
        if extra:
            problems.append(f"{len(extra)} hypothesis ids are not in {refs.path}: {_names(extra)}")
        if problems:
            raise DataError("; ".join(problems))
        where = {i: k for k, i in enumerate(hyps.ids)}
        order = [where[i] for i in refs.ids]
        caps = [hyps.token_cap[k] for k in order] if hyps.token_cap else None
        return refs.texts, [hyps.texts[k] for k in order], caps
    if len(refs.texts) != len(hyps.texts):
        raise DataError(
            f"{refs.path} has {len(refs.texts)} utterances but {hyps.path} has {len(hyps.texts)}: "
            "give one utterance per line in both, or JSONL with ids in both"
        )
    return refs.texts, hyps.texts, hyps.token_cap


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.2f} %"


def markdown(r: dict) -> str:
    """The report as markdown tables."""
    lo, hi = r["wer_ci95"]
    h = r["hallucination"]
    rows = [
        ("normaliser", r["normalizer"]),
        ("utterances", r["n"]),
        ("WER", f"{_pct(r['wer'])} (95 % CI {_pct(lo)} to {_pct(hi)}, {r['ci_resamples']} resamples)"),
        ("CER", _pct(r["cer"])),
        ("hits / substitutions / deletions / insertions",
         f"{r['hits']} / {r['substitutions']} / {r['deletions']} / {r['insertions']}"),
        ("reference words / characters", f"{r['ref_words']} / {r['ref_chars']}"),
        ("insertion rate", _pct(h["insertion_rate"])),
        ("empty outputs", h["empty_outputs"]),
        ("repetition loops", h["repetitions"]),
    ]
    if h["token_cap_hits"] is not None:
        rows.append(("outputs that hit the token cap", h["token_cap_hits"]))
    lines = ["| metric | value |", "| --- | --- |", *(f"| {k} | {v} |" for k, v in rows)]
    m = r.get("medical")
    if m:
        lines += ["", "| medical terms | reference words | M-WER | occurrences | recall |",
                  "| --- | --- | --- | --- | --- |"]
        for name, t in [("all", m["overall"]), *m["categories"].items()]:
            lines.append(f"| {name} | {t['ref_words']} | {_pct(t['mwer'])} | {t['occurrences']} | {_pct(t['recall'])} |")
        lines += ["", "| quantities | in references | found | accuracy |", "| --- | --- | --- | --- |"]
        for name in ("numbers", "doses"):
            q = m[name]
            lines.append(f"| {name} | {q['total']} | {q['found']} | {_pct(q['accuracy'])} |")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    import json

    from medasr.errors import UserError
    from medasr.scoring import medical, metrics
    from medasr.scoring.summary import summary

    if args.resamples < 1:
        raise UserError("--resamples must be at least 1")
    refs, hyps, caps = pair_up(read_texts(args.refs), read_texts(args.hyps))
    terms = medical.default_terms(args.terms)
    s = metrics.score(refs, hyps, args.normalizer)
    report = summary(s, resamples=args.resamples, seed=args.seed, terms=terms, hit_token_cap=caps)
    print(json.dumps(report, indent=2) if args.format == "json" else markdown(report))
    return 0
