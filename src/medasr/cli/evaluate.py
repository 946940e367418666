"""`medasr evaluate`: a model (and a baseline) over test sets -> predictions, report, chart."""

from __future__ import annotations

import argparse

from medasr.cli._common import add_decoding_arguments, add_model_arguments, add_ray_arguments, ray_options, set_threads

NAME = "evaluate"
HELP = "evaluate a model (against a baseline) on test sets: WER/CER with CIs, medical terms, report"
DESCRIPTION = """Evaluate a model, optionally against a baseline, on one or more test sets.

Datasets are local copies in any layout `medasr.data` reads (MultiMed parquet, Common Voice 17
tsv or parquet, LibriSpeech, JSONL manifests), named NAME=PATH; PATH may carry a kind: prefix
(multimed:, cv17:, librispeech:, manifest:). References are put in the seed's written form;
clips over 30 s and empty references are dropped and counted.

Written to --output-dir:
  predictions/{model,baseline}__NAME.jsonl   one line per row, appended as produced
  report.md, report.json                     the seed's table with 95 % CIs and paired p-values,
                                             duration buckets, medical terms, hallucination
                                             indicators, reproducibility record
  wer.png                                    WER per dataset and system with CI bars
  run.json                                   the settings the predictions were made with

An interrupted run resumes: rerun the same command and rows already in predictions/ are kept.
Rerunning a finished one only rebuilds the report (e.g. with another --normalizer).
Under torchrun each process transcribes rows RANK, RANK+WORLD_SIZE, ... on its own GPU and
rank 0 writes the report once all parts are complete. With --ray the rows are transcribed as a
Ray Data job instead (CPU tasks decode, --workers model replicas transcribe; docs/scale.md),
into the same predictions files.

examples:
  medasr evaluate --model yuriyvnv/Qwen3-ASR-1.7B-EN-Medical --baseline Qwen/Qwen3-ASR-1.7B \\
      --dataset multimed=data/MultiMed --dataset cv17=data/common_voice_17_0 --output-dir eval/
  medasr evaluate --model ./my-finetune --dataset clinic=manifest:clinic/test.jsonl --limit 200 \\
      --output-dir eval-clinic/
  torchrun --nproc-per-node 8 -m medasr evaluate --model M --baseline M0 --dataset cv17=DIR --output-dir eval/
  medasr evaluate --model M --dataset cv17=DIR --output-dir eval/ --ray auto --workers 8
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_model_arguments(p)
    p.add_argument("--baseline", default=None, metavar="MODEL",
                   help="the zero-shot system to compare with (hub id or local directory); "
                   "its columns and the paired test appear in the report")
    add_decoding_arguments(p)
    g = p.add_argument_group("data")
    g.add_argument("--dataset", action="append", required=True, metavar="NAME=PATH",
                   help="a test set: a name (letters, digits, _ and -) and its local path; repeatable")
    g.add_argument("--split", default="test", help="split to evaluate (default: test)")
    g.add_argument("--limit", type=int, default=None, metavar="N",
                   help="only the first N rows of each dataset (before dropping)")
    g = p.add_argument_group("scoring")
    g.add_argument("--normalizer", choices=("basic", "english", "none"), default="basic",
                   help="normaliser for WER/CER: basic (lowercase, no punctuation: the seed's "
                   "protocol), english (Whisper's), none (default: basic)")
    g.add_argument("--terms", metavar="FILE",
                   help="extra medical terms, one per line or category<TAB>term, added to the lexicon")
    g.add_argument("--resamples", type=int, default=1000,
                   help="bootstrap resamples for the CIs and the paired test (default: 1000)")
    g.add_argument("--seed", type=int, default=42, help="bootstrap seed (default: 42)")
    p.add_argument("--output-dir", required=True, metavar="DIR", help="where predictions and reports go")
    add_ray_arguments(p)


def _command() -> str:
    import shlex
    import sys
    from pathlib import Path

    argv = list(sys.argv)
    if argv and (Path(argv[0]).name == "medasr" or Path(argv[0]).parent.name in ("medasr", "cli")):
        argv[0] = "medasr"  # `python -m medasr` puts the path of __main__.py here
    return shlex.join(argv)


def _model_id(model: str) -> str:
    """Local directories as absolute paths: the report names them, and a resumed run launched from
    another folder must still match the predictions it continues."""
    from pathlib import Path

    path = Path(model).expanduser()
    return str(path.resolve()) if path.is_dir() else model


def run(args: argparse.Namespace) -> int:
    set_threads(args.threads)  # before torch starts its thread pool
    from medasr.errors import UserError
    from medasr.model.prompt import normalize_language
    from medasr.scoring.evaluate import evaluate
    from medasr.scoring.spec import EvalConfig, parse_dataset_arg

    for flag, value, low in (("--batch-size", args.batch_size, 1), ("--resamples", args.resamples, 1),
                             ("--limit", args.limit, 1), ("--max-new-tokens", args.max_new_tokens, 1)):
        if value is not None and value < low:
            raise UserError(f"{flag} must be at least {low}")
    try:
        language = normalize_language(args.language)
    except ValueError as err:
        raise UserError(str(err)) from None
    specs = [parse_dataset_arg(d) for d in args.dataset]
    names = [s.name for s in specs]
    if len(set(names)) < len(names):
        raise UserError(f"--dataset names must differ: {', '.join(sorted({n for n in names if names.count(n) > 1}))}")
    options = {k: v for k, v in vars(args).items() if not k.startswith("_") and k != "command"}
    cfg = EvalConfig(
        model=_model_id(args.model), baseline=args.baseline and _model_id(args.baseline), datasets=specs, output_dir=args.output_dir,
        split=args.split, limit=args.limit, normalizer=args.normalizer, terms=args.terms,
        batch_size=args.batch_size, max_new_tokens=args.max_new_tokens, language=language,
        context=args.context, max_context_tokens=args.max_context_tokens, device=args.device, dtype=args.dtype,
        quantize=args.quantize, resamples=args.resamples,
        seed=args.seed, command=_command(), options=options,
    )
    ray = ray_options(args)
    if ray is None:
        result = evaluate(cfg)
    else:
        from dataclasses import replace

        from medasr.scale.cluster import connect
        from medasr.scale.evaluate import transcribe_system

        with connect(ray) as settled:
            result = evaluate(replace(cfg, ray=settled), remote=transcribe_system)
    if result is not None:
        from medasr.scoring.report import results_table

        print(results_table(result))
        print(f"\nreport: {args.output_dir}/report.md (also report.json, wer.png; predictions/)")
    return 0
