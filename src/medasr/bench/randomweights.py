"""Full-size Qwen3-ASR with random weights, for throughput where the real weights are absent.

Architecture: `modelbuild.SIZES` with the official vocabulary (151,936) and token ids
(`make_config(None, size)`). The model is built on the meta device (no slow initialisation),
then every parameter is allocated on the target device and filled there: N(0, 0.02) for
matrices, ones for norm weights, zeros for biases. Buffers (rotary frequencies, sinusoidal
positions) are computed normally, on the CPU, at construction.

Random weights never stop by themselves, so the benchmark forces a realistic output length:
`TOKENS_PER_SECOND` tokens per second of audio (min_new_tokens = max_new_tokens; see
offline.ModelTimer). English read speech runs at ~2.7 words/s (LibriSpeech test-clean: ~20
words in 7.4 s) and Qwen's BPE spends ~1.3 tokens per word: ~3.5 tokens/s.

Tokenizer: a small byte-level BPE trained here on medasr's synthetic sentences (merges for the
prompt's role words), its vocabulary padded with unreachable filler tokens to 151,643 entries,
then the special tokens at their official ids (151,643-151,935). So the engine builds the real
prompt with the official ids and the official template length (18 tokens plus audio); decoding
the random model's ids gives filler strings. Writing prompt ids by hand would bypass the
engine's own prompt path, which is part of what is measured.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from medasr.model.prompt import ASR_TEXT, AUDIO_END, AUDIO_PAD, AUDIO_START, IM_END, IM_START

TOKENS_PER_SECOND = 3.5  # generated tokens per audio second for English speech (see the module doc)
VOCAB = 151936
FIRST_ADDED = 151643  # the official BPE vocabulary's size; added tokens follow
OFFICIAL_IDS = {
    151643: "<|endoftext|>", 151644: IM_START, 151645: IM_END, 151669: AUDIO_START,
    151670: AUDIO_END, 151676: AUDIO_PAD, 151704: ASR_TEXT, 151705: "<timestamp>",
}  # fmt: skip
INIT_STD = 0.02
SIZES = ("1.7b", "0.6b", "tiny")


def official_tokenizer_stand_in(seed: int = 0):
    """A tokenizer whose special tokens have the official ids and whose length is the official vocab."""
    from tokenizers import Tokenizer

    from medasr.model import build as modelbuild
    from medasr.synth import sentences as synth

    trained = modelbuild.train_tokenizer(synth.sentences(300, seed=seed, split="all"), vocab_size=2000)
    spec = json.loads(trained.backend_tokenizer.to_str())
    base = dict(spec["model"]["vocab"])  # ids 0..n-1; the trained specials are dropped below
    # unreachable fillers: BPE never merges into them, so text never encodes to them
    base.update({f"<f{i}>": i for i in range(len(base), FIRST_ADDED)})
    spec["model"]["vocab"] = base
    spec["added_tokens"] = [
        {"id": i, "content": OFFICIAL_IDS.get(i, f"<|reserved_{i}|>"), "single_word": False, "lstrip": False,
         "rstrip": False, "normalized": False, "special": OFFICIAL_IDS.get(i) != ASR_TEXT}
        for i in range(FIRST_ADDED, VOCAB)
    ]  # fmt: skip
    tok = modelbuild.wrap_tokenizer(Tokenizer.from_str(json.dumps(spec)))
    for i, name in OFFICIAL_IDS.items():
        assert tok.convert_tokens_to_ids(name) == i, name
    return tok


def build(size: str, device: torch.device, dtype: torch.dtype, seed: int = 0):
    """A `checkpoint.Loaded` holding a random-weight Qwen3-ASR of `size` ("1.7b", "0.6b", "tiny")."""
    from accelerate import init_empty_weights
    from transformers import GenerationConfig, Qwen3ASRForConditionalGeneration

    from medasr.errors import UserError
    from medasr.model.build import make_config, make_processor
    from medasr.model.checkpoint import Loaded

    if size not in SIZES:
        raise UserError(f"unknown --random-weights size {size!r}: use {', '.join(SIZES)}")
    config = make_config(None, size)
    with init_empty_weights(include_buffers=False):
        net = Qwen3ASRForConditionalGeneration(config)
    gen = torch.Generator(device=device).manual_seed(seed)
    with torch.no_grad():
        for module in net.modules():
            if module is net.lm_head and config.tie_word_embeddings:
                continue  # tied below: never allocated twice
            for name, p in list(module._parameters.items()):
                if p is None or p.device.type != "meta":
                    continue
                data = torch.empty(p.shape, device=device, dtype=dtype)
                if p.dim() >= 2:
                    data.normal_(0.0, INIT_STD, generator=gen)
                else:
                    data.fill_(1.0 if name == "weight" else 0.0)
                module._parameters[name] = torch.nn.Parameter(data, requires_grad=False)
    net.tie_weights()  # lm_head shares the embedding, as in the official checkpoints
    net.to(device).eval()
    net.generation_config = GenerationConfig(
        eos_token_id=list(config.eos_token_id), pad_token_id=config.pad_token_id, do_sample=False, max_new_tokens=512
    )
    processor = make_processor(official_tokenizer_stand_in(seed))
    return Loaded(net, processor, Path(f"random-weights-{size}"), "random", device, dtype)


def forbid_end_tokens(model, tokenizer, tokens: tuple[str, ...] = (IM_END, "<|endoftext|>")) -> None:
    """Make a random model unable to stop: zero the end tokens' rows of its tied embedding.

    Their logit is then exactly 0, while the largest of the other ~152k random logits is positive,
    so greedy decoding never picks them: every answer runs to max_new_tokens, in any decoder
    (transformers' generate, qwen-asr's, medasr's), with no hook in the decoding loop. Saved to a
    checkpoint, this gives exact, equal token counts to whatever loads it.
    """
    if not model.config.tie_word_embeddings:
        raise ValueError("forbid_end_tokens needs tied embeddings (the lm_head rows are the embedding rows)")
    with torch.no_grad():
        rows = model.get_input_embeddings().weight
        for token in tokens:
            rows[tokenizer.convert_tokens_to_ids(token)] = 0.0


def n_parameters(model: torch.nn.Module) -> int:
    """Distinct parameters (a tied lm_head counted once)."""
    return sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())
