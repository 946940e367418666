"""Does cutting a long recording into pieces cost accuracy? Whole recording vs sentence by sentence.

    python benchmarks/bench_longform_accuracy.py [--model demo] [--seeds 2024,7,11] [--max-piece-s 30,15]
        [--set legacy|heldout|templates|documents]

Each consultation is --sentences held-out synthetic sentences (`medasr.train.demo.set_sentences`:
by default held-out sentences of the shipped demo model's templates, never trained on) spoken by espeak-ng (en-us, default speed and pitch) one after another
with 0.8-2.5 s pauses, over -60 dBFS white noise, as in tests/pipeline/test_longform.py. It is transcribed
twice with the same model: whole (speech detection, pieces of at most --max-piece-s seconds of
several sentences, merged) and as the exact stretches of the same noisy signal that hold one
sentence each. Prints the normalised WER (`medasr.text.normalize.basic`, jiwer) of both, per recording and
pooled over all, and the piece lengths.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import jiwer
import numpy as np
import torch

from medasr.audio.decode import SAMPLE_RATE
from medasr.synth import sentences as synth
from medasr.text.normalize import basic
from medasr.train.demo import set_sentences
from medasr.transcribe import load_model


def consultation(seed: int, n: int, tmp: Path, sentence_set: str = "legacy") -> tuple[list[str], np.ndarray, list[tuple[int, int]]]:
    """Texts, the noisy 16 kHz signal and each sentence's (start, end) sample span."""
    texts = set_sentences(sentence_set, n, seed)
    rng = np.random.default_rng(seed)
    work = tmp / str(seed)
    work.mkdir()
    clean, spans = synth.spoken_in_turn(texts, work, rng)
    signal = clean + rng.normal(0, 0.001, len(clean)).astype(np.float32)  # -60 dBFS room
    return texts, np.clip(signal, -1, 1), spans


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="demo")
    ap.add_argument("--seeds", default="2024,7,11", help="one consultation per sentence seed")
    ap.add_argument("--sentences", type=int, default=14, help="sentences per consultation")
    ap.add_argument("--max-piece-s", default="30", help="comma-separated piece limits to compare")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--set", default="legacy", choices=("legacy", "heldout", "templates", "documents"),
                    help="held-out sentence set (medasr demo --set; default: legacy, the shipped model's templates)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    asr = load_model(args.model, device="cpu")
    limits = [float(v) for v in args.max_piece_s.split(",")]
    refs, parts, wholes = [], [], {limit: [] for limit in limits}
    with tempfile.TemporaryDirectory() as tmp:
        for seed in (int(s) for s in args.seeds.split(",")):
            texts, signal, spans = consultation(seed, args.sentences, Path(tmp), args.set)
            ref = " ".join(basic(t) for t in texts)
            one = " ".join(basic(r.text) for r in asr.transcribe([(signal[a:b], SAMPLE_RATE) for a, b in spans]))
            refs.append(ref)
            parts.append(one)
            line = f"seed {seed} ({len(signal) / SAMPLE_RATE:.0f} s): one by one {jiwer.wer(ref, one):.1%}"
            for limit in limits:
                whole = asr.transcribe([(signal, SAMPLE_RATE)], max_piece_s=limit)[0]
                wholes[limit].append(basic(whole.text))
                pieces = ", ".join(f"{s.end - s.start:.0f}" for s in whole.segments)
                line += f" | whole, pieces <= {limit:g} s [{pieces}]: {jiwer.wer(ref, wholes[limit][-1]):.1%}"
            print(line, flush=True)
    print(f"pooled: one by one {jiwer.wer(refs, parts):.1%}", end="")
    for limit in limits:
        print(f" | whole, pieces <= {limit:g} s: {jiwer.wer(refs, wholes[limit]):.1%}", end="")
    print()


if __name__ == "__main__":
    main()
