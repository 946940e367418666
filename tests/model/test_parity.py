"""medasr against the official qwen-asr package's own answers (tests/fixtures/parity, made by
scripts/make_parity_fixture.py with qwen-asr 0.0.6 on transformers 4.57.6)."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from medasr.audio.decode import load_audio
from medasr.model.prompt import parse_answer
from medasr.pipeline.engine import Engine, Request
from medasr.pipeline.scheduler import run_requests
from medasr.transcribe import load_model

FIXTURE = Path(__file__).parents[1] / "fixtures" / "parity"
EXPECTED = json.loads((FIXTURE / "expected.json").read_text())
MAX_NEW = EXPECTED["generation"]["max_new_tokens"]
CASES = EXPECTED["cases"]


def case_id(c):
    return f"{c['clip']}-{'ctx' if c['context'] else 'noctx'}-{c['language'] or 'auto'}"


@pytest.fixture(scope="module")
def asr():
    return load_model(str(FIXTURE / "model"), device="cpu", dtype="float32")


@pytest.mark.parametrize("name", sorted(EXPECTED["clips"]))
def test_audio_loads_as_the_official_package_loads_it(name):
    want = EXPECTED["clips"][name]
    samples = load_audio(FIXTURE / "audio" / name).samples
    assert len(samples) == want["loaded_samples"]
    probe = samples[np.linspace(0, len(samples) - 1, 16).astype(int)]
    np.testing.assert_allclose(probe, want["loaded_probe"], atol=2e-5)
    assert float(np.abs(samples).sum()) == pytest.approx(want["loaded_abs_sum"], rel=1e-4)


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_prompt_logits_and_answer_equal_the_official(asr, case):
    engine: Engine = asr.engine
    samples = load_audio(FIXTURE / "audio" / case["clip"]).samples
    request = Request(samples, case["context"] or None, case["language"])
    feats = engine.features(samples)
    assert feats.n_audio_tokens == case["audio_tokens"]
    ids = engine.prompt_ids(request.context, request.language, feats.n_audio_tokens)
    assert ids == case["prompt_ids"]
    logits = engine.prefill_logits(request)
    torch.testing.assert_close(logits, torch.tensor(case["prefill_logits"]), rtol=0, atol=1e-4)
    assert int(logits.argmax()) == case["prefill_argmax"]
    result = run_requests(engine, [request], max_new_tokens=MAX_NEW, mode="static")[0]
    assert result.raw == case["raw"]
    assert (result.language, result.text) == (case["language_out"], case["text"])
    assert result.hit_token_cap == (not case["stopped"])


def test_batched_call_equals_the_official_batch(asr):
    b = EXPECTED["batched"]
    out = asr.transcribe([str(FIXTURE / "audio" / c) for c in b["clips"]], language=b["language"], max_new_tokens=MAX_NEW)
    assert [t.text for t in out] == b["texts"]


@pytest.mark.parametrize("case", EXPECTED["parse_cases"], ids=lambda c: repr(c["raw"])[:40])
def test_answer_parsing_equals_the_official(case):
    assert parse_answer(case["raw"], case["user_language"]) == (case["language"], case["text"])


def test_cli_answers_as_the_official_for_both_formats(tmp_path):
    clips = ["short_16k.wav", "long_22k.mp3"]
    converted = tmp_path / "hf"
    subprocess.run([sys.executable, "-m", "medasr", "convert", str(FIXTURE / "model"), str(converted)], check=True, capture_output=True)
    for context in ("", "Hotwords: metoprolol, atorvastatin"):
        want = {c["clip"]: c["text"] for c in CASES if c["context"] == context and c["language"] == "English"}
        for model in (FIXTURE / "model", converted):
            cmd = [sys.executable, "-m", "medasr", "transcribe", "--model", str(model), "--format", "json", "--max-new-tokens", str(MAX_NEW)]
            cmd += [str(FIXTURE / "audio" / c) for c in clips] + (["--context", context] if context else [])
            out = subprocess.run(cmd, capture_output=True, text=True, check=False)
            assert out.returncode == 0, out.stderr
            got = {Path(r["source"]).name: r["text"] for r in json.loads(out.stdout)}
            assert got == {c: want[c] for c in clips}
