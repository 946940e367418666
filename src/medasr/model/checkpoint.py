"""Find a Qwen3-ASR checkpoint (hub id, local directory, "demo"), detect its format, convert, load.

Two formats exist (the project reference notes, qwen3-asr.md):
- original ("qwen-asr"): config nested under `thinker_config`, weights `thinker.*`;
  what the official package, its fine-tuning recipe and vLLM use.
- transformers-native: flat config, weights `model.audio_tower.*`, `model.language_model.*`,
  `model.multi_modal_projector.*`. transformers does not read the original format (it silently
  builds a default-sized model), so medasr converts it on load.
Weights are read from safetensors only and no remote code is ever run.
"""

from __future__ import annotations

import copy
import json
import logging
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from medasr.defaults import ASSETS, DEFAULT_MODEL
from medasr.errors import ModelLoadError
from medasr.model import quantize as quant
from medasr.model import weights
from medasr.model.prompt import AUDIO_END, AUDIO_PAD, AUDIO_START, LANGUAGES

log = logging.getLogger(__name__)

DEMO_DIR = ASSETS / "demo"

ORIGINAL, TRANSFORMERS = "original", "transformers"

# Applied in this order, these map the original key set exactly onto the transformers one.
_TO_HF = [
    ("thinker.model.", "model.language_model."),
    ("thinker.lm_head.", "lm_head."),
    ("thinker.", "model."),
    ("model.audio_tower.proj1.", "model.multi_modal_projector.linear_1."),
    ("model.audio_tower.proj2.", "model.multi_modal_projector.linear_2."),
]
_TO_ORIGINAL = [
    ("model.multi_modal_projector.linear_1.", "thinker.audio_tower.proj1."),
    ("model.multi_modal_projector.linear_2.", "thinker.audio_tower.proj2."),
    ("model.language_model.", "thinker.model."),
    ("lm_head.", "thinker.lm_head."),
    ("model.audio_tower.", "thinker.audio_tower."),
]
_HUB_FILES = ["*.json", "*.safetensors", "*.txt", "*.jinja", "*.model"]
_TOKENIZER_FILES = [("tokenizer.json",), ("vocab.json", "merges.txt")]


@dataclass
class Loaded:
    model: torch.nn.Module
    processor: object
    path: Path
    format: str
    device: torch.device
    dtype: torch.dtype
    quantize: str | None = None  # "int8": linear layers int8 (model/quantize.py); None: as `dtype`


def _rename(key: str, table: list[tuple[str, str]]) -> str:
    for old, new in table:
        if key.startswith(old):
            key = new + key[len(old) :]
    return key


def original_to_hf_key(key: str) -> str:
    return _rename(key, _TO_HF)


def hf_to_original_key(key: str) -> str:
    for old, new in _TO_ORIGINAL:
        if key.startswith(old):
            return new + key[len(old) :]
    return key


# ---------------------------------------------------------------------------- finding a model
def resolve(model: str, flag: str = "--model", demo_dir: Path = DEMO_DIR) -> Path:
    """A local directory for `model`: "demo", a directory, or a hub id (downloaded or cached).

    `flag` names the option in error messages; `demo_dir` is what "demo" means (the forced
    aligner has its own)."""
    if model == "demo":
        if not (demo_dir / "config.json").exists():
            raise ModelLoadError(
                f"the bundled demo model is missing from this installation ({demo_dir}); "
                f"reinstall medasr or pass {flag} PATH"
            )
        return demo_dir
    path = Path(model).expanduser()
    if path.is_dir():
        return path
    if path.exists():
        raise ModelLoadError(f"{flag} {model!r} is a file; pass the checkpoint's directory")
    if model.startswith((".", "/", "~")) or model.count("/") != 1:
        raise ModelLoadError(f"model directory {model!r} does not exist (nor is it a hub id owner/name)")
    from huggingface_hub import snapshot_download

    try:  # the cache first: no network needed for a model already here
        return Path(snapshot_download(model, allow_patterns=_HUB_FILES, local_files_only=True))
    except Exception:
        pass
    try:
        return Path(snapshot_download(model, allow_patterns=_HUB_FILES))
    except Exception as err:
        raise ModelLoadError(
            f"the weights of {model!r} are not on this machine and the hub could not be reached "
            f"({type(err).__name__}). Download them where there is network "
            f"(`hf download {model}`) and pass the directory with {flag} PATH"
        ) from err


def detect_format(path: Path) -> str:
    config = _read_json(path / "config.json")
    return ORIGINAL if "thinker_config" in config else TRANSFORMERS


def is_aligner(path: Path) -> bool:
    """A Qwen3-ForcedAligner checkpoint, in either format (`medasr.model.aligner` loads it)."""
    config = _read_json(path / "config.json")
    thinker_type = str((config.get("thinker_config") or {}).get("model_type", ""))
    return "forced_aligner" in thinker_type or "Qwen3ASRForTokenClassification" in (config.get("architectures") or [])


def check_files(path: Path) -> None:
    """Raise naming every file a loadable checkpoint lacks."""
    missing = []
    if not (path / "config.json").exists():
        missing.append("config.json")
    if not _weight_files(path):
        if any(path.glob("*.bin")) or any(path.glob("*.pt")):
            raise ModelLoadError(
                f"{path} holds only pickle weights (*.bin/*.pt); medasr loads safetensors only. "
                "Convert them with a trusted tool first"
            )
        missing.append("model.safetensors (or model-*.safetensors shards)")
    if not any(all((path / f).exists() for f in group) for group in _TOKENIZER_FILES):
        missing.append("tokenizer.json (or vocab.json + merges.txt)")
    if not (path / "tokenizer_config.json").exists():
        missing.append("tokenizer_config.json")
    if missing:
        raise ModelLoadError(f"checkpoint {path} is incomplete; missing: {', '.join(missing)}")


def _weight_files(path: Path) -> list[Path]:
    index = path / "model.safetensors.index.json"
    if index.exists():
        names = sorted(set(_read_json(index)["weight_map"].values()))
        return [path / n for n in names]
    single = path / "model.safetensors"
    return [single] if single.exists() else sorted(path.glob("model-*.safetensors"))


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ModelLoadError(f"{path} is missing") from None
    except json.JSONDecodeError as err:
        raise ModelLoadError(f"{path} is not valid JSON: {err}") from None


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    state: dict[str, torch.Tensor] = {}
    for file in _weight_files(path):
        if not file.exists():
            raise ModelLoadError(f"checkpoint {path} is incomplete; missing: {file.name}")
        with safe_open(str(file), framework="pt", device="cpu") as f:
            for key in f.keys():  # noqa: SIM118 (safe_open objects are not iterable)
                state[key] = f.get_tensor(key)
    return state


# ---------------------------------------------------------------------------- configs
_DROP_COMMON = {
    "_name_or_path", "architectures", "dtype", "torch_dtype", "model_type", "use_bfloat16",
    "transformers_version", "output_attentions", "output_hidden_states", "return_dict",
    "tokenizer_class", "torchscript", "id2label", "label2id", "problem_type",
}  # fmt: skip
_DROP_AUDIO = _DROP_COMMON | {"max_source_positions", "conv_chunksize", "pad_token_id", "bos_token_id", "eos_token_id", "tie_word_embeddings"}
_DROP_TEXT = _DROP_COMMON | {
    "decoder_sparse_step", "moe_intermediate_size", "num_experts_per_tok", "num_experts",
    "norm_topk_prob", "output_router_logits", "router_aux_loss_coef", "mlp_only_layers",
}  # fmt: skip


def original_to_hf_config(config: dict):
    """Flatten `thinker_config` into a transformers `Qwen3ASRConfig`."""
    from transformers import Qwen3ASRConfig

    thinker = config["thinker_config"]
    audio = {k: v for k, v in thinker.get("audio_config", {}).items() if k not in _DROP_AUDIO}
    audio["model_type"] = "qwen3_asr_encoder"
    audio["max_position_embeddings"] = 13  # 13 post-CNN positions per 1 s chunk
    text = {k: v for k, v in thinker.get("text_config", {}).items() if k not in _DROP_TEXT}
    text["model_type"] = "qwen3"
    # M-RoPE drops out: for audio-only input the three position streams are equal, so plain
    # RoPE with the same theta is the same function.
    rope = dict(text.pop("rope_scaling", None) or {})
    theta = text.pop("rope_theta", rope.get("rope_theta", 1000000.0))
    text.pop("rope_parameters", None)
    text["rope_parameters"] = {"rope_type": "default", "rope_theta": float(theta)}
    tie = bool(text.get("tie_word_embeddings", config.get("tie_word_embeddings", True)))
    text["tie_word_embeddings"] = tie
    kwargs = {"audio_config": audio, "text_config": text, "tie_word_embeddings": tie}
    for key in ("audio_token_id", "initializer_range"):
        if key in thinker:
            kwargs[key] = thinker[key]
    for key in ("timestamp_token_id", "pad_token_id", "eos_token_id"):
        if key in thinker:
            kwargs[key] = thinker[key]
        elif key in config:
            kwargs[key] = config[key]
    return Qwen3ASRConfig(**kwargs)


def hf_to_original_config(hf_config, tokenizer=None) -> dict:
    """The nested `thinker_config` layout that qwen-asr and vLLM read."""
    audio = hf_config.audio_config.to_dict()
    text = hf_config.text_config.to_dict()
    for key in ("max_position_embeddings", "model_type", "transformers_version", "dtype"):
        audio.pop(key, None)
    audio.update({"max_source_positions": 1500, "conv_chunksize": 500})
    for key in ("model_type", "transformers_version", "dtype"):
        text.pop(key, None)
    rope = text.pop("rope_parameters", None) or {}
    half = text["head_dim"] // 2
    section = [half - 2 * (half * 5 // 16), half * 5 // 16, half * 5 // 16]  # 128 -> [24, 20, 20]
    text["rope_theta"] = rope.get("rope_theta", 1000000.0)
    text["rope_scaling"] = {"rope_type": "default", "mrope_section": section, "interleaved": True, "mrope_interleaved": True}
    thinker = {
        "audio_config": audio,
        "text_config": text,
        "audio_token_id": hf_config.audio_token_id,
        "initializer_range": hf_config.initializer_range,
        "model_type": "qwen3_asr_thinker",
    }
    if tokenizer is not None:
        thinker["audio_start_token_id"] = tokenizer.convert_tokens_to_ids(AUDIO_START)
        thinker["audio_end_token_id"] = tokenizer.convert_tokens_to_ids(AUDIO_END)
    eos = hf_config.eos_token_id
    return {
        "architectures": ["Qwen3ASRForConditionalGeneration"],
        "model_type": "qwen3_asr",
        "thinker_config": thinker,
        "support_languages": sorted(LANGUAGES.values()),
        "timestamp_token_id": hf_config.timestamp_token_id,
        "pad_token_id": hf_config.pad_token_id,
        "eos_token_id": list(eos) if isinstance(eos, (list, tuple)) else eos,
        "tie_word_embeddings": hf_config.tie_word_embeddings,
        "torch_dtype": "float32",
    }


# ---------------------------------------------------------------------------- loading
def pick_device(device: str = "auto") -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ModelLoadError(f"--device {device} asked for CUDA, but no CUDA device is available here")
    return dev


def pick_dtype(dtype: str, device: torch.device) -> torch.dtype:
    if dtype == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    table = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
    if dtype not in table:
        raise ModelLoadError(f"unknown dtype {dtype!r}: use auto, float32, bfloat16 or float16")
    return table[dtype]


def load_processor(path: Path, fmt: str | None = None):
    """A Qwen3ASRProcessor for either format (the original one ships no transformers processor)."""
    from transformers import AutoTokenizer, Qwen3ASRFeatureExtractor, Qwen3ASRProcessor

    from medasr.model.build import CHAT_TEMPLATE

    fmt = fmt or detect_format(path)
    if fmt == TRANSFORMERS and (path / "processor_config.json").exists():
        from transformers import AutoProcessor

        return AutoProcessor.from_pretrained(str(path))
    tokenizer = AutoTokenizer.from_pretrained(str(path))
    for attr, token in (("audio_token", AUDIO_PAD), ("audio_bos_token", AUDIO_START), ("audio_eos_token", AUDIO_END)):
        if getattr(tokenizer, attr, None) is None:
            setattr(tokenizer, attr, token)
    return Qwen3ASRProcessor(
        feature_extractor=Qwen3ASRFeatureExtractor(),
        tokenizer=tokenizer,
        chat_template=CHAT_TEMPLATE,
    )


def load(model: str = DEFAULT_MODEL, device: str = "auto", dtype: str = "auto", quantize: str | None = None) -> Loaded:
    """Load a checkpoint of either format onto a device, ready to generate; `quantize="int8"`
    (CPU): int8 linear layers with dynamic int8 activations (`medasr.model.quantize`)."""
    from transformers import Qwen3ASRForConditionalGeneration

    path = resolve(model)
    check_files(path)
    if is_aligner(path):
        raise ModelLoadError(
            f"{path} is a forced aligner (word timestamps), not a speech recognition model: "
            "pass it as --aligner, and a Qwen3-ASR checkpoint as --model"
        )
    fmt = detect_format(path)
    dev = pick_device(device)
    dt = pick_dtype(dtype, dev)
    mode = quant.check(quantize, dev, dt)
    if fmt == TRANSFORMERS and (mode or _stored_dtype(path) not in (None, dt)):
        net = _load_transformers_streamed(path, dt, mode)
    elif fmt == TRANSFORMERS:  # used as stored: transformers maps the file, no copy
        net = Qwen3ASRForConditionalGeneration.from_pretrained(str(path), dtype=dt, use_safetensors=True)
    else:
        net = _load_original(path, dt, mode)
    net.to(dev).eval()
    loaded = Loaded(net, load_processor(path, fmt), path, fmt, dev, dt, mode)
    weights.release_memory()  # the loading's temporaries, out of the resident set
    return loaded


def _stored_dtype(path: Path) -> torch.dtype | None:
    """The floating dtype of the checkpoint's first weight file (None: no floating tensor)."""
    first = _weight_files(path)[:1]
    kinds = {e.dtype for e in weights.index(first).values() if e.dtype.is_floating_point}
    return next(iter(kinds)) if len(kinds) == 1 else None


def _load_transformers_streamed(path: Path, dtype: torch.dtype, quantize: str | None):
    """A transformers-format checkpoint converted or quantized tensor by tensor (`model.weights`)."""
    from transformers import GenerationConfig, Qwen3ASRConfig, Qwen3ASRForConditionalGeneration

    cls = Qwen3ASRForConditionalGeneration
    config = Qwen3ASRConfig.from_pretrained(str(path))
    net = weights.build(cls, config, weights.index(_weight_files(path)), dtype, quantize, f"{path}", "Qwen3-ASR")
    _materialise_buffers(net, config, cls)
    if not quantize:
        net.to(dtype)
    if (path / "generation_config.json").exists():
        net.generation_config = GenerationConfig.from_pretrained(str(path))
    return net


def _load_original(path: Path, dtype: torch.dtype, quantize: str | None = None):
    """The original format, renamed and converted tensor by tensor (`model.weights`)."""
    from transformers import GenerationConfig, Qwen3ASRForConditionalGeneration

    cls = Qwen3ASRForConditionalGeneration
    config = original_to_hf_config(_read_json(path / "config.json"))
    tensors = weights.index(_weight_files(path), original_to_hf_key)
    net = weights.build(cls, config, tensors, dtype, quantize, f"{path}", "Qwen3-ASR")
    _materialise_buffers(net, config, cls)
    if not quantize:
        net.to(dtype)
    eos = config.eos_token_id
    net.generation_config = GenerationConfig(
        eos_token_id=list(eos) if isinstance(eos, (list, tuple)) else eos,
        pad_token_id=config.pad_token_id,
        do_sample=False,
        max_new_tokens=512,
    )
    return net


def build_from_state(cls, config, state: dict, dtype: torch.dtype, where: str, what: str):
    """`cls(config)` holding exactly `state` (converted keys), without initialising weights that are
    then overwritten: built on the meta device, every weight assigned, the buffers rebuilt. Any
    missing or unexpected weight is a ModelLoadError naming `what` architecture it did not fit."""
    with torch.device("meta"):
        net = cls(config)
    expected = set(net.state_dict())
    missing, unexpected = sorted(expected - set(state)), sorted(set(state) - expected)
    if missing or unexpected:
        raise ModelLoadError(
            f"weights in {where} do not match the {what} architecture of its config: "
            f"missing {missing[:5]}{'...' if len(missing) > 5 else ''}, "
            f"unexpected {unexpected[:5]}{'...' if len(unexpected) > 5 else ''}"
        )
    net.load_state_dict(state, strict=True, assign=True)
    if getattr(config, "tie_word_embeddings", False):
        net.tie_weights()
    # Non-persistent buffers (rotary frequencies, sinusoid positions) are rebuilt off the meta device.
    _materialise_buffers(net, config, cls)
    return net.to(dtype)


def _materialise_buffers(net, config, cls) -> None:
    """Give buffers still on the meta device the values a fresh `cls(config)` computes."""
    fresh = None
    for name, buf in list(net.named_buffers()):
        if buf.device.type != "meta":
            continue
        if fresh is None:  # parameters on the meta device: a full model's weights are never allocated
            from accelerate import init_empty_weights

            with torch.device("cpu"), init_empty_weights(include_buffers=False):
                fresh = dict(cls._from_config(copy.deepcopy(config)).named_buffers())
        module_name, _, attr = name.rpartition(".")
        module = net.get_submodule(module_name)
        persistent = attr not in getattr(module, "_non_persistent_buffers_set", set())
        module.register_buffer(attr, fresh[name], persistent=persistent)


# ---------------------------------------------------------------------------- converting


def save_transformers(model, processor, dst: Path) -> None:
    model.save_pretrained(str(dst), safe_serialization=True)
    processor.save_pretrained(str(dst))


def save_original(model, processor, dst: Path) -> None:
    """The layout qwen-asr, its fine-tuning recipe and vLLM read."""
    dst.mkdir(parents=True, exist_ok=True)
    tokenizer = processor.tokenizer
    config = hf_to_original_config(model.config, tokenizer)
    (dst / "config.json").write_text(json.dumps(config, indent=2), encoding="utf-8")
    state = {hf_to_original_key(k): v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    state = {k: v.clone() for k, v in state.items()}  # tied tensors must not share storage in safetensors
    save_file(state, str(dst / "model.safetensors"), metadata={"format": "pt"})
    tokenizer.save_pretrained(str(dst))
    tok_cfg = _read_json(dst / "tokenizer_config.json")
    # transformers 4.57 (qwen-asr's pin) reads the audio token attributes only from an
    # `extra_special_tokens` dict, and fails on the list that transformers 5 writes there.
    extra = tok_cfg.pop("extra_special_tokens", None)
    if isinstance(extra, list):
        tok_cfg["additional_special_tokens"] = extra
    tok_cfg["extra_special_tokens"] = {"audio_token": AUDIO_PAD, "audio_bos_token": AUDIO_START, "audio_eos_token": AUDIO_END}
    tok_cfg["tokenizer_class"] = "Qwen2Tokenizer"
    (dst / "tokenizer_config.json").write_text(json.dumps(tok_cfg, indent=2), encoding="utf-8")
    fe = processor.feature_extractor
    preprocessor = {
        "feature_extractor_type": "WhisperFeatureExtractor",
        "feature_size": fe.feature_size,
        "sampling_rate": fe.sampling_rate,
        "hop_length": fe.hop_length,
        "chunk_length": fe.chunk_length,
        "n_fft": fe.n_fft,
        "n_samples": fe.n_samples,
        "nb_max_frames": fe.nb_max_frames,
        "padding_side": "right",
        "padding_value": 0.0,
        "dither": 0.0,
        "return_attention_mask": True,
        "processor_class": "Qwen3ASRProcessor",
    }
    (dst / "preprocessor_config.json").write_text(json.dumps(preprocessor, indent=2), encoding="utf-8")
    from medasr.model.build import CHAT_TEMPLATE

    (dst / "chat_template.json").write_text(json.dumps({"chat_template": CHAT_TEMPLATE}, indent=2), encoding="utf-8")
    gen = {"eos_token_id": config["eos_token_id"], "pad_token_id": config["pad_token_id"], "do_sample": False, "max_new_tokens": 512}
    (dst / "generation_config.json").write_text(json.dumps(gen, indent=2), encoding="utf-8")

