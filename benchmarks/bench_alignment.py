#!/usr/bin/env python
"""Word-boundary error of a forced aligner on held-out synthetic speech, and its cost as a share
of transcription time.

Held out (medasr.train.aligner_data): sentences of the synth held-out split made by the held-out
templates (synth.TEMPLATES[4::5]); the demo aligner never saw these sentences nor these templates
(the lexicon is shared). Spoken by espeak-ng's default English voices (en, en-us) at default speed
and pitch, as `medasr demo` does, with exact word times from libespeak-ng's word events
(medasr.synth.words); no noise.

- sentences: each sentence alone (0-0.5 s of silence at each end), one piece each;
- dictations: 10 sentences in turn with 0.8-2.5 s pauses (~35-40 s), aligned whole by
  `medasr.pipeline.align.align` (speech detection, pieces of at most 30 s, words shared out among them).

Error per word boundary: |predicted - true| for start and end; reported as the mean over all
boundaries (ms), the median, and the share within 80 ms (one bin) and 200 ms. `raw` is the
aligner's own output; `final` has zero-length words widened (what medasr outputs). `spread` is the
baseline without an aligner: each piece's words spread over it in proportion to their characters
(the pieces and the words in each exactly as `align` makes them), which is how subtitles are
timed when there are no word times.

Cost: the same clips transcribed by the ASR model (`--model`) and aligned with their reference
text; both timed in this run, one after the other, with the same torch threads. The share is
align time / transcribe time (the aligner runs after the transcriber on the same pieces).

    python benchmarks/bench_alignment.py --aligner demo --model demo --sentences 40 --dictations 4 --threads 1
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time


def errors(words, times) -> list[float]:
    if len(words) != len(times):
        raise SystemExit(f"{len(words)} aligned words for {len(times)} reference words")
    return [abs(p - t) * 1000 for w, (a, b) in zip(words, times) for p, t in ((w.start, a), (w.end, b))]


def summary(errs: list[float]) -> str:
    within = lambda ms: 100 * sum(e <= ms + 1e-6 for e in errs) / len(errs)
    return (f"mean {statistics.fmean(errs):6.1f} ms  median {statistics.median(errs):6.1f} ms  "
            f"<=80 ms {within(80):5.1f} %  <=200 ms {within(200):5.1f} %  ({len(errs)} boundaries)")


def spread(aligner, samples, text):
    """No aligner: words spread over their piece by characters, pieces as `medasr.pipeline.align.align` cuts them."""
    from medasr.audio.vad import VadOptions, pieces
    from medasr.output.subtitles import interpolated_words
    from medasr.pipeline.align import capacity, share_out, split_units
    from medasr.records import Segment
    from medasr.transcribe import MAX_PIECE_S

    duration = len(samples) / 16000
    if duration <= MAX_PIECE_S:
        return interpolated_words(Segment(0.0, duration, text))
    found = pieces(samples, VadOptions(max_piece_s=MAX_PIECE_S))
    units = split_units(aligner.processor, text)
    texts = share_out(units, [sum(b - a for a, b in p.regions) for p in found], [capacity(aligner, p.duration) for p in found])
    return [w for p, t in zip(found, texts) for w in interpolated_words(Segment(p.start, p.end, t))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--aligner", default="demo")
    parser.add_argument("--model", default="demo", help="ASR model for the cost comparison")
    parser.add_argument("--sentences", type=int, default=40, help="held-out sentences (each spoken by both voices)")
    parser.add_argument("--dictations", type=int, default=4, help="10-sentence recordings per voice")
    parser.add_argument("--voices", default="en,en-us")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=2024)
    parser.add_argument("--heldout-every", type=int, default=None, help="default: the aligner's recipe.yaml, else 5")
    args = parser.parse_args()

    import torch
    import yaml

    from medasr.model.aligner import load_aligner
    from medasr.pipeline.align import align, align_pieces
    from medasr.records import Segment
    from medasr.train.aligner_data import heldout_pool, heldout_templates, speak_sentences
    from medasr.transcribe import load_model

    torch.set_num_threads(args.threads)
    aligner = load_aligner(args.aligner, device="cpu", dtype="float32")
    recipe = aligner.path / "recipe.yaml"
    meta = yaml.safe_load(recipe.read_text()) if recipe.exists() else {}
    held = meta.get("heldout_templates") or heldout_templates(args.heldout_every or meta.get("heldout_every", 5))
    voices = args.voices.split(",")
    texts = heldout_pool(args.sentences + 10 * args.dictations, held, seed=args.seed)
    singles_text, dictation_texts = texts[: args.sentences], texts[args.sentences :]
    print(f"aligner {aligner.path} ({aligner.format}); {len(held)} held-out templates; voices {voices}")

    rng = random.Random(args.seed)
    singles = [(v, speak_sentences([t], rng, v, 175, 50, edge_silence_s=0.5)) for v in voices for t in singles_text]
    dictations = [
        (v, speak_sentences(dictation_texts[10 * i : 10 * i + 10], rng, v, 175, 50, pause_s=(0.8, 2.5), edge_silence_s=0.5))
        for v in voices for i in range(args.dictations)
    ]  # fmt: skip
    if dictations:
        lengths = [len(d.samples) / 16000 for _, d in dictations]
        print(f"{len(singles)} sentences ({sum(len(s.samples) for _, s in singles) / 16000:.0f} s), "
              f"{len(dictations)} dictations of {min(lengths):.0f}-{max(lengths):.0f} s")

    errs, derrs = [], []
    for _, s in singles:
        errs += errors(spread(aligner, s.samples, s.text), s.times)
    for _, d in dictations:
        derrs += errors(spread(aligner, d.samples, d.text), d.times)
    print(f"\n[spread] sentences:  {summary(errs)}")
    if derrs:
        print(f"[spread] dictations: {summary(derrs)}")

    results = {}
    for raw in (True, False):
        label = "raw" if raw else "final"
        started = time.perf_counter()
        errs = []
        for _, s in singles:
            words = align_pieces(aligner, s.samples, [Segment(0.0, len(s.samples) / 16000, s.text)], raw=raw)
            errs += errors(words, s.times)
        single_s = time.perf_counter() - started
        started = time.perf_counter()
        derrs = []
        for _, d in dictations:
            derrs += errors(align(aligner, d.samples, d.text, raw=raw), d.times)
        dict_s = time.perf_counter() - started
        results[label] = (single_s, dict_s)
        print(f"\n[{label}] sentences:  {summary(errs)}")
        if derrs:
            print(f"[{label}] dictations: {summary(derrs)}")

    asr = load_model(args.model, device="cpu")
    started = time.perf_counter()
    asr.transcribe([(s.samples, 16000) for _, s in singles])
    single_asr = time.perf_counter() - started
    started = time.perf_counter()
    if dictations:
        asr.transcribe([(d.samples, 16000) for _, d in dictations])
    dict_asr = time.perf_counter() - started
    single_al, dict_al = results["final"]
    print(f"\ncost (--threads {args.threads}; ASR {args.model}, aligner {args.aligner}):")
    print(f"  sentences:  transcribe {single_asr:6.1f} s, align {single_al:6.1f} s: aligner = {100 * single_al / single_asr:5.1f} % of transcription time")
    if dictations:
        print(f"  dictations: transcribe {dict_asr:6.1f} s, align {dict_al:6.1f} s: aligner = {100 * dict_al / dict_asr:5.1f} % of transcription time"
              " (both with speech detection)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
