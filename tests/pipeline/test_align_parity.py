"""medasr's forced alignment against the official qwen-asr Qwen3ForcedAligner's own answers
(tests/fixtures/parity/aligner, made by scripts/make_aligner_parity_fixture.py with qwen-asr 0.0.6
on transformers 4.57.6): same input ids, same words, same times to the millisecond."""

import json
from pathlib import Path

import pytest
import torch

from medasr.audio.decode import load_audio
from medasr.model.aligner import convert_aligner, load_aligner
from medasr.pipeline.align import align_pieces
from medasr.records import Segment

FIXTURE = Path(__file__).parents[1] / "fixtures" / "parity" / "aligner"
AUDIO = FIXTURE.parent / "audio"
EXPECTED = json.loads((FIXTURE / "expected.json").read_text())


def case_id(c):
    return f"{c['clip']}-{len(c['words'])}w-{c['language']}"


@pytest.fixture(scope="module")
def aligners(tmp_path_factory):
    """The original-format fixture loaded (converted on load), and its transformers-format copy."""
    original = load_aligner(str(FIXTURE / "model"), device="cpu", dtype="float32")
    hf_dir = convert_aligner(str(FIXTURE / "model"), tmp_path_factory.mktemp("aligner") / "hf", to="transformers")
    return {"original": original, "transformers": load_aligner(str(hf_dir), device="cpu", dtype="float32")}


@pytest.mark.parametrize("fmt", ["original", "transformers"])
@pytest.mark.parametrize("case", EXPECTED["cases"], ids=case_id)
def test_raw_words_and_times_equal_the_official(aligners, fmt, case):
    aligner = aligners[fmt]
    assert aligner.format == fmt and aligner.timestamp_token_id == EXPECTED["timestamp_token_id"]
    assert aligner.segment_ms == EXPECTED["timestamp_segment_time"]
    audio = load_audio(AUDIO / case["clip"])
    inputs, _ = aligner.processor.prepare_forced_aligner_inputs(audio=audio.samples, transcript=case["text"], language=case["language"])
    assert inputs["input_ids"][0].tolist() == case["input_ids"]  # no chat template: the official prompt
    words = align_pieces(aligner, audio.samples, [Segment(0.0, audio.duration, case["text"])], case["language"], raw=True)
    assert [{"text": w.word, "start": w.start, "end": w.end} for w in words] == case["words"]


@pytest.mark.parametrize("case", EXPECTED["repair_cases"], ids=lambda c: "-".join(map(str, c["bins"])))
def test_monotonic_repair_equals_the_official(aligners, case):
    aligner = aligners["original"]
    bins = case["bins"]
    ts = aligner.timestamp_token_id
    logits = torch.zeros(1, len(bins), aligner.num_bins)
    logits[0, torch.arange(len(bins)), torch.tensor(bins)] = 1.0
    words = [f"w{i}" for i in range(len(bins) // 2)]
    items = aligner.processor.decode_forced_alignment(logits, torch.tensor([[ts] * len(bins)]), [words], ts, aligner.segment_ms)[0]
    assert [t for it in items for t in (it["start_time"], it["end_time"])] == case["seconds"]
