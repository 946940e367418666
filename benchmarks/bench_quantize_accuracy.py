"""Accuracy of the int8 path against float32: the demo model's held-out sets and the parity fixture.

    python benchmarks/bench_quantize_accuracy.py                     # --n 50 --sets heldout,templates,documents,independent,legacy
    python benchmarks/bench_quantize_accuracy.py --n 100 --output runs/quantize-accuracy.json

Demo model (`medasr demo`'s sets, docs/demo-model.md): each set's sentences spoken by espeak-ng's
`en` and `en-us` voices once, the same clips transcribed by the float32 model and by the int8 one
(`load_model(..., quantize="int8")`); corpus WER of each after the seed's normalisation, the
difference in points, and how many texts are identical. Parity fixture (tests/fixtures/parity):
the official package's 16 answers against float32 (medasr's parity) and int8, greedy token for
token, and the first token's argmax.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FIXTURE = ROOT / "tests" / "fixtures" / "parity"


def demo_sets(sets: list[str], n: int, voices: list[str]) -> list[dict]:
    from medasr.train import demo
    from medasr.transcribe import load_model

    systems = {"float32": load_model("demo", device="cpu"), "int8": load_model("demo", device="cpu", quantize="int8")}
    rows = []
    for name in sets:
        sentences = demo.set_sentences(name, n)
        with tempfile.TemporaryDirectory(prefix="medasr-q-") as tmp:
            clips, meta = demo._speak(sentences, voices, tmp)
            texts = {k: demo._transcribe(asr, clips, [None] * len(clips)) for k, asr in systems.items()}
        refs = [t for _, t in meta]
        wer = {k: demo.corpus_wer(refs, hyps) for k, hyps in texts.items()}
        same = sum(a == b for a, b in zip(texts["float32"], texts["int8"]))
        row = {"set": name, "clips": len(refs), "wer_float32": round(100 * wer["float32"], 2), "wer_int8": round(100 * wer["int8"], 2),
               "difference_points": round(100 * (wer["int8"] - wer["float32"]), 2), "identical_texts": same}  # fmt: skip
        print(json.dumps(row), file=sys.stderr, flush=True)
        rows.append(row)
    return rows


def parity_fixture() -> dict:
    from medasr.audio.decode import load_audio
    from medasr.pipeline.engine import Request
    from medasr.pipeline.scheduler import run_requests
    from medasr.transcribe import load_model

    expected = json.loads((FIXTURE / "expected.json").read_text())
    out = {}
    for mode in ("none", "int8"):
        asr = load_model(str(FIXTURE / "model"), device="cpu", quantize=mode)
        tokens_same = texts_same = argmax_same = 0
        token_total = token_agree = 0
        for case in expected["cases"]:
            request = Request(load_audio(FIXTURE / "audio" / case["clip"]).samples, case["context"] or None, case["language"])
            result = run_requests(asr.engine, [request], max_new_tokens=expected["generation"]["max_new_tokens"], mode="static")[0]
            argmax_same += int(asr.engine.prefill_logits(request).argmax()) == case["prefill_argmax"]
            texts_same += result.raw == case["raw"]
            want, got = case["generated_ids"], result.token_ids
            tokens_same += want == got
            prefix = next((i for i, (a, b) in enumerate(zip(want, got)) if a != b), min(len(want), len(got)))
            token_agree += prefix
            token_total += len(want)
        out["float32" if mode == "none" else mode] = {
            "cases": len(expected["cases"]), "answers_identical": texts_same, "token_ids_identical": tokens_same,
            "first_token_argmax_identical": argmax_same,
            "answer_tokens_before_first_difference": f"{token_agree} of {token_total}",
        }  # fmt: skip
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=50, help="sentences per set and voice (default: 50; independent has 30)")
    ap.add_argument("--sets", default="heldout,templates,documents,independent,legacy")
    ap.add_argument("--voices", default="en,en-us")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--output", default=None)
    args = ap.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    result = {"demo": demo_sets(args.sets.split(","), args.n, args.voices.split(",")), "parity_fixture": parity_fixture()}
    print("| held-out set | clips | WER float32 | WER int8 | difference (points) | identical texts |\n| --- | --- | --- | --- | --- | --- |")
    for r in result["demo"]:
        print(f"| {r['set']} | {r['clips']} | {r['wer_float32']:.2f} % | {r['wer_int8']:.2f} % | {r['difference_points']:+.2f} "
              f"| {r['identical_texts']} of {r['clips']} |")  # fmt: skip
    print()
    for k, v in result["parity_fixture"].items():
        print(f"parity fixture, {k}: {v}")
    if args.output:
        Path(args.output).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
