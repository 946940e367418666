"""`medasr synth`: render synthetic medical speech with espeak-ng into a JSONL manifest."""

from __future__ import annotations

import argparse

NAME = "synth"
HELP = "render synthetic medical speech (espeak-ng) with a JSONL manifest"
DESCRIPTION = """Render template sentences over the medical lexicon with espeak-ng.

Writes OUT/audio/*.wav (16 kHz mono), OUT/manifest.jsonl ({"audio", "text", "duration", ...})
and OUT/synth_config.json. Rerunning with the same options skips clips already rendered.
Train and held-out sentences never overlap (split by a hash of the text).

examples:
  medasr synth --out data/synth-train --n 5000 --seed 0
  medasr synth --out data/synth-heldout --n 500 --split heldout --noise-db 20
  medasr synth --list-voices
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", metavar="DIR", help="output directory")
    parser.add_argument("--n", type=int, default=1000, help="number of clips (default: 1000)")
    parser.add_argument("--seed", type=int, default=0, help="seed for sentences and voices (default: 0)")
    parser.add_argument("--voices", metavar="V1,V2", help="comma-separated espeak-ng voices "
                        "(default: the espeak-ng English voices; see --list-voices)")
    parser.add_argument("--split", choices=("train", "heldout"), default="train",
                        help="which sentence split to draw from (default: train)")
    parser.add_argument("--noise-db", type=float, metavar="SNR",
                        help="add white noise at this signal-to-noise ratio in dB (default: clean)")
    parser.add_argument("--gain-db", type=float, default=0.0, help="gain in dB (default: 0)")
    parser.add_argument("--lexicon", metavar="FILE",
                        help="extra terms: one per line, or category<TAB>term")
    parser.add_argument("--jobs", type=int, default=1, help="espeak-ng processes at once (default: 1)")
    parser.add_argument("--list-voices", action="store_true", help="list espeak-ng English voices and exit")


def run(args: argparse.Namespace) -> int:
    from medasr import synth
    from medasr.errors import UserError
    from medasr.lexicon import medical_terms

    if args.list_voices:
        print("\n".join(synth.available_voices("en")))
        return 0
    if not args.out:
        raise UserError("--out DIR is required")
    if args.n < 1:
        raise UserError("--n must be at least 1")
    voices = [v.strip() for v in args.voices.split(",") if v.strip()] if args.voices else None
    lexicon = medical_terms(args.lexicon) if args.lexicon else None
    try:
        manifest = synth.synthesize(args.out, args.n, args.seed, voices, args.split,
                                    noise_db=args.noise_db, gain_db=args.gain_db,
                                    lexicon=lexicon, jobs=args.jobs)
    except ValueError as err:  # e.g. more distinct sentences asked for than the templates give
        raise UserError(str(err)) from None
    print(manifest)
    return 0
