import json
import os
import shutil
import subprocess
import sys

import pytest
import torch
from transformers import AutoProcessor, Qwen3ASRForConditionalGeneration

from medasr.audio.decode import load_audio
from medasr.errors import ModelLoadError
from medasr.model import checkpoint
from medasr.model.convert import convert
from medasr.pipeline.engine import Engine, Request


def test_formats_are_detected(tiny_model):
    assert checkpoint.detect_format(tiny_model["original"]) == "original"
    assert checkpoint.detect_format(tiny_model["transformers"]) == "transformers"
    cfg = json.loads((tiny_model["original"] / "config.json").read_text())
    assert "thinker_config" in cfg
    from safetensors import safe_open

    with safe_open(str(tiny_model["original"] / "model.safetensors"), "pt") as f:
        keys = list(f.keys())
    assert all(k.startswith("thinker.") for k in keys)
    assert any(".audio_tower.proj1." in k for k in keys)


def test_key_renaming_is_a_bijection(tiny_model):
    state = Qwen3ASRForConditionalGeneration.from_pretrained(str(tiny_model["transformers"])).state_dict()
    there = {checkpoint.hf_to_original_key(k) for k in state}
    back = {checkpoint.original_to_hf_key(k) for k in there}
    assert back == set(state)


def test_original_format_is_converted_on_load_and_gives_the_same_logits(tiny_model, speech_clips):
    a = checkpoint.load(str(tiny_model["original"]), device="cpu")
    b = checkpoint.load(str(tiny_model["transformers"]), device="cpu")
    assert a.format == "original" and b.format == "transformers"
    assert a.dtype == torch.float32  # auto on CPU
    req = Request(load_audio(speech_clips[1]).samples)
    torch.testing.assert_close(Engine(a).prefill_logits(req), Engine(b).prefill_logits(req), rtol=0, atol=0)


def test_convert_round_trip_loads_with_plain_transformers(tiny_model, tmp_path, speech_clips):
    hf_dir = tmp_path / "hf"
    out = subprocess.run(
        [sys.executable, "-m", "medasr", "convert", str(tiny_model["original"]), str(hf_dir)],
        capture_output=True, text=True, check=True,
    )
    assert "wrote transformers checkpoint" in out.stdout
    for name in ("config.json", "model.safetensors", "tokenizer.json", "processor_config.json", "chat_template.jinja"):
        assert (hf_dir / name).exists(), name
    model = Qwen3ASRForConditionalGeneration.from_pretrained(str(hf_dir))
    proc = AutoProcessor.from_pretrained(str(hf_dir))
    assert proc.tokenizer.audio_token == "<|audio_pad|>"
    # the processor's own transcription request renders the official prompt
    rendered = proc.apply_transcription_request(audio=load_audio(speech_clips[0]).samples, language="English", tokenize=False)
    assert rendered[0].startswith("<|im_start|>system\n<|im_end|>\n<|im_start|>user\n<|audio_start|>")
    assert rendered[0].endswith("<|im_start|>assistant\nlanguage English<asr_text>")
    original = checkpoint.load(str(tiny_model["original"]), device="cpu").model.state_dict()
    for k, v in model.state_dict().items():
        assert torch.equal(v, original[k]), k
    # and back to the original layout
    orig_dir = tmp_path / "orig"
    convert(str(hf_dir), orig_dir, to="original")
    assert checkpoint.detect_format(orig_dir) == "original"
    again = checkpoint.load(str(orig_dir), device="cpu").model.state_dict()
    assert all(torch.equal(v, again[k]) for k, v in original.items())


def test_incomplete_directories_name_the_missing_files(tiny_model, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(tiny_model["original"], broken)
    (broken / "model.safetensors").unlink()
    (broken / "tokenizer.json").unlink()
    with pytest.raises(ModelLoadError) as info:
        checkpoint.load(str(broken))
    assert "model.safetensors" in str(info.value) and "tokenizer.json" in str(info.value)
    (broken / "pytorch_model.bin").write_bytes(b"pickle")
    with pytest.raises(ModelLoadError, match="safetensors only"):
        checkpoint.load(str(broken))
    with pytest.raises(ModelLoadError, match="does not exist"):
        checkpoint.load(str(tmp_path / "nowhere"))


def test_uncached_hub_id_without_network_says_how_to_pass_a_directory(tmp_path):
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_HOME=str(tmp_path / "hf"))
    out = subprocess.run(
        [sys.executable, "-m", "medasr", "transcribe", "--model", "nobody/no-such-model", "x.wav"],
        capture_output=True, text=True, env=env, check=False,
    )
    assert out.returncode == 2
    assert "not on this machine" in out.stderr and "--model PATH" in out.stderr
    assert "Traceback" not in out.stderr
