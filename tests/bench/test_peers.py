"""benchmarks/bench_peers.py's own machinery on a small model: one set of weights in both formats,
end tokens made unreachable so that every answer has exactly the forced length, and the
medasr side of the comparison. (The official package's side needs its own venv: a benchmark,
not a test.)"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

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


def test_every_system_runs_in_its_own_worker_with_exactly_the_forced_length(peers, tmp_path):
    """The whole benchmark on a small model, the medasr workers only (the peers need their own
    venv and exported files: a benchmark, not a test): every answer has the forced length, the
    float32 texts do not depend on the batch, int8 stores its weights in about half the bytes (this model is mostly its vocabulary),
    and each row has its own memory figures."""
    out = tmp_path / "peers.json"
    code = peers.main(["--layers", "1", "--width", "128", "--conv", "8", "--clips", "3", "--max-clip-s", "6", "--tokens", str(TOKENS),
                       "--medasr", "float32,int8", "--batch", "2", "--no-official", "--work-dir", str(tmp_path), "--output", str(out)])
    assert code == 0
    rows = {(r["system"], r["batch"]): r for r in json.loads(out.read_text())["rows"]}
    assert set(rows) == {("medasr float32", 1), ("medasr float32", 2), ("medasr int8", 1), ("medasr int8", 2)}
    assert all(r["tokens_ok"] and r["rtfx_cpu"] > 0 and r["peak_rss_mb"] > 0 and r["cache_mb"] > 0 for r in rows.values())
    assert rows[("medasr float32", 2)]["same_as_float32"] == 3  # batch invariance: the texts of one-by-one decoding
    assert rows[("medasr int8", 1)]["weights_mb"] < 0.55 * rows[("medasr float32", 1)]["weights_mb"]  # the int8 head and embedding are two copies
