"""`medasr synth`: render synthetic medical speech with espeak-ng into a JSONL manifest."""

from __future__ import annotations

import argparse

NAME = "synth"
HELP = "render synthetic medical speech (espeak-ng) with a JSONL manifest"
DESCRIPTION = """Render template sentences over the medical lexicon with espeak-ng.

Writes OUT/audio/*.wav (16 kHz mono), OUT/manifest.jsonl ({"audio", "text", "duration", ...})
and OUT/synth_config.json. Rerunning with the same options skips clips already rendered.
Train and held-out sentences never overlap (split by a hash of the text).

With --corpus: the demo model's varied corpus instead (`medasr.synth.sources`, docs/demo-model.md):
clinical templates and WordNet glosses and examples, spoken by espeak-ng voices, variants,
speeds and pitches and by flite, some in a synthetic room, some with a context (the manifest's
"prompt"), plus clips of silence and noise with empty text. Splits: train; heldout (sentences of
the training sources held out by hash); heldout-docs (held-out templates and WordNet files).
--plain renders each sentence once per --voices voice at espeak-ng's default speed and pitch,
with nothing added (the evaluation sets).

examples:
  medasr synth --out data/synth-train --n 5000 --seed 0
  medasr synth --out data/synth-heldout --n 500 --split heldout --noise-db 20
  medasr synth --corpus --out runs/data/demo2-train --n 30000 --jobs 2
  medasr synth --corpus --plain --split heldout-docs --clinical-share 1 --out runs/eval/templates --n 100
  medasr synth --list-voices
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", metavar="DIR", help="output directory")
    parser.add_argument("--n", type=int, default=1000, help="number of clips (default: 1000)")
    parser.add_argument("--seed", type=int, default=0, help="seed for sentences and voices (default: 0)")
    parser.add_argument("--voices", metavar="V1,V2", help="comma-separated espeak-ng voices "
                        "(default: the espeak-ng English voices; see --list-voices)")
    parser.add_argument("--split", choices=("train", "heldout", "heldout-docs"), default="train",
                        help="which sentence split to draw from (default: train; heldout-docs: --corpus only)")
    parser.add_argument("--noise-db", type=float, metavar="SNR",
                        help="add white noise at this signal-to-noise ratio in dB (default: clean)")
    parser.add_argument("--gain-db", type=float, default=0.0, help="gain in dB (default: 0)")
    parser.add_argument("--lexicon", metavar="FILE",
                        help="extra terms: one per line, or category<TAB>term")
    parser.add_argument("--jobs", type=int, default=1, help="espeak-ng processes at once (default: 1)")
    parser.add_argument("--list-voices", action="store_true", help="list espeak-ng English voices and exit")
    corpus = parser.add_argument_group("varied corpus (--corpus)")
    corpus.add_argument("--corpus", action="store_true",
                        help="render the demo model's varied corpus (clinical + WordNet text, many voices)")
    corpus.add_argument("--plain", action="store_true",
                        help="evaluation set: each sentence once per --voices voice (default en,en-us), "
                        "default speed and pitch, no contexts, rooms or non-speech clips")
    corpus.add_argument("--clinical-share", type=float, default=None, metavar="F",
                        help="share of clinical sentences, the rest WordNet (default: 0.55)")
    corpus.add_argument("--nonspeech-share", type=float, default=0.06, metavar="F",
                        help="non-speech clips per sentence (default: 0.06)")


def run(args: argparse.Namespace) -> int:
    from medasr.errors import UserError
    from medasr.synth import sentences as synth
    from medasr.text.lexicon import medical_terms

    if args.list_voices:
        print("\n".join(synth.available_voices("en")))
        return 0
    if not args.out:
        raise UserError("--out DIR is required")
    if args.n < 1:
        raise UserError("--n must be at least 1")
    voices = [v.strip() for v in args.voices.split(",") if v.strip()] if args.voices else None
    if args.corpus:
        return _corpus(args, voices)
    if args.split == "heldout-docs" or args.plain:
        raise UserError("--split heldout-docs and --plain need --corpus")
    lexicon = medical_terms(args.lexicon) if args.lexicon else None
    try:
        manifest = synth.synthesize(args.out, args.n, args.seed, voices, args.split,
                                    noise_db=args.noise_db, gain_db=args.gain_db,
                                    lexicon=lexicon, jobs=args.jobs)
    except ValueError as err:  # e.g. more distinct sentences asked for than the templates give
        raise UserError(str(err)) from None
    print(manifest)
    return 0


def _corpus(args: argparse.Namespace, voices: list[str] | None) -> int:
    from medasr.errors import UserError
    from medasr.synth import corpus as synthcorpus
    from medasr.synth import sentences as synth
    from medasr.synth import sources as textsources

    share = textsources.CLINICAL_SHARE if args.clinical_share is None else args.clinical_share
    if not 0 <= share <= 1 or not 0 <= args.nonspeech_share <= 1:
        raise UserError("--clinical-share and --nonspeech-share must be in [0, 1]")
    plain = None
    if args.plain:
        plain = tuple(voices or ("en", "en-us"))
        for voice in plain:
            synth.check_voice(voice)
    elif voices:
        raise UserError("--voices with --corpus needs --plain (training voices are drawn from many)")
    try:
        manifest = synthcorpus.synthesize_corpus(args.out, args.n, args.seed, args.split,
                                                 nonspeech_share=args.nonspeech_share, plain_voices=plain,
                                                 clinical_share=share, jobs=args.jobs)
    except ValueError as err:
        raise UserError(str(err)) from None
    print(manifest)
    return 0
