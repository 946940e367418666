"""Find, load and convert a Qwen3-ForcedAligner checkpoint (hub id, local directory, "demo").

The forced aligner is the Qwen3-ASR audio encoder and decoder with a linear head that classifies
each `<timestamp>` slot into a time bin (the project reference notes, alignment.md). Two formats exist, as
for the ASR model (`medasr.model.checkpoint`):
- original (qwen-asr, `Qwen/Qwen3-ForcedAligner-0.6B`): `thinker_config.model_type =
  "qwen3_forced_aligner"`, `thinker_config.classify_num` bins, top-level `timestamp_token_id`
  and `timestamp_segment_time` (ms per bin); the head is `thinker.lm_head.weight` (untied).
  Converted on load, like the ASR model.
- transformers (`Qwen/Qwen3-ForcedAligner-0.6B-hf`): `Qwen3ASRForTokenClassification`, head
  `score`, `num_labels` bins; `timestamp_segment_time` is a processor argument.
Safetensors only; no remote code is ever run. Heavy imports happen inside the functions, so the
command line can read `DEFAULT_ALIGNER` without loading torch.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from medasr.defaults import ASSETS, DEFAULT_ALIGNER  # defined once there (light); re-exported here

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

DEMO_ALIGNER_DIR = ASSETS / "demo-aligner"
ALIGNER_THINKER_TYPE = "qwen3_forced_aligner"
_HEAD_ORIGINAL, _HEAD_HF = "thinker.lm_head.weight", "score.weight"


@dataclass
class LoadedAligner:
    model: torch.nn.Module  # Qwen3ASRForTokenClassification, eval mode
    processor: object  # Qwen3ASRProcessor whose chat template renders the official aligner input
    path: Path
    format: str
    device: torch.device
    dtype: torch.dtype

    @property
    def timestamp_token_id(self) -> int:
        return int(self.model.config.timestamp_token_id)

    @property
    def segment_ms(self) -> float:
        """Milliseconds per time bin (`timestamp_segment_time`, 80 for the official aligner)."""
        return float(self.processor.timestamp_segment_time)

    @property
    def num_bins(self) -> int:
        return int(self.model.config.num_labels)


def resolve_aligner(aligner: str) -> Path:
    """A local directory for `aligner`: "demo", a directory, or a hub id (downloaded or cached)."""
    from medasr.model.checkpoint import resolve

    return resolve(aligner, flag="--aligner", demo_dir=DEMO_ALIGNER_DIR)


def _config(path: Path) -> dict:
    from medasr.model.checkpoint import _read_json

    return _read_json(path / "config.json")


def require_aligner(path: Path) -> None:
    """Raise ModelLoadError unless `path` holds a forced aligner (either format)."""
    from medasr.errors import ModelLoadError
    from medasr.model.checkpoint import is_aligner

    if not is_aligner(path):
        raise ModelLoadError(
            f"{path} is not a forced aligner: its config.json has neither thinker_config.model_type "
            f"{ALIGNER_THINKER_TYPE!r} (qwen-asr format) nor architectures "
            "['Qwen3ASRForTokenClassification'] (transformers format). A Qwen3-ASR speech recognition "
            f"checkpoint goes to --model; for word times pass --aligner {DEFAULT_ALIGNER} (or 'demo')"
        )


# ---------------------------------------------------------------------------- configs
def original_to_hf_aligner_config(config: dict):
    """The original (`thinker_config`) aligner config as a transformers `Qwen3ASRConfig`."""
    from transformers import Qwen3ASRConfig

    from medasr.errors import ModelLoadError
    from medasr.model.checkpoint import original_to_hf_config

    thinker = config["thinker_config"]
    if "classify_num" not in thinker:
        raise ModelLoadError("the aligner's config.json lacks thinker_config.classify_num (its number of time bins)")
    d = original_to_hf_config(config).to_dict()
    for key in ("id2label", "label2id", "transformers_version", "architectures"):
        d.pop(key, None)
    d["text_config"]["tie_word_embeddings"] = False
    return Qwen3ASRConfig(
        **{**d, "tie_word_embeddings": False},
        num_labels=int(thinker["classify_num"]),
        timestamp_segment_time=float(config.get("timestamp_segment_time", 80)),
        architectures=["Qwen3ASRForTokenClassification"],
    )


def hf_to_original_aligner_config(hf_config, segment_ms: float, tokenizer=None) -> dict:
    """The nested layout qwen-asr's `Qwen3ForcedAligner` reads."""
    from medasr.model.checkpoint import hf_to_original_config

    config = hf_to_original_config(hf_config, tokenizer)
    config["thinker_config"]["model_type"] = ALIGNER_THINKER_TYPE
    config["thinker_config"]["classify_num"] = int(hf_config.num_labels)
    config["thinker_config"]["text_config"]["tie_word_embeddings"] = False
    config["tie_word_embeddings"] = False
    config["timestamp_segment_time"] = segment_ms
    return config


# ---------------------------------------------------------------------------- loading
def load_aligner(aligner: str, device: str = "auto", dtype: str = "auto") -> LoadedAligner:
    """Load a forced aligner of either format onto a device, ready for `medasr.pipeline.align`."""
    from medasr.model.checkpoint import TRANSFORMERS, check_files, detect_format, pick_device, pick_dtype

    path = resolve_aligner(aligner)
    check_files(path)
    require_aligner(path)
    fmt = detect_format(path)
    dev = pick_device(device)
    dt = pick_dtype(dtype, dev)
    net = _load_transformers(path, dt) if fmt == TRANSFORMERS else _load_original(path, dt)
    net.to(dev).eval()
    return LoadedAligner(net, load_aligner_processor(path, fmt, net.config), path, fmt, dev, dt)


def load_aligner_processor(path: Path, fmt: str, config=None):
    """The checkpoint's processor with medasr's rendering of the official aligner input.

    The template is always medasr's own (`modelbuild.ALIGNER_CHAT_TEMPLATE`): a checkpoint whose
    template wraps the words in the ASR chat turns would shift every time late.
    """
    from medasr.model.build import ALIGNER_CHAT_TEMPLATE, SEGMENT_MS
    from medasr.model.checkpoint import load_processor

    processor = load_processor(path, fmt)
    processor.chat_template = ALIGNER_CHAT_TEMPLATE
    segment = getattr(config, "timestamp_segment_time", None) if config is not None else None
    if segment is None and fmt != "transformers":
        segment = _config(path).get("timestamp_segment_time")
    if segment is not None:
        processor.timestamp_segment_time = float(segment)
    elif getattr(processor, "timestamp_segment_time", None) is None:
        processor.timestamp_segment_time = float(SEGMENT_MS)
    return processor


def _load_transformers(path: Path, dtype):
    from transformers import Qwen3ASRForTokenClassification

    from medasr.errors import ModelLoadError

    net, info = Qwen3ASRForTokenClassification.from_pretrained(
        str(path), dtype=dtype, use_safetensors=True, output_loading_info=True
    )
    # from_pretrained only warns about missing weights and initialises them at random: a head
    # that was not in the file would give random times, so that is an error here.
    if info.get("missing_keys") or info.get("mismatched_keys"):
        raise ModelLoadError(
            f"weights in {path} do not match the forced-aligner architecture of its config: "
            f"missing {sorted(info.get('missing_keys') or [])[:5]}, mismatched {list(info.get('mismatched_keys') or [])[:5]}"
        )
    return net


def _load_original(path: Path, dtype):
    from transformers import Qwen3ASRForTokenClassification

    from medasr.model.checkpoint import build_from_state, original_to_hf_key, read_state_dict

    config = original_to_hf_aligner_config(_config(path))
    state = {_HEAD_HF if key == _HEAD_ORIGINAL else original_to_hf_key(key): value.to(dtype)
             for key, value in read_state_dict(path).items()}  # fmt: skip
    return build_from_state(Qwen3ASRForTokenClassification, config, state, dtype, f"{path}", "forced-aligner")


# ---------------------------------------------------------------------------- saving, converting
def save_aligner_transformers(model, processor, dst: Path) -> None:
    """What `Qwen3ASRForTokenClassification.from_pretrained` and `AutoProcessor` load directly."""
    model.config.timestamp_segment_time = float(processor.timestamp_segment_time)
    model.save_pretrained(str(dst), safe_serialization=True)
    processor.save_pretrained(str(dst))


def save_aligner_original(model, processor, dst: Path) -> None:
    """The layout qwen-asr's `Qwen3ForcedAligner.from_pretrained` reads (thinker_config, thinker.*).

    `medasr.model.checkpoint.save_original` writes the shared parts (tokenizer files that transformers
    4.57 reads, feature extractor); the aligner's config and head are then put in place.
    """
    from safetensors.torch import load_file, save_file

    from medasr.model.checkpoint import save_original

    dst = Path(dst)
    save_original(model, processor, dst)
    segment = float(processor.timestamp_segment_time)
    config = hf_to_original_aligner_config(model.config, segment, processor.tokenizer)
    config["architectures"] = ["Qwen3ASRForConditionalGeneration"]
    (dst / "config.json").write_text(json.dumps(config, indent=2), encoding="utf-8")
    state = load_file(str(dst / "model.safetensors"))
    state[_HEAD_ORIGINAL] = state.pop(_HEAD_HF)
    save_file(state, str(dst / "model.safetensors"), metadata={"format": "pt"})
    (dst / "generation_config.json").unlink(missing_ok=True)  # an aligner does not generate


def convert_aligner(src: str, dst: str | Path, to: str = "transformers") -> Path:
    """Write a copy of the aligner `src` in the other format (`medasr convert` calls this)."""
    from medasr.errors import ModelLoadError

    dst = Path(dst)
    if dst.exists() and any(dst.iterdir()):
        raise ModelLoadError(f"destination {dst} exists and is not empty")
    if to not in ("transformers", "original"):
        raise ModelLoadError(f"unknown format {to!r}: use transformers or original")
    loaded = load_aligner(src, device="cpu", dtype="float32")
    dst.mkdir(parents=True, exist_ok=True)
    if to == "transformers":
        save_aligner_transformers(loaded.model, loaded.processor, dst)
    else:
        save_aligner_original(loaded.model, loaded.processor, dst)
    return dst
