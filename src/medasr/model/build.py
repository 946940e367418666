"""Build Qwen3-ASR models of the real architecture from scratch.

Real weights cannot be downloaded everywhere, so tests, the demo model and throughput
benchmarks build their own: a byte-level BPE tokenizer trained locally that carries the
Qwen3-ASR special tokens, and a `Qwen3ASRForConditionalGeneration` of any size.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import torch
from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
from transformers import (
    GenerationConfig,
    PreTrainedTokenizerFast,
    Qwen3ASRConfig,
    Qwen3ASRFeatureExtractor,
    Qwen3ASRForConditionalGeneration,
    Qwen3ASRProcessor,
)

from medasr.model.prompt import ASR_TEXT, AUDIO_END, AUDIO_PAD, AUDIO_START, IM_END, IM_START

ENDOFTEXT = "<|endoftext|>"
TIMESTAMP = "<timestamp>"
# Special tokens in the order of the official vocabulary. `<asr_text>` is an added token but
# NOT special: decoding with skip_special_tokens must keep it, or the answer cannot be parsed.
SPECIAL_TOKENS = [ENDOFTEXT, IM_START, IM_END, AUDIO_START, AUDIO_END, AUDIO_PAD, TIMESTAMP]

# Qwen2's pre-tokenizer split (words, single digits, punctuation runs, new lines, spaces).
_QWEN_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)

# The chat template of the official checkpoints, rendered as the reference prompt.
CHAT_TEMPLATE = (
    "{%- set ns = namespace(system_text='', audio='') -%}"
    "{%- for m in messages -%}"
    "{%- if m.role == 'system' -%}"
    "{%- if m.content is string -%}{%- set ns.system_text = ns.system_text + m.content -%}"
    "{%- else -%}{%- for c in m.content -%}{%- if c.type == 'text' -%}"
    "{%- set ns.system_text = ns.system_text + c.text -%}{%- endif -%}{%- endfor -%}{%- endif -%}"
    "{%- elif m.content is not string -%}"
    "{%- for c in m.content -%}{%- if c.type == 'audio' or ('audio' in c) or ('audio_url' in c) -%}"
    "{%- set ns.audio = ns.audio + '<|audio_start|><|audio_pad|><|audio_end|>' -%}{%- endif -%}{%- endfor -%}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{{- '<|im_start|>system\\n' + ns.system_text + '<|im_end|>\\n' -}}"
    "{{- '<|im_start|>user\\n' + ns.audio + '<|im_end|>\\n' -}}"
    "{%- for m in messages -%}{%- if m.role == 'assistant' -%}"
    "{%- set ns2 = namespace(t='') -%}"
    "{%- if m.content is string -%}{%- set ns2.t = m.content -%}"
    "{%- else -%}{%- for c in m.content -%}{%- if c.type == 'text' -%}{%- set ns2.t = ns2.t + c.text -%}"
    "{%- endif -%}{%- endfor -%}{%- endif -%}"
    "{{- '<|im_start|>assistant\\n' -}}{% generation %}{{- ns2.t + '<|im_end|>\\n' -}}{% endgeneration %}"
    "{%- endif -%}{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- '<|im_start|>assistant\\n' -}}{%- endif -%}"
)


def train_tokenizer(texts: Iterable[str], vocab_size: int = 512) -> PreTrainedTokenizerFast:
    """Train a Qwen2-style byte-level BPE tokenizer carrying the Qwen3-ASR special tokens."""
    tok = Tokenizer(models.BPE())
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(_QWEN_SPLIT), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        special_tokens=[],
        show_progress=False,
    )
    # The role words of the prompt are always present, so the vocabulary learns them too.
    corpus = list(texts) + ["system", "user", "assistant", "language English", "language None"]
    tok.train_from_iterator(corpus, trainer=trainer)
    return wrap_tokenizer(tok)


def wrap_tokenizer(tok: Tokenizer) -> PreTrainedTokenizerFast:
    """Add the special tokens and the attributes the Qwen3-ASR processor reads."""
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token=IM_END,
        pad_token=ENDOFTEXT,
        model_max_length=131072,
        clean_up_tokenization_spaces=False,
        extra_special_tokens={
            "audio_token": AUDIO_PAD,
            "audio_bos_token": AUDIO_START,
            "audio_eos_token": AUDIO_END,
        },
    )
    fast.add_special_tokens({"additional_special_tokens": SPECIAL_TOKENS})
    fast.add_tokens([ASR_TEXT], special_tokens=False)
    return fast


@dataclass(frozen=True)
class Size:
    """Dimensions of a Qwen3-ASR model (audio encoder + Qwen3 decoder)."""

    enc_d_model: int
    enc_layers: int
    enc_heads: int
    enc_ffn: int
    enc_conv: int
    hidden: int
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    ffn: int


SIZES: dict[str, Size] = {
    # Published dimensions (the project reference notes, qwen3-asr.md).
    "1.7b": Size(1024, 24, 16, 4096, 480, 2048, 28, 16, 8, 128, 6144),
    "0.6b": Size(896, 18, 14, 3584, 480, 1024, 28, 16, 8, 128, 3072),
    # Test fixtures: seconds to build and run on a CPU.
    "tiny": Size(32, 2, 4, 64, 8, 32, 2, 4, 2, 8, 64),
}


def make_config(tokenizer: PreTrainedTokenizerFast | None, size: str | Size = "tiny", vocab_size: int | None = None) -> Qwen3ASRConfig:
    """A transformers-native config; token ids come from the tokenizer (or the official ones)."""
    s = SIZES[size] if isinstance(size, str) else size
    if tokenizer is not None:
        ids = {t: tokenizer.convert_tokens_to_ids(t) for t in (AUDIO_PAD, TIMESTAMP, IM_END, ENDOFTEXT)}
        vocab = len(tokenizer)
    else:  # official vocabulary
        ids = {AUDIO_PAD: 151676, TIMESTAMP: 151705, IM_END: 151645, ENDOFTEXT: 151643}
        vocab = 151936
    vocab = vocab_size or vocab
    return Qwen3ASRConfig(
        audio_config={
            "model_type": "qwen3_asr_encoder",
            "d_model": s.enc_d_model,
            "encoder_layers": s.enc_layers,
            "encoder_attention_heads": s.enc_heads,
            "encoder_ffn_dim": s.enc_ffn,
            "downsample_hidden_size": s.enc_conv,
            "output_dim": s.hidden,
            "n_window": 50,
            "n_window_infer": 800,
            "max_position_embeddings": 13,
        },
        text_config={
            "model_type": "qwen3",
            "vocab_size": vocab,
            "hidden_size": s.hidden,
            "intermediate_size": s.ffn,
            "num_hidden_layers": s.layers,
            "num_attention_heads": s.heads,
            "num_key_value_heads": s.kv_heads,
            "head_dim": s.head_dim,
            "max_position_embeddings": 65536,
            "rope_parameters": {"rope_type": "default", "rope_theta": 1000000.0},
            "rms_norm_eps": 1e-6,
            "tie_word_embeddings": True,
        },
        audio_token_id=ids[AUDIO_PAD],
        timestamp_token_id=ids[TIMESTAMP],
        pad_token_id=ids[IM_END],
        eos_token_id=[ids[ENDOFTEXT], ids[IM_END]],
        tie_word_embeddings=True,
    )


def build_model(config: Qwen3ASRConfig, seed: int = 0, init_std: float | None = None) -> Qwen3ASRForConditionalGeneration:
    """A randomly initialised model. A larger init_std gives a tiny model decisive logits."""
    torch.manual_seed(seed)
    model = Qwen3ASRForConditionalGeneration(config)
    if init_std is not None:
        with torch.no_grad():
            for _name, p in model.named_parameters():
                if p.dim() >= 2:
                    p.normal_(0.0, init_std)
    model.generation_config = GenerationConfig(
        eos_token_id=list(config.eos_token_id),
        pad_token_id=config.pad_token_id,
        do_sample=False,
        max_new_tokens=512,
    )
    return model.eval()


def make_processor(tokenizer: PreTrainedTokenizerFast) -> Qwen3ASRProcessor:
    return Qwen3ASRProcessor(
        feature_extractor=Qwen3ASRFeatureExtractor(),
        tokenizer=tokenizer,
        chat_template=CHAT_TEMPLATE,
    )


# ---------------------------------------------------------------------------- forced aligners
ALIGNER_CLASSES = 5000  # time bins of Qwen3-ForcedAligner-0.6B's head (`classify_num`)
SEGMENT_MS = 80  # milliseconds per bin (`timestamp_segment_time`)

# The official aligner input (qwen-asr `Qwen3ForceAlignProcessor.encode_timestamp`) as a chat
# template for `Qwen3ASRProcessor.prepare_forced_aligner_inputs`: the audio placeholder, then each
# word followed by two <timestamp> slots (its start and end). No chat turns: wrapping this in the
# ASR template makes the predicted times late.
ALIGNER_CHAT_TEMPLATE = (
    "{%- for m in messages -%}{%- for c in m.content -%}"
    "{%- if c.type == 'audio' or ('audio' in c) or ('audio_url' in c) -%}"
    "{{- '<|audio_start|><|audio_pad|><|audio_end|>' -}}"
    "{%- elif c.type == 'text' -%}{{- c.text + '<timestamp><timestamp>' -}}"
    "{%- endif -%}{%- endfor -%}{%- endfor -%}"
)


def make_aligner_config(
    tokenizer: PreTrainedTokenizerFast | None,
    size: str | Size = "tiny",
    classes: int = ALIGNER_CLASSES,
    segment_ms: float = SEGMENT_MS,
) -> Qwen3ASRConfig:
    """A transformers-native forced-aligner config: the ASR config with a `classes`-way head."""
    d = make_config(tokenizer, size).to_dict()
    for key in ("id2label", "label2id", "transformers_version", "architectures"):
        d.pop(key, None)
    d["text_config"]["tie_word_embeddings"] = False  # the head classifies time bins, not tokens
    return Qwen3ASRConfig(
        **{**d, "tie_word_embeddings": False},
        num_labels=classes,
        timestamp_segment_time=segment_ms,
        architectures=["Qwen3ASRForTokenClassification"],
    )


def build_aligner(config: Qwen3ASRConfig, seed: int = 0, init_std: float | None = None):
    """A randomly initialised `Qwen3ASRForTokenClassification` (a larger init_std: decisive logits)."""
    from transformers import Qwen3ASRForTokenClassification

    torch.manual_seed(seed)
    model = Qwen3ASRForTokenClassification(config)
    if init_std is not None:
        with torch.no_grad():
            for _name, p in model.named_parameters():
                if p.dim() >= 2:
                    p.normal_(0.0, init_std)
    return model.eval()


def make_aligner_processor(tokenizer: PreTrainedTokenizerFast, segment_ms: float = SEGMENT_MS) -> Qwen3ASRProcessor:
    return Qwen3ASRProcessor(
        feature_extractor=Qwen3ASRFeatureExtractor(),
        tokenizer=tokenizer,
        chat_template=ALIGNER_CHAT_TEMPLATE,
        timestamp_segment_time=segment_ms,
    )
