#!/usr/bin/env python
"""Regenerate tests/fixtures/parity/aligner: the official qwen-asr Qwen3ForcedAligner's answers.

medasr's forced alignment (`medasr.pipeline.align`, raw output) must give the word times that qwen-asr
0.0.6's `Qwen3ForcedAligner.align` gives, to the millisecond. As for the ASR parity fixture
(scripts/make_parity_fixture.py, whose venv, clips and tokenizer texts this reuses), three steps:

  build     (main env)      a tiny ORIGINAL-format aligner (thinker_config.model_type
                            "qwen3_forced_aligner", classify_num, thinker.lm_head) -> aligner/model/
  official  (qwen-asr venv) Qwen3ForcedAligner.from_pretrained(...).align(...) on every case:
                            input ids, the argmax bin of every <timestamp> slot before the repair,
                            the top-2 logit margin there, and the words with their times
                            -> aligner/expected.json
  check     (main env)      medasr on the same cases; prints a report
  all       (main env)      build, official in a subprocess with --venv-python, check

  python scripts/make_aligner_parity_fixture.py --step all --venv-python /tmp/venv-qwenasr/bin/python

(the venv: tests/fixtures/parity/README.md). The clips are ../audio/ of the ASR fixture.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))
from make_parity_fixture import TOKENIZER_TEXTS, _dump, compat_patch  # noqa: E402

FIXTURE = ROOT / "tests" / "fixtures" / "parity" / "aligner"
AUDIO = ROOT / "tests" / "fixtures" / "parity" / "audio"

SEED = 0
VOCAB_SIZE = 400
CLASSES = 400  # 32 s of 80 ms bins (the real aligner: 5000)
SEGMENT_MS = 80
# Tried 0.05-2.0 (seed 0): from 0.5 the argmax bins vary from slot to slot, out of order, so the
# official repair (longest non-decreasing run kept, short outlier runs snapped, long ones
# interpolated) does real work; 2.0 gives the widest top-2 margins (fewer near-ties between fp
# implementations).
INIT_STD = 2.0

LONG = (
    "Start atorvastatin forty milligrams at night and recheck the lipid panel in six weeks, then "
    "follow up in the cardiology clinic; continue lisinopril ten milligrams and metformin five "
    "hundred milligrams twice daily."
)
# (clip, transcript, language): the clip's own words; punctuation, hyphens, numbers, apostrophes
# and a lone dash (all dropped or cleaned by the official splitter); CJK characters mixed in
# (one unit each); a transcript far longer than the clip.
CASES = [
    ("short_16k.wav", "Give metoprolol now.", "English"),
    ("short_16k.wav", "Give (metoprolol) 2.5 mg -- now; don't x-ray!", "English"),
    ("long_16k.wav", "Start atorvastatin forty milligrams at night.", "English"),
    ("long_16k.wav", LONG, "English"),
    ("jfk_44k_stereo.flac", "And so, my fellow Americans:", "English"),
    ("jfk_44k_stereo.flac", "And so 我的 fellow 美国人 Americans", "Chinese"),
    ("long_22k.mp3", "Start atorvastatin forty milligrams at night.", None),
]


# Bin sequences (start, end per word) for the official repair alone (`fix_timestamp`): short and
# long outlier runs, at the ends, decreasing, all equal.
REPAIR_CASES = [
    [1, 2, 9, 3, 4, 5],
    [1, 2, 9, 9, 9, 3, 4, 10],
    [1, 2, 30, 31, 32, 33, 4, 5, 6, 7],
    [10, 1, 2, 3, 4, 5],
    [1, 2, 3, 4, 5, 0],
    [5, 4, 3, 2, 1, 0],
    [0, 0, 0, 0],
    [3, 1, 2, 8, 7, 6, 9, 10],
    [7, 7, 2, 2, 9, 9, 1, 1, 12, 13],
    [1, 2, 30, 31, 32, 3, 4, 5, 6, 7],  # a run of 3 between good values: interpolated
    [0, 10, 50, 51, 52, 53, 20, 30, 31, 40],
]


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def step_build(args) -> None:
    import torch
    import transformers

    from medasr.model.aligner import save_aligner_original
    from medasr.model.build import build_aligner, make_aligner_config, make_aligner_processor, train_tokenizer

    model_dir = FIXTURE / "model"
    if model_dir.exists():
        shutil.rmtree(model_dir)
    model_dir.mkdir(parents=True)
    tok = train_tokenizer(TOKENIZER_TEXTS, vocab_size=VOCAB_SIZE)
    model = build_aligner(make_aligner_config(tok, "tiny", classes=CLASSES, segment_ms=SEGMENT_MS), seed=SEED, init_std=args.init_std)
    save_aligner_original(model, make_aligner_processor(tok, SEGMENT_MS), model_dir)
    patched = compat_patch(model_dir)
    build = {
        "seed": SEED, "vocab_size": VOCAB_SIZE, "classes": CLASSES, "segment_ms": SEGMENT_MS,
        "init_std": args.init_std, "size": "tiny", "tokenizer_texts": "make_parity_fixture.TOKENIZER_TEXTS",
        "model_sha256": sha256(model_dir / "model.safetensors"), "patched_after_save": patched,
        "versions": {"python": platform.python_version(), "torch": torch.__version__, "transformers": transformers.__version__},
    }  # fmt: skip
    (FIXTURE / "build.json").write_text(json.dumps(build, indent=1) + "\n", encoding="utf-8")
    print(f"built {model_dir}")


def step_official(args) -> None:
    from importlib.metadata import version

    import numpy as np
    import torch
    import transformers
    from qwen_asr import Qwen3ForcedAligner

    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    model_dir = FIXTURE / "model"
    fa = Qwen3ForcedAligner.from_pretrained(str(model_dir), dtype=torch.float32, device_map="cpu")
    from safetensors.torch import load_file

    state, stored = fa.model.state_dict(), load_file(str(model_dir / "model.safetensors"))
    assert set(state) == set(stored) and all(torch.equal(state[k], stored[k]) for k in stored), "weights changed on load"
    captured: dict = {}
    forward = fa.model.thinker.forward

    def spy(**kwargs):
        out = forward(**kwargs)
        captured.update(input_ids=kwargs["input_ids"], logits=out.logits)
        return out

    fa.model.thinker.forward = spy
    cases = []
    for clip, text, language in CASES:
        captured.clear()
        # qwen-asr requires a language; None means "the default splitter", as English does.
        result = fa.align(audio=str(AUDIO / clip), text=text, language=language or "English")[0]
        ids = captured["input_ids"][0]
        slots = ids == fa.timestamp_token_id
        logits = captured["logits"][0][slots]
        top2 = logits.topk(2, dim=-1).values
        cases.append({
            "clip": clip, "text": text, "language": language,
            "input_ids": ids.tolist(),
            "raw_bins": logits.argmax(-1).tolist(),
            "min_margin": round(float((top2[:, 0] - top2[:, 1]).min()), 6),
            "words": [{"text": it.text, "start": it.start_time, "end": it.end_time} for it in result.items],
        })  # fmt: skip
        print(f"{clip:22s} {language!s:8s} {len(result.items):3d} words, margin {cases[-1]['min_margin']:.4f}: "
              f"{[(it.text, it.start_time, it.end_time) for it in result.items[:4]]}")
    repairs = []
    for bins in REPAIR_CASES:
        ms = np.array(bins) * fa.timestamp_segment_time
        repairs.append({"bins": bins, "seconds": [round(t / 1000.0, 3) for t in fa.aligner_processor.fix_timestamp(ms)]})
    expected = {
        "about": "Answers of qwen-asr 0.0.6 Qwen3ForcedAligner.align on model/ (see ../README.md).",
        "timestamp_token_id": fa.timestamp_token_id,
        "timestamp_segment_time": fa.timestamp_segment_time,
        "model_sha256": sha256(model_dir / "model.safetensors"),
        "versions": {"qwen-asr": version("qwen-asr"), "transformers": transformers.__version__, "torch": torch.__version__},
        "cases": cases,
        "repair_cases": repairs,
    }
    (FIXTURE / "expected.json").write_text(_dump(expected), encoding="utf-8")
    print(f"wrote {FIXTURE / 'expected.json'}")


def step_check(args) -> None:
    from medasr.audio.decode import load_audio
    from medasr.model.aligner import load_aligner
    from medasr.pipeline.align import align_pieces
    from medasr.records import Segment

    expected = json.loads((FIXTURE / "expected.json").read_text(encoding="utf-8"))
    aligner = load_aligner(str(FIXTURE / "model"), device="cpu", dtype="float32")
    bad = 0
    for case in expected["cases"]:
        audio = load_audio(AUDIO / case["clip"])
        inputs, _ = aligner.processor.prepare_forced_aligner_inputs(audio=audio.samples, transcript=case["text"], language=case["language"])
        same_ids = inputs["input_ids"][0].tolist() == case["input_ids"]
        words = align_pieces(aligner, audio.samples, [Segment(0.0, audio.duration, case["text"])], case["language"], raw=True)
        got = [{"text": w.word, "start": w.start, "end": w.end} for w in words]
        ok = same_ids and got == case["words"]
        bad += not ok
        print(f"{case['clip']:22s} ids_match={same_ids!s:5} words_match={got == case['words']!s:5} ({len(got)} words)")
    for case in expected["repair_cases"]:
        got = _decode_bins(aligner, case["bins"])
        bad += got != case["seconds"]
        print(f"repair {case['bins']} -> {got} {'ok' if got == case['seconds'] else 'DIFFERS: ' + str(case['seconds'])}")
    print(f"\n{bad} of {len(expected['cases']) + len(expected['repair_cases'])} cases differ")


def _decode_bins(aligner, bins: list[int]) -> list[float]:
    """medasr's decoding (the processor's decode_forced_alignment) of logits that pick `bins`."""
    import torch

    ts = aligner.timestamp_token_id
    ids = torch.tensor([[ts] * len(bins)])
    logits = torch.zeros(1, len(bins), aligner.num_bins)
    logits[0, torch.arange(len(bins)), torch.tensor(bins)] = 1.0
    words = [f"w{i}" for i in range(len(bins) // 2)]
    items = aligner.processor.decode_forced_alignment(logits, ids, [words], ts, aligner.segment_ms)[0]
    return [t for it in items for t in (it["start_time"], it["end_time"])]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--step", choices=["build", "official", "check", "all"], default="all")
    parser.add_argument("--venv-python", default="/tmp/venv-qwenasr/bin/python")
    parser.add_argument("--init-std", type=float, default=INIT_STD)
    args = parser.parse_args()
    if args.step in ("build", "all"):
        step_build(args)
    if args.step == "official":
        step_official(args)
    if args.step == "all":
        subprocess.run([args.venv_python, str(Path(__file__).resolve()), "--step", "official"], check=True)
    if args.step in ("check", "all"):
        step_check(args)


if __name__ == "__main__":
    main()
