"""benchmarks/bench_peers.py's own machinery on a small model: one set of weights in both formats,
end tokens made unreachable so that every answer has exactly the forced length, and the
medasr side of the comparison. (The official package's side needs its own venv: a benchmark,
not a test.)"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
TOKENS = 5


@pytest.fixture(scope="module")
def peers():
    sys.path.insert(0, str(BENCHMARKS))
    try:
        import bench_peers

        yield bench_peers
    finally:
        sys.path.remove(str(BENCHMARKS))


@pytest.fixture(scope="module")
def checkpoint_dirs(peers, tmp_path_factory):
    return peers.build_checkpoint(tmp_path_factory.mktemp("peers"), layers=1, width=128, conv=8, seed=0)


def test_both_formats_hold_the_same_weights_and_no_reachable_end_token(peers, checkpoint_dirs):
    from _clock import parameter_digest

    from medasr.model import checkpoint

    original, hf = checkpoint_dirs
    a, b = checkpoint.load(str(original), device="cpu"), checkpoint.load(str(hf), device="cpu")
    assert a.format == "original" and b.format == "transformers"
    assert parameter_digest(a.model) == parameter_digest(b.model)
    tok = b.processor.tokenizer
    lm_head = b.model.get_output_embeddings().weight
    for token in ("<|im_end|>", "<|endoftext|>"):  # ids of the official vocabulary, rows all zero
        assert tok.convert_tokens_to_ids(token) in (151643, 151645)
        assert not lm_head[tok.convert_tokens_to_ids(token)].any()
    assert lm_head.abs().sum() > 0


def test_every_answer_has_exactly_the_forced_length(peers, checkpoint_dirs, speech_clips):
    _, hf = checkpoint_dirs
    side = peers.Medasr(hf, TOKENS, threads=torch.get_num_threads())
    out = side.run(speech_clips, batch_size=2, warmup=1)
    assert out["tokens"] == [TOKENS] * len(speech_clips)  # hit_token_cap on every transcript
    assert all(out["texts"]) and out["forwards"] > 0 and 0 < out["model_s"] <= out["e2e_s"] and out["cpu_s"] > 0
    durations = [1.0, 3.0, 2.0, 2.0, 5.0]
    assert peers.padded_in_batch(durations, 2) == [True, False, False, False, False]
    same = {"texts": ["a", "b", "c", "d", "e"], "tokens": [TOKENS] * 5}
    other = {"texts": ["x", "b", "c", "d", "e"], "tokens": [TOKENS] * 4 + [None]}
    cmp = peers.compare(same, other, durations, 2, TOKENS)
    assert cmp["identical"] == 4 and cmp["differ"] == [0] and cmp["differ_padded_in_official_batch"] == 1
    assert cmp["tokens_official_ok"] and not cmp["tokens_medasr_ok"]
