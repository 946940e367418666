"""`medasr convert`'s one entry: a Qwen3-ASR or a Qwen3-ForcedAligner checkpoint written in the
other format. The dispatch lives here, above both loaders, so neither imports the other's converter."""

from __future__ import annotations

from pathlib import Path

from medasr.errors import ModelLoadError
from medasr.model.aligner import convert_aligner
from medasr.model.checkpoint import ORIGINAL, TRANSFORMERS, check_files, is_aligner, load, resolve, save_original, save_transformers


def convert(src: str, dst: str | Path, to: str = TRANSFORMERS) -> Path:
    """Write a copy of `src` in the other format (weights, config, tokenizer, feature extractor, chat template)."""
    path = resolve(src)
    check_files(path)
    if is_aligner(path):
        return convert_aligner(str(path), dst, to=to)
    dst = Path(dst)
    if dst.exists() and any(dst.iterdir()):
        raise ModelLoadError(f"destination {dst} exists and is not empty")
    loaded = load(str(path), device="cpu", dtype="float32")
    dst.mkdir(parents=True, exist_ok=True)
    if to == TRANSFORMERS:
        save_transformers(loaded.model, loaded.processor, dst)
    elif to == ORIGINAL:
        save_original(loaded.model, loaded.processor, dst)
    else:
        raise ModelLoadError(f"unknown format {to!r}: use transformers or original")
    return dst
