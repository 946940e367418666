import random

import pytest
import torch
from transformers.models.qwen3_asr import processing_qwen3_asr as hf_proc

from medasr.model.prompt import audio_token_count, fix_repetitions, normalize_language, parse_answer, prompt_text

OFFICIAL = (
    "<|im_start|>system\n{ctx}<|im_end|>\n<|im_start|>user\n<|audio_start|><|audio_pad|><|audio_end|><|im_end|>\n"
    "<|im_start|>assistant\n"
)


def test_prompt_is_the_official_one_byte_for_byte():
    assert prompt_text(None, None) == OFFICIAL.format(ctx="")
    assert prompt_text("", "English") == OFFICIAL.format(ctx="") + "language English<asr_text>"
    assert prompt_text("metoprolol, atorvastatin", "English") == (
        OFFICIAL.format(ctx="metoprolol, atorvastatin") + "language English<asr_text>"
    )
    assert prompt_text(None, None, 3).count("<|audio_pad|>") == 3


def test_audio_token_count_matches_transformers_and_published_anchors():
    proc = hf_proc.Qwen3ASRProcessor.__new__(hf_proc.Qwen3ASRProcessor)
    lengths = torch.tensor([1, 7, 8, 9, 50, 99, 100, 101, 150, 230, 1000, 3000, 30017])
    expected = proc._get_audio_token_length(lengths).tolist()
    assert [audio_token_count(int(n)) for n in lengths] == expected
    assert audio_token_count(100) == 13 and audio_token_count(3000) == 390 and audio_token_count(120000) == 15600


def test_language_names_and_codes():
    assert normalize_language("en") == "English" == normalize_language("english")
    assert normalize_language("auto") is None and normalize_language(None) is None
    with pytest.raises(ValueError, match="unsupported language 'Klingon'"):
        normalize_language("Klingon")


def test_repetition_fix_equals_the_official_algorithm_on_random_strings():
    # transformers carries a copy of the official qwen-asr function; ours must agree with it.
    rng = random.Random(0)
    for _ in range(300):
        parts = []
        for _ in range(rng.randint(1, 4)):
            unit = "".join(rng.choice("ab c.") for _ in range(rng.randint(1, 6)))
            parts.append(unit * rng.choice([1, 2, 19, 20, 21, 45]))
        text = "".join(parts)
        assert fix_repetitions(text) == hf_proc._detect_and_fix_repetitions(text), text
    assert fix_repetitions("a" * 21) == "a" and fix_repetitions("a" * 20) == "a" * 20
    assert fix_repetitions("The dose is " + "mg " * 25 + "daily") == "The dose is mg daily"


def test_parse_answer_cases():
    assert parse_answer("  Metoprolol 25 mg.  ", "English") == ("English", "Metoprolol 25 mg.")
    assert parse_answer("language English<asr_text>Hello there.", None) == ("English", "Hello there.")
    assert parse_answer("language None<asr_text>", None) == ("", "")
    assert parse_answer("language French<asr_text>Bonjour", None) == ("French", "Bonjour")
    assert parse_answer("no tag at all", None) == ("", "no tag at all")
    assert parse_answer("", "English") == ("", "")
