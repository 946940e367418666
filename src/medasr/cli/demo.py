"""`medasr demo`: speak held-out medical sentences with espeak-ng and transcribe them."""

from __future__ import annotations

import argparse

NAME = "demo"
HELP = "transcribe a few synthetic held-out medical sentences with the bundled demo model"
DESCRIPTION = """Speak held-out medical sentences (never in the synthetic training split) with
espeak-ng's default English voices at default speed, transcribe them, and print reference,
hypothesis and normalised WER (lowercase, punctuation deleted), then the corpus WER.

The bundled demo model is a small Qwen3-ASR trained from scratch on espeak-ng speech
(docs/demo-model.md): it shows the pipeline end to end, it is no clinical recogniser.

examples:
  medasr demo
  medasr demo --n 100 --quiet                      # the demo model's held-out WER
  medasr demo --model ./my-checkpoint --voices en-us
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default="demo", help="model to run (default: demo, the bundled demo model)")
    p.add_argument("--n", type=int, default=3, help="held-out sentences per voice (default: 3)")
    p.add_argument("--voices", default="en,en-us", metavar="V1,V2",
                   help="espeak-ng voices (default: en,en-us, the default English voices)")
    p.add_argument("--seed", type=int, default=None, help="sentence seed (default: the evaluation seed)")
    p.add_argument("--device", default="cpu", help="cpu, cuda or auto (default: cpu)")
    p.add_argument("--quiet", action="store_true", help="print only the corpus WER")


def run(args: argparse.Namespace) -> int:
    from medasr.errors import UserError
    from medasr.train.demo import EVAL_SEED, run_demo

    if args.n < 1:
        raise UserError("--n must be at least 1")
    voices = [v.strip() for v in args.voices.split(",") if v.strip()]
    if not voices:
        raise UserError("--voices: give at least one espeak-ng voice")
    results, total = run_demo(args.model, args.n, voices, EVAL_SEED if args.seed is None else args.seed, args.device)
    if not args.quiet:
        for r in results:
            print(f"[{r.voice}] WER {100 * r.wer:5.1f} %")
            print(f"  reference:  {r.reference}")
            print(f"  hypothesis: {r.hypothesis}")
    print(f"corpus WER {100 * total:.1f} % over {len(results)} clips ({', '.join(voices)}; normalised: "
          "lowercase, punctuation deleted)")
    return 0
