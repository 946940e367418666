"""`medasr demo`: speak held-out medical sentences with espeak-ng and transcribe them."""

from __future__ import annotations

import argparse

from medasr.defaults import QUANTIZE

NAME = "demo"
HELP = "transcribe synthetic held-out medical sentences, a context example and silence with the demo model"
DESCRIPTION = """Speak sentences no training sentence comes from with espeak-ng's default English
voices at default speed, transcribe them, and print reference, hypothesis and normalised WER
(lowercase, punctuation deleted), then the corpus WER. Without --set: a few held-out sentences
of the templates the model was trained on (what it knows), of held-out templates and documents
(what it does not: today it answers with its own templates), a drug name the model never heard
without and with it in --context, word timestamps from the demo forced aligner, and silence and noise through `medasr transcribe` (speech
detection first: empty) beside what the model alone would invent.

Sets (--set): heldout (held-out sentences of the training sources), templates (held-out
clinical templates), documents (held-out WordNet files), independent (30 sentences written by
hand), legacy (the first demo model's template sentences), context (held-out drug names:
recall without and with the right names in the context, WER with an unrelated one), silence
(silence, noise, hum, clicks and 0.2 s clips, which must come back empty).

The bundled demo model is a small Qwen3-ASR trained on synthetic speech (docs/demo-model.md):
it shows the pipeline end to end, it is no clinical recogniser.

examples:
  medasr demo
  medasr demo --set templates --n 100 --quiet      # a figure of docs/demo-model.md
  medasr demo --set context --n 50
  medasr demo --model ./my-checkpoint --set independent --voices en-us
"""

CHOICES = ("heldout", "templates", "documents", "independent", "legacy", "context", "silence")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default="demo", help="model to run (default: demo, the bundled demo model)")
    p.add_argument("--set", dest="set_name", choices=CHOICES, default=None,
                   help="one evaluation set (default: a short tour of novel sentences, context and silence)")
    p.add_argument("--n", type=int, default=3, help="sentences per voice (default: 3)")
    p.add_argument("--voices", default="en,en-us", metavar="V1,V2",
                   help="espeak-ng voices (default: en,en-us, the default English voices)")
    p.add_argument("--seed", type=int, default=None, help="sentence seed (default: the evaluation seed)")
    p.add_argument("--context", default=None, help="context (hotwords) for every clip of a sentence set")
    p.add_argument("--device", default="cpu", help="cpu, cuda or auto (default: cpu)")
    p.add_argument("--quantize", default="none", choices=QUANTIZE,
                   help="int8: int8 linear layers with int8 activations (CPU; docs/performance.md) (default: none)")
    p.add_argument("--quiet", action="store_true", help="print only the figures")


def run(args: argparse.Namespace) -> int:
    from medasr.errors import UserError
    from medasr.train import demo
    from medasr.transcribe import load_model

    if args.n < 1:
        raise UserError("--n must be at least 1")
    voices = [v.strip() for v in args.voices.split(",") if v.strip()]
    if not voices:
        raise UserError("--voices: give at least one espeak-ng voice")
    seed = demo.EVAL_SEED if args.seed is None else args.seed
    asr = load_model(args.model, device=args.device, quantize=args.quantize)
    if args.set_name is None:
        return _tour(asr, voices, seed, args.n)
    if args.set_name == "context":
        return _context(asr, voices, seed, args.n, args.quiet)
    if args.set_name == "silence":
        return _silence(asr, args.quiet)
    sentences = demo.set_sentences(args.set_name, args.n, seed)
    results, total = demo.run_demo(args.model, voices=voices, sentences=sentences, context=args.context, asr=asr)
    if not args.quiet:
        _show(results)
    print(f"{args.set_name}: corpus WER {100 * total:.1f} % over {len(results)} clips ({', '.join(voices)}; "
          "normalised: lowercase, punctuation deleted)")
    return 0


def _show(results) -> None:
    for r in results:
        print(f"[{r.voice}] WER {100 * r.wer:5.1f} %")
        print(f"  reference:  {r.reference}")
        print(f"  hypothesis: {r.hypothesis}")


def _tour(asr, voices, seed: int, n: int) -> int:
    from medasr.train import demo

    for name, title in (("legacy", "held-out sentences of the templates it was trained on"),
                        ("templates", "novel sentences: held-out clinical templates"),
                        ("documents", "novel sentences: held-out WordNet files")):  # fmt: skip
        results, total = demo.run_demo(voices=voices[:1], sentences=demo.set_sentences(name, n, seed), asr=asr)
        print(f"== {title} ({voices[0]})")
        _show(results)
        print(f"corpus WER {100 * total:.1f} %\n")
    check = demo.context_check(n=1, voices=voices[:1], seed=seed, asr=asr)
    reference, bare, with_context, context = check.examples[0]
    print(f"== context: a drug name the model never heard ({voices[0]})")
    print(f"  reference:       {reference}")
    print(f"  no context:      {bare}")
    print(f"  --context \"{context}\":")
    print(f"                   {with_context}\n")
    _words(asr, voices[0], seed)
    print("== silence and noise: what medasr transcribe answers (speech detection first), and the model alone")
    clips = demo.silence_clips()
    piped = asr.transcribe([(samples, 16000) for _, samples in clips])
    rows = demo.silence_check(asr=asr, contexts=(None,))
    for (name, _), t, (_, _, raw) in zip(clips, piped, rows[: len(rows) // 2]):
        print(f"  {name:32s} -> {t.text!r:4s} (the model alone: {raw!r})")
    return 0


def _words(asr, voice: str, seed: int) -> None:
    """Word timestamps with the demo aligner on two sentences of templates it never trained on,
    beside the word times espeak-ng reports for its own speech."""
    import random
    import statistics

    import yaml

    from medasr.defaults import LOW_CONFIDENCE, SAMPLE_RATE
    from medasr.model.aligner import DEMO_ALIGNER_DIR
    from medasr.train.aligner_data import heldout_pool, heldout_templates, speak_sentences

    meta = yaml.safe_load((DEMO_ALIGNER_DIR / "recipe.yaml").read_text(encoding="utf-8"))
    texts = heldout_pool(2, meta.get("heldout_templates") or heldout_templates(meta["heldout_every"]), seed=seed)
    spoken = speak_sentences(texts, random.Random(seed), voice, 175, 50, pause_s=(0.8, 1.2), edge_silence_s=0.5)
    t = asr.transcribe((spoken.samples, SAMPLE_RATE), timestamps="word", aligner="demo")[0]
    print(f"== word timestamps: the demo aligner on sentences of templates it never trained on ({voice})")
    print(f"  reference: {spoken.text}\n  transcript: {t.text}")
    for warning in t.warnings:
        print(f"  warning: {warning}")
    same = t.words and [w.word for w in t.words] == spoken.text.split() and len(spoken.times) == len(t.words)
    for k, w in enumerate(t.words or []):
        truth = f"   espeak-ng {spoken.times[k][0]:5.2f}-{spoken.times[k][1]:5.2f}" if same else ""
        p = "" if w.probability is None else f"  p {w.probability:.2f}{' (low)' if w.probability < LOW_CONFIDENCE else ''}"
        print(f"  {w.start:5.2f}-{w.end:5.2f}  {w.word:24s}{truth}{p}")
    if same:
        errors = [abs(a - b) for w, (s, e) in zip(t.words, spoken.times) for a, b in ((w.start, s), (w.end, e))]
        print(f"  mean word-boundary error {1000 * statistics.fmean(errors):.0f} ms")
    print()


def _context(asr, voices, seed: int, n: int, quiet: bool) -> int:
    from medasr.train import demo

    check = demo.context_check(n=n, voices=voices, seed=seed, asr=asr)
    if not quiet:
        for reference, bare, with_context, context in check.examples:
            print(f"  reference:    {reference}\n  no context:   {bare}\n  with context: {with_context}\n"
                  f"  (context: {context})")
    print(f"context: held-out drug recall {100 * check.recall_without:.1f} % without context, "
          f"{100 * check.recall_with:.1f} % with the names in the context; WER {100 * check.wer_without:.1f} % "
          f"without, {100 * check.wer_with:.1f} % with, {100 * check.wer_unrelated:.1f} % with an unrelated "
          f"context ({check.clips} clips, {', '.join(voices)})")
    return 0


def _silence(asr, quiet: bool) -> int:
    from medasr.train import demo

    rows = demo.silence_check(asr=asr)
    spoken = [(name, ctx, text) for name, ctx, text in rows if text.strip()]
    if not quiet:
        for name, ctx, text in rows:
            print(f"  {name:32s} context={ctx or '-':32s} -> {text!r}")
    print(f"silence: {len(rows) - len(spoken)} of {len(rows)} non-speech clips came back empty "
          "(silence, noise, hum, clicks; 5 s and 0.2 s; with and without a context; language forced and detected)")
    return 0 if not spoken else 1
