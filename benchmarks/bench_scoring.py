"""Time scoring at Common Voice 17 English test size (16,393 pairs) on one CPU core.

    python benchmarks/bench_scoring.py [--n 16393] [--resamples 1000]

Synthesises seeded, realistic pairs (cased, punctuated references in written form with medical
terms and doses; hypotheses with ~8 % word errors, some empty outputs and a few loops), then
times normalisation + WER + CER, the bootstrap CI, medical-term metrics and hallucination
indicators. Prints figures only; the target is < 5 s in total.
"""

from __future__ import annotations

import argparse
import os
import random
import time

# One core, as the requirement says: keep BLAS / OpenMP from using more.
for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(var, "1")

COMMON = (
    "the a of and to in is was for on with that it as at by from this be have not are but or patient "
    "doctor said took daily we will check your blood again today after before morning night pain history "
    "family started weeks two three days since last visit follow up normal results showed mild severe "
    "left right side also any other questions about medication"
).split()
DOSES = ("5 mg", "15 mg", "2.5 mg", "500 mg", "1,000 mg", "20 mL", "10 units", "0.5 mcg", "40 %")


def synthesise(n: int, seed: int = 0) -> tuple[list[str], list[str]]:
    from medasr.text.lexicon import LEXICON

    rng = random.Random(seed)
    terms = [t for c in ("drugs", "conditions", "symptoms", "anatomy") for t in LEXICON[c]]
    refs, hyps = [], []
    for _ in range(n):
        words = rng.choices(COMMON, k=rng.randint(4, 16))
        for _ in range(rng.choice((0, 1, 1, 2))):
            words.insert(rng.randrange(len(words) + 1), rng.choice(terms))
        if rng.random() < 0.3:
            words.insert(rng.randrange(len(words) + 1), rng.choice(DOSES))
        text = " ".join(words)
        ref = text[0].upper() + text[1:] + rng.choice((".", ".", "?", "!"))
        tokens, hyp = text.split(), []
        for w in tokens:
            r = rng.random()
            if r < 0.04:
                hyp.append(rng.choice(COMMON))  # substitution
            elif r < 0.06:
                continue  # deletion
            else:
                hyp.append(w)
                if r > 0.98:
                    hyp.append(rng.choice(COMMON))  # insertion
        r = rng.random()
        if r < 0.005:
            hyp = []  # empty output
        elif r < 0.008:
            hyp = hyp[:3] * 6  # repetition loop
        out = " ".join(hyp)
        refs.append(ref)
        hyps.append(out.capitalize() + "." if rng.random() < 0.5 else out)
    return refs, hyps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=16_393)
    parser.add_argument("--resamples", type=int, default=1000)
    parser.add_argument("--normalizer", default="basic")
    args = parser.parse_args()

    from medasr.scoring import medical, metrics

    refs, hyps = synthesise(args.n)
    caps = [False] * len(refs)
    ts = time.perf_counter()
    # One-off per process: jiwer import, punctuation table, term index.
    index = medical.build_term_index(medical.default_terms(), args.normalizer)
    metrics.score(refs[:10], hyps[:10], args.normalizer)

    t0, c0 = time.perf_counter(), time.process_time()
    s = metrics.score(refs, hyps, args.normalizer)
    t1 = time.perf_counter()
    ci = metrics.wer_ci(s, resamples=args.resamples)
    t2 = time.perf_counter()
    m = medical.medical(s, index)
    t3 = time.perf_counter()
    h = metrics.hallucination(s, caps)
    t4, c4 = time.perf_counter(), time.process_time()

    print(f"pairs: {s.n}  normaliser: {s.normalizer}  resamples: {args.resamples}")
    print(f"WER {100 * s.wer:.2f} % [{100 * ci.low:.2f}, {100 * ci.high:.2f}]  CER {100 * s.cer:.2f} %")
    print(f"M-WER {100 * (m.overall.mwer or 0):.2f} %  drugs {100 * (m.drugs.mwer or 0):.2f} %  "
          f"term recall {100 * (m.overall.recall or 0):.2f} %  doses {m.doses.found}/{m.doses.total}")
    print(f"empty outputs {h.empty_outputs}  loops {h.repetitions}")
    print(f"one-off setup          {t0 - ts:6.3f} s")
    print(f"normalise + WER + CER  {t1 - t0:6.3f} s")
    print(f"bootstrap CI           {t2 - t1:6.3f} s")
    print(f"medical metrics        {t3 - t2:6.3f} s")
    print(f"hallucination          {t4 - t3:6.3f} s")
    print(f"total                  {t4 - t0:6.3f} s  (with setup {t4 - ts:.3f} s; "
          f"CPU time {c4 - c0:.3f} s, which a busy machine inflates less)")


if __name__ == "__main__":
    main()
