"""Batched against one-by-one transcription of 32 clips, measured in one run on this machine.

    python benchmarks/bench_batching.py [--model DIR] [--clips 32] [--batch-size 16]

Without --model, a tiny random Qwen3-ASR of the real architecture is built in a temp dir.
The answers are checked to be identical; the figure is the ratio of wall times (CPU times
vary between machines, ratios within one run do not).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SENTENCES = [
    "The patient was started on forty milligrams of atorvastatin once daily.",
    "Chest pain radiating to the left arm since this morning.",
    "No known drug allergies.",
    "Amoxicillin five hundred milligrams three times a day for seven days.",
    "Blood pressure one hundred twenty over eighty, heart rate seventy two.",
    "CT of the abdomen showed no evidence of appendicitis.",
    "Continue metoprolol and review in two weeks.",
    "She reports shortness of breath on exertion and ankle swelling.",
]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default=None)
    p.add_argument("--clips", type=int, default=32)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--max-new-tokens", type=int, default=32)
    args = p.parse_args()

    from medasr.transcribe import load_model

    tmp = Path(tempfile.mkdtemp())
    model = args.model
    if model is None:
        sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
        from conftest import build_tiny

        model = str(build_tiny(tmp)["original"])
    clips = []
    for i in range(args.clips):
        path = tmp / f"clip{i}.wav"
        speed = 140 + 10 * (i % 6)
        subprocess.run(["espeak-ng", "-s", str(speed), "-w", str(path), SENTENCES[i % len(SENTENCES)]], check=True)
        clips.append(str(path))

    asr = load_model(model, device="cpu")
    asr.transcribe(clips[:2], max_new_tokens=4)  # warm-up
    t0 = time.perf_counter()
    one = [asr.transcribe(c, max_new_tokens=args.max_new_tokens)[0].text for c in clips]
    t_one = time.perf_counter() - t0
    t0 = time.perf_counter()
    batched = [t.text for t in asr.transcribe(clips, batch_size=args.batch_size, max_new_tokens=args.max_new_tokens)]
    t_batch = time.perf_counter() - t0
    print(f"clips: {len(clips)}  batch size: {args.batch_size}  max_new_tokens: {args.max_new_tokens}")
    print(f"one by one: {t_one:.2f} s   batched: {t_batch:.2f} s   speed-up: {t_one / t_batch:.2f}x")
    print(f"identical texts: {one == batched}")


if __name__ == "__main__":
    main()
