"""The training recipe: every knob in one dataclass, read from YAML and `--set KEY=VALUE`.

Defaults are the seed model card's recipe (yuriyvnv/Qwen3-ASR-1.7B-EN-Medical, itself the
official QwenLM SFT recipe): lr 2e-5, linear schedule, warmup ratio 0.02, per-device batch 64,
gradient accumulation 3 (effective 192), 3 epochs, bf16 mixed precision, gradient checkpointing,
fused AdamW, best checkpoint by validation loss, clips over 30 s filtered out.

Values are converted to each field's declared type, from YAML and from `--set` alike, so
`learning_rate: 1e-3` is a float (plain YAML would read it as a string) and `--set epochs=5` an
int. Dotted keys reach into mapping fields: `--set lora.r=8`, `--set size.layers=2`.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from medasr.errors import UserError

DEFAULT_INIT = "Qwen/Qwen3-ASR-1.7B"  # the base model the seed fine-tuned


class RecipeError(UserError):
    """A recipe file or override that cannot be used; the message names the key."""


@dataclass
class Recipe:
    # ---- data: lists of dataset specs (`medasr.data.read_dataset`), or {path, split, weight}
    train: list = field(default_factory=list)
    valid: list = field(default_factory=list)
    max_duration_s: float = 30.0  # longer clips are dropped (and counted), as the seed does
    concat_fraction: float = 0.0  # add this many (x training clips) compounds of several clips, up to max_duration_s
    edge_silence_s: float = 0.0  # augment: up to this much silence before and after each training clip
    noise_dbfs: list | None = None  # augment: [low, high] RMS level of white noise added to noise_fraction of the clips
    noise_fraction: float = 0.5

    # ---- model
    init: str = DEFAULT_INIT  # hub id or directory (either checkpoint format), or "scratch"
    size: Any = "tiny"  # scratch only: a modelbuild.SIZES name or a mapping of Size fields
    vocab_size: int = 1024  # scratch only: BPE tokenizer trained on the training texts
    lora: dict | None = None  # e.g. {r: 16, alpha: 32, dropout: 0.05, target_modules: [q_proj, v_proj]}

    # ---- optimisation (the seed's values)
    learning_rate: float = 2e-5
    lr_scheduler: str = "linear"
    warmup_ratio: float = 0.02
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    per_device_batch_size: int = 64
    eval_batch_size: int | None = None  # default: per_device_batch_size
    gradient_accumulation: int = 3
    epochs: float = 3.0
    max_steps: int = -1  # > 0 overrides epochs
    precision: str = "auto"  # auto: bf16 where the GPU supports it, else fp32; or bf16, fp16, fp32
    gradient_checkpointing: bool = True
    optim: str = "adamw_torch_fused"  # falls back to adamw_torch where fused AdamW is unavailable
    padding_side: str = "right"
    group_by_length: bool = False  # batches of similar durations (less padding); still reshuffled every epoch
    ctc_weight: float = 0.0  # > 0: add an auxiliary CTC loss on the audio embeddings (from-scratch training aid)
    seed: int = 42

    # ---- validation, checkpoints, logging
    eval_steps: int = 500  # validate (and checkpoint) every N optimizer steps; 0: once per epoch
    save_total_limit: int = 2  # the best checkpoint is always kept in addition
    logging_steps: int = 10
    num_workers: int = 0  # DataLoader worker processes
    threads: int | None = None  # torch CPU threads (None: torch's default)
    resume: str = "auto"  # auto: continue from the last checkpoint in output_dir if any; "no"; or a checkpoint dir

    # ---- outputs
    output_dir: str = "runs/train"
    export_dir: str | None = None  # where the best model goes (default: OUTPUT_DIR/best)
    export_original: bool = False  # also write the best model in the original qwen-asr layout (EXPORT_DIR-original)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def effective_export_dir(self) -> Path:
        return Path(self.export_dir) if self.export_dir else Path(self.output_dir) / "best"


FIELDS = {f.name: f for f in dataclasses.fields(Recipe)}


def _hints() -> dict[str, Any]:
    return typing.get_type_hints(Recipe)


_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0"}


def coerce(key: str, value: Any, hint: Any) -> Any:
    """`value` (from YAML or a --set string) as the type `hint` declares; RecipeError if it cannot be."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(hint)
        is_none = value is None or (isinstance(value, str) and value.strip().lower() in ("none", "null", "~", ""))
        if is_none and type(None) in args:
            return None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return coerce(key, value, arg)
            except RecipeError:
                continue
        raise RecipeError(f"{key}: cannot use {value!r} (expected {hint})")
    if hint is Any:
        return _yaml_value(value) if isinstance(value, str) else value
    if hint is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, (int, str)) and str(value).strip().lower() in _TRUE | _FALSE:
            return str(value).strip().lower() in _TRUE
        raise RecipeError(f"{key}: expected true or false, got {value!r}")
    if hint is int:
        if isinstance(value, bool):
            raise RecipeError(f"{key}: expected an integer, got {value!r}")
        if isinstance(value, int):
            return value
        try:
            number = float(str(value).strip())
        except ValueError:
            raise RecipeError(f"{key}: expected an integer, got {value!r}") from None
        if not number.is_integer():
            raise RecipeError(f"{key}: expected an integer, got {value!r}")
        return int(number)
    if hint is float:
        if isinstance(value, bool):
            raise RecipeError(f"{key}: expected a number, got {value!r}")
        try:
            return float(str(value).strip()) if isinstance(value, str) else float(value)
        except (TypeError, ValueError):
            raise RecipeError(f"{key}: expected a number, got {value!r}") from None
    if hint is str:
        if isinstance(value, (dict, list)):
            raise RecipeError(f"{key}: expected a string, got {value!r}")
        return str(value)
    if hint in (list, dict) or origin in (list, dict):
        base = origin or hint
        if isinstance(value, str):
            value = _yaml_value(value)
        if not isinstance(value, base):
            raise RecipeError(f"{key}: expected a {'list' if base is list else 'mapping'}, got {value!r}")
        return value
    return value


def _yaml_value(text: str) -> Any:
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise RecipeError(f"cannot parse {text!r}: {err}") from None


def _set(data: dict, key: str, raw: Any, hints: dict[str, Any]) -> None:
    top, _, rest = key.partition(".")
    if top not in FIELDS:
        raise RecipeError(f"unknown recipe key {top!r}; known keys: {', '.join(FIELDS)}")
    if not rest:
        data[top] = coerce(top, raw, hints[top])
        return
    # Dotted: set inside a mapping field (lora.r, size.layers); the leaf is read as YAML.
    current = data.get(top)
    if current is None:
        current = {}
    if isinstance(current, str) and top == "size":
        from medasr.model.build import SIZES

        if current not in SIZES:
            raise RecipeError(f"size: unknown size {current!r} (known: {', '.join(SIZES)})")
        current = dataclasses.asdict(SIZES[current])
    if not isinstance(current, dict):
        raise RecipeError(f"{key}: {top} is not a mapping")
    current = dict(current)
    node = current
    parts = rest.split(".")
    for part in parts[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise RecipeError(f"{key}: {part} is not a mapping")
    node[parts[-1]] = _yaml_value(raw) if isinstance(raw, str) else raw
    data[top] = current


def parse_overrides(items: list[str] | None) -> list[tuple[str, str]]:
    """`["lr=1", "a.b=c"]` -> [("lr", "1"), ("a.b", "c")]."""
    out = []
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise RecipeError(f"--set {item!r}: expected KEY=VALUE")
        out.append((key.strip(), value))
    return out


def load_recipe(path: str | Path | None = None, overrides: list[str] | None = None) -> Recipe:
    """Defaults, then the YAML file, then `--set` overrides, each converted to its field's type."""
    hints = _hints()
    data = Recipe().to_dict()
    if path is not None:
        path = Path(path)
        try:
            loaded = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except FileNotFoundError:
            raise RecipeError(f"recipe {path} does not exist") from None
        except yaml.YAMLError as err:
            raise RecipeError(f"recipe {path} is not valid YAML: {err}") from None
        if not isinstance(loaded, dict):
            raise RecipeError(f"recipe {path}: expected a mapping of keys to values")
        for key, value in loaded.items():
            if key not in FIELDS:
                raise RecipeError(f"recipe {path}: unknown key {key!r}; known keys: {', '.join(FIELDS)}")
            data[key] = coerce(key, value, hints[key])
    for key, value in parse_overrides(overrides):
        _set(data, key, value, hints)
    recipe = Recipe(**data)
    validate(recipe)
    return recipe


def validate(r: Recipe) -> None:
    if r.precision not in ("auto", "bf16", "fp16", "fp32"):
        raise RecipeError(f"precision: {r.precision!r}; use auto, bf16, fp16 or fp32")
    if r.padding_side not in ("left", "right"):
        raise RecipeError(f"padding_side: {r.padding_side!r}; use left or right")
    for key in ("per_device_batch_size", "gradient_accumulation"):
        if getattr(r, key) < 1:
            raise RecipeError(f"{key} must be at least 1")
    if r.learning_rate <= 0:
        raise RecipeError("learning_rate must be positive")
    if not 0 <= r.warmup_ratio < 1:
        raise RecipeError("warmup_ratio must be in [0, 1)")
    if r.eval_steps < 0:
        raise RecipeError("eval_steps must be >= 0 (0: once per epoch)")
    if r.concat_fraction < 0:
        raise RecipeError("concat_fraction must be >= 0")
    if r.edge_silence_s < 0:
        raise RecipeError("edge_silence_s must be >= 0")
    if r.noise_dbfs is not None:
        ok = len(r.noise_dbfs) == 2 and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in r.noise_dbfs)
        if not ok or not r.noise_dbfs[0] <= r.noise_dbfs[1] <= 0:
            raise RecipeError(f"noise_dbfs: {r.noise_dbfs!r}; expected [low, high] in dBFS, low <= high <= 0, e.g. [-75, -45]")
    if not 0 <= r.noise_fraction <= 1:
        raise RecipeError("noise_fraction must be in [0, 1]")
    if r.ctc_weight < 0:
        raise RecipeError("ctc_weight must be >= 0")
    if r.init == "scratch" and r.lora:
        raise RecipeError("lora needs a pretrained init, not init: scratch")


def write_recipe(recipe: Recipe | dict, path: str | Path, extra: dict | None = None) -> Path:
    """The effective configuration as YAML (loadable again with --config)."""
    data = recipe.to_dict() if isinstance(recipe, Recipe) else dict(recipe)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = yaml.safe_dump(data, sort_keys=False, default_flow_style=None)
    if extra:
        text += "# resolved at run time:\n" + "".join(
            f"#   {line}\n" for line in yaml.safe_dump(extra, sort_keys=False).splitlines()
        )
    path.write_text(text, encoding="utf-8")
    return path
