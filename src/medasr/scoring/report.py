"""The evaluation report: scores of the predictions `medasr.scoring.evaluate` wrote, as report.json,
report.md (the seed's results table plus the detail behind it) and a WER chart.

Markdown and chart are rendered from the JSON object alone, so the three never disagree.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import logging
import platform
import sys
from collections import Counter
from pathlib import Path

import numpy as np

from medasr.scoring import medical, metrics
from medasr.scoring.spec import SYSTEMS
from medasr.scoring.summary import summary

log = logging.getLogger(__name__)

# (low, high, label): a clip of d seconds goes to the first bucket with d < high; 30 s itself
# (still kept) to the last.
BUCKETS = ((0.0, 5.0, "<5 s"), (5.0, 10.0, "5-10 s"), (10.0, 20.0, "10-20 s"), (20.0, 30.0, "20-30 s"))
HASH_NOTE = ("sha256 of the dataset's manifest / tsv / parquet files. Parquet shards embed their "
             "audio and are hashed whole (this equals the hub's LFS sha256); loose audio files and "
             "tar shards of audio are not hashed.")
VERSIONS = ("medasr", "torch", "transformers", "jiwer", "numpy", "tokenizers", "matplotlib")


def bucket_of(duration: float | None) -> str:
    if duration is None:
        return "unknown"
    return next((label for _, high, label in BUCKETS if duration < high), BUCKETS[-1][2])


# ------------------------------------------------------------------------------ scoring
def _select(rows, preds: dict[str, dict[str, dict]], norm) -> tuple[list, dict]:
    """The rows every system has a hypothesis for, and the others counted by reason."""
    kept, reasons, examples = [], Counter(), {}
    for row in rows:
        recs = {s: p.get(row.id) for s, p in preds.items()}
        reason = row.dropped
        for rec in recs.values():
            if reason:
                break
            if rec is None:
                reason = "no prediction"
            elif rec.get("dropped"):
                reason = rec["dropped"]
            elif rec.get("error"):
                reason = "audio could not be decoded"
        if not reason and not norm.words(row.reference).strip():
            reason = f"reference empty after {norm.name} normalisation"
        if reason:
            reasons[reason] += 1
            examples.setdefault(reason, []).append(row.id)
        else:
            kept.append((row, recs))
    dropped = {r: {"count": n, "examples": examples[r][:10]} for r, n in reasons.most_common()}
    return kept, dropped


def _ci(errors: np.ndarray, ref_lens: np.ndarray, cfg) -> list[float]:
    ci = metrics.bootstrap_ci(errors, ref_lens, resamples=cfg.resamples, seed=cfg.seed)
    return [ci.low, ci.high]


def _score_system(refs, hyps, caps, buckets, norm, index, cfg) -> tuple[metrics.Score, dict]:
    s = metrics.score(refs, hyps, norm)
    out = summary(s, resamples=cfg.resamples, seed=cfg.seed, terms=index, hit_token_cap=caps)
    char_err = np.array([c.errors for c in s.chars], np.int64)
    char_ref = np.array([c.ref_len for c in s.chars], np.int64)
    out["cer_ci95"] = _ci(char_err, char_ref, cfg)
    raw = metrics.score(refs, hyps, "none")  # cased and punctuated, as the model writes
    out["raw_wer"], out["raw_cer"] = raw.wer, raw.cer
    errors, ref_lens = s.word_arrays()
    out["buckets"] = {}
    for label in [b[2] for b in BUCKETS] + ["unknown"]:
        idx = np.array([i for i, b in enumerate(buckets) if b == label], np.int64)
        if len(idx):
            total = metrics.ErrorCounts.total(s.words[i] for i in idx)
            out["buckets"][label] = {"samples": len(idx), "ref_words": total.ref_len, "wer": total.rate,
                                     "wer_ci95": _ci(errors[idx], ref_lens[idx], cfg)}
    return s, out


def build(cfg, datasets, predictions, norm, terms, run: dict) -> dict:
    """The report object. `datasets`: [(DatasetSpec, rows)]; `predictions`: name -> system -> id -> record."""

    index = medical.build_term_index(terms, norm)
    systems = cfg.systems()
    out = {
        "title": "medasr evaluation",
        "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "normalizer": {"name": norm.name, "description": norm.description},
        "references": "written form (the seed's score_written_form) of the dataset text; raw text kept in the predictions",
        "bootstrap": {"resamples": cfg.resamples, "seed": cfg.seed, "level": 0.95},
        "systems": {s: {"role": SYSTEMS[s], "model": m} for s, m in systems.items()},
        "datasets": {},
    }
    for spec, rows in datasets:
        kept, dropped = _select(rows, predictions[spec.name], norm)
        refs = [row.reference for row, _ in kept]
        buckets = [bucket_of(next(iter(recs.values())).get("duration")) for _, recs in kept]
        entry = {"spec": spec.spec, "split": cfg.split, "rows": len(rows), "samples": len(kept),
                 "dropped": dropped, "systems": {}, "comparison": None}
        scores = {}
        for system in systems:
            hyps = [recs[system]["hypothesis"] or "" for _, recs in kept]
            caps = [bool(recs[system].get("hit_token_cap")) for _, recs in kept]
            scores[system], entry["systems"][system] = _score_system(refs, hyps, caps, buckets, norm, index, cfg)
        if "baseline" in scores:
            cmp = metrics.paired_bootstrap(scores["model"], scores["baseline"], resamples=cfg.resamples, seed=cfg.seed)
            entry["comparison"] = {
                "delta_wer": cmp.delta, "delta_wer_ci95": [cmp.delta_ci.low, cmp.delta_ci.high],
                "p_value": cmp.p_value, "delta_cer": scores["model"].cer - scores["baseline"].cer,
                "test": "paired bootstrap over utterances, two-sided; delta = fine-tuned - zero-shot",
            }
        out["datasets"][spec.name] = entry
    out["reproducibility"] = reproducibility(cfg, datasets, run)
    return out


# ------------------------------------------------------------------------------ reproducibility
def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def dataset_files(spec, split: str) -> tuple[str, list[Path]]:
    """The dataset's kind and its text-bearing files (manifest, tsv, parquet, trans.txt)."""
    from medasr.data import detect, find_tsv, parquet_files

    kind, path = spec.kind_and_path
    kind = kind or detect(path, split)
    if kind == "manifest":
        if path.is_dir():
            path = path / f"{split}.jsonl" if (path / f"{split}.jsonl").is_file() else path / "manifest.jsonl"
        return kind, [path]
    if kind == "multimed":
        return kind, parquet_files(path / "English" if (path / "English").is_dir() else path, split)
    if kind == "cv17":
        tsv = find_tsv(path, split)
        if tsv is not None:
            extra = tsv.parent / "clip_durations.tsv"
            return kind, [tsv] + ([extra] if extra.is_file() else [])
        return kind, parquet_files(path / "en" if (path / "en").is_dir() else path, split)
    base = path / split if (path / split).is_dir() else path
    return kind, sorted(base.rglob("*.trans.txt"))


def environment() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    versions = {}
    for name in VERSIONS:
        try:
            versions[name] = version(name)
        except PackageNotFoundError:
            versions[name] = None
    env = {"versions": versions, "python": platform.python_version(), "platform": platform.platform()}
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        env["gpu"] = torch.cuda.get_device_name(0)
        env["cuda"] = torch.version.cuda
    return env


def reproducibility(cfg, datasets, run: dict) -> dict:
    records = {}
    for spec, rows in datasets:
        kind, files = dataset_files(spec, cfg.split)
        records[spec.name] = {
            "spec": spec.spec, "kind": kind, "split": cfg.split, "limit": cfg.limit, "rows_read": len(rows),
            "files": [{"path": str(f.resolve()), "bytes": f.stat().st_size, "sha256": sha256(f)} for f in files],
        }
    return {
        "command": cfg.command,
        "options": cfg.options,
        **environment(),
        "device": run["device"],
        "dtype": run["dtype"],
        "world_size": run["world_size"],
        "batch_size": cfg.batch_size,
        "decoding": {"language": cfg.language, "context": cfg.context, "greedy": True,
                     "max_new_tokens": cfg.max_new_tokens or "per batch: min(512, 32 + 20 tokens/s of audio)",
                     "max_duration_s": 30.0},
        "transcribed_now": run["transcribed_now"],
        "datasets": records,
        "hash_note": HASH_NOTE,
    }


# ------------------------------------------------------------------------------ rendering
def _pct(x) -> str:
    return "n/a" if x is None else f"{100 * x:.2f}"


def _with_ci(x, ci) -> str:
    return f"{_pct(x)} [{_pct(ci[0])}, {_pct(ci[1])}]"


def _roles(r: dict) -> list[str]:
    return [s for s in ("baseline", "model") if s in r["systems"]]


def results_table(r: dict) -> str:
    """The seed's table: Test set | Samples | Zero-shot WER | Fine-tuned WER | Δ WER | Zero-shot
    CER | Fine-tuned CER (one system: Test set | Samples | WER | CER)."""
    pair = "baseline" in r["systems"]
    head = (["Test set", "Samples", "Zero-shot WER", "Fine-tuned WER", "Δ WER", "Zero-shot CER", "Fine-tuned CER"]
            if pair else ["Test set", "Samples", "WER", "CER"])
    lines = ["| " + " | ".join(head) + " |", "| --- |" + " ---: |" * (len(head) - 1)]
    for name, d in r["datasets"].items():
        s = d["systems"]
        cells = [f"{name} ({d['split']})", f"{d['samples']:,}"]
        if not d["samples"]:  # nothing scored: a 0.00 would read as a perfect result
            cells += ["n/a"] * (len(head) - 2)
        elif pair:
            c = d["comparison"]
            lo, hi = c["delta_wer_ci95"]
            delta = f"{100 * c['delta_wer']:+.2f} [{100 * lo:+.2f}, {100 * hi:+.2f}], p = {c['p_value']:.3f}"
            cells += [_with_ci(s["baseline"]["wer"], s["baseline"]["wer_ci95"]),
                      _with_ci(s["model"]["wer"], s["model"]["wer_ci95"]), delta,
                      _with_ci(s["baseline"]["cer"], s["baseline"]["cer_ci95"]),
                      _with_ci(s["model"]["cer"], s["model"]["cer_ci95"])]
        else:
            cells += [_with_ci(s["model"]["wer"], s["model"]["wer_ci95"]),
                      _with_ci(s["model"]["cer"], s["model"]["cer_ci95"])]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _table(head: list[str], rows: list[list]) -> list[str]:
    return ["| " + " | ".join(head) + " |", "| --- |" + " ---: |" * (len(head) - 1),
            *("| " + " | ".join(str(c) for c in row) + " |" for row in rows), ""]


def markdown(r: dict) -> str:
    roles = _roles(r)
    label = {s: f"{r['systems'][s]['role']} ({s})" for s in roles}
    b = r["bootstrap"]
    out = [f"# {r['title']}", "",
           f"Normaliser: **{r['normalizer']['name']}** ({r['normalizer']['description']}), applied to "
           f"references and hypotheses. References: {r['references']}. Corpus-level WER / CER in %, "
           f"with 95 % bootstrap confidence intervals ({b['resamples']} resamples of utterances, seed "
           f"{b['seed']})" + ("; Δ WER = fine-tuned - zero-shot with a paired bootstrap p-value." if
                              "baseline" in roles else "."), "",
           results_table(r), ""]
    out += [f"- {label[s]}: `{r['systems'][s]['model']}`" for s in roles] + [""]
    for name, d in r["datasets"].items():
        s = d["systems"]
        out += [f"## {name} ({d['split']})", "",
                f"{d['rows']:,} rows read, {d['samples']:,} scored, {d['rows'] - d['samples']:,} dropped.", ""]
        if d["dropped"]:
            out += _table(["dropped because", "rows", "examples"],
                          [[k, v["count"], ", ".join(v["examples"][:3])] for k, v in d["dropped"].items()])
        out += ["### Errors", ""] + _table(
            ["system", "ref words", "hits", "S", "D", "I", "WER", "CER", "unnormalised WER", "unnormalised CER"],
            [[label[k], s[k]["ref_words"], s[k]["hits"], s[k]["substitutions"], s[k]["deletions"],
              s[k]["insertions"], _pct(s[k]["wer"]), _pct(s[k]["cer"]), _pct(s[k]["raw_wer"]),
              _pct(s[k]["raw_cer"])] for k in roles])
        labels = list(s[roles[0]]["buckets"])
        out += ["### WER by clip duration", ""] + _table(
            ["duration", "samples", "ref words", *(f"{label[k]} WER" for k in roles)],
            [[lb, s[roles[0]]["buckets"][lb]["samples"], s[roles[0]]["buckets"][lb]["ref_words"],
              *(_with_ci(s[k]["buckets"][lb]["wer"], s[k]["buckets"][lb]["wer_ci95"]) for k in roles)]
             for lb in labels])
        rows = []
        for k in roles:
            m = s[k]["medical"]
            rows.append([label[k], m["overall"]["occurrences"], _pct(m["overall"]["recall"]),
                         m["overall"]["ref_words"], _pct(m["overall"]["mwer"]), m["drugs"]["occurrences"],
                         _pct(m["drugs"]["recall"]), _pct(m["drugs"]["mwer"]),
                         f"{_pct(m['numbers']['accuracy'])} ({m['numbers']['found']}/{m['numbers']['total']})",
                         f"{_pct(m['doses']['accuracy'])} ({m['doses']['found']}/{m['doses']['total']})"])
        out += ["### Medical terms", ""] + _table(
            ["system", "term occurrences", "term recall", "term words", "M-WER", "drug occurrences",
             "drug recall", "drug M-WER", "number accuracy", "dose accuracy"], rows)
        out += ["### Hallucination indicators", ""] + _table(
            ["system", "insertion rate", "empty outputs", "hit token cap", "repetition loops"],
            [[label[k], _pct(s[k]["hallucination"]["insertion_rate"]), s[k]["hallucination"]["empty_outputs"],
              s[k]["hallucination"]["token_cap_hits"], s[k]["hallucination"]["repetitions"]] for k in roles])
    out += _reproducibility_md(r["reproducibility"])
    return "\n".join(out).rstrip() + "\n"


def _reproducibility_md(p: dict) -> list[str]:
    dec = p["decoding"]
    out = ["## Reproducibility", "", f"- command: `{p['command']}`",
           "- versions: " + ", ".join(f"{k} {v}" for k, v in p["versions"].items() if v),
           f"- python {p['python']} on {p['platform']}" + (f", GPU {p['gpu']} (CUDA {p['cuda']})" if p.get("gpu") else ""),
           f"- device {p['device']}, dtype {p['dtype']}, batch size {p['batch_size']}, processes {p['world_size']}",
           (f"- decoding: greedy, language {dec['language']}, context {dec['context']!r}, max_new_tokens "
            f"{dec['max_new_tokens']}, clips over {dec['max_duration_s']:g} s dropped"),
           f"- rows transcribed by this invocation: {json.dumps(p['transcribed_now']) if p['transcribed_now'] else 'none (all resumed)'}",
           "", f"Dataset files ({p['hash_note']})", ""]
    for name, d in p["datasets"].items():
        limit = f", first {d['limit']} rows" if d["limit"] else ""
        out.append(f"- {name}: `{d['spec']}` ({d['kind']}, split {d['split']}{limit}, {d['rows_read']:,} rows read)")
        for f in d["files"][:10]:
            out.append(f"  - `{f['path']}` {f['bytes']:,} bytes, sha256 `{f['sha256']}`")
        if len(d["files"]) > 10:
            out.append(f"  - ... and {len(d['files']) - 10} more files (see report.json)")
    return out + [""]


def chart(r: dict, path: Path) -> Path:
    """Grouped bars: WER per dataset and system, with the 95 % confidence interval as error bars."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names, roles = list(r["datasets"]), _roles(r)
    width = 0.8 / len(roles)
    fig, ax = plt.subplots(figsize=(max(4.0, 1.6 * len(names) + 2), 3.6))
    for k, role in enumerate(roles):
        stats = [r["datasets"][n]["systems"][role] for n in names]
        wer = np.array([100 * s["wer"] for s in stats])
        err = np.array([[w - 100 * s["wer_ci95"][0], 100 * s["wer_ci95"][1] - w] for w, s in zip(wer, stats)]).T
        x = np.arange(len(names)) + (k - (len(roles) - 1) / 2) * width
        ax.bar(x, wer, width, yerr=err, capsize=4, label=f"{r['systems'][role]['role']} ({role})")
    ax.set_xticks(np.arange(len(names)), names)
    ax.set_ylabel("WER (%)")
    ax.set_title(f"WER per test set, 95 % CI (normaliser: {r['normalizer']['name']})", fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def write(r: dict, out_dir: Path) -> dict[str, Path]:
    """report.json, report.md and wer.png in `out_dir`; each file appears only once complete."""
    out_dir = Path(out_dir)
    paths = {"json": out_dir / "report.json", "md": out_dir / "report.md", "png": out_dir / "wer.png"}
    for kind, text in (("json", json.dumps(r, indent=2, ensure_ascii=False) + "\n"), ("md", markdown(r))):
        partial = paths[kind].with_name(paths[kind].name + ".partial")
        partial.write_text(text, encoding="utf-8")
        partial.replace(paths[kind])
    try:
        chart(r, out_dir / "wer.partial.png").replace(paths["png"])
    except ImportError:  # never lose hours of scoring to a missing plotting library
        log.warning("matplotlib is not installed: no wer.png (pip install matplotlib)")
        del paths["png"]
    return paths
