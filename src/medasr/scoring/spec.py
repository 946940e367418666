"""What an evaluation runs over, shared by `evaluate`, `report` and the Ray job
(`medasr.scale.evaluate`): dataset specs and their rows (written-form references), torchrun
shards, the predictions files and their records, and the run's configuration."""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path

from medasr.defaults import MAX_CONTEXT_TOKENS
from medasr.errors import DataError, UserError
from medasr.output.recordlog import field_key, read_records
from medasr.text.normalize import written_form

MAX_DURATION_S = 30.0  # Qwen3-ASR's window; the seed filters longer clips out as well
SYSTEMS = {"model": "fine-tuned", "baseline": "zero-shot"}  # file name -> role in the report
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*")
ID = field_key("id")  # predictions are keyed by the dataset's utterance id
# Same prefixes as medasr.data's `kind:path` specs (its parser is private).
_KINDS = {"manifest": "manifest", "jsonl": "manifest", "multimed": "multimed", "cv17": "cv17",
          "cv": "cv17", "commonvoice": "cv17", "librispeech": "librispeech", "ls": "librispeech"}


# ------------------------------------------------------------------------------ datasets
@dataclass(frozen=True)
class DatasetSpec:
    name: str  # used in file names and report rows
    spec: str  # what read_dataset gets: a path, optionally `kind:path`

    @property
    def kind_and_path(self) -> tuple[str | None, Path]:
        kind, sep, rest = self.spec.partition(":")
        if sep and kind.lower() in _KINDS:
            return _KINDS[kind.lower()], Path(rest).expanduser()
        return None, Path(self.spec).expanduser()


def parse_dataset_arg(text: str) -> DatasetSpec:
    """`NAME=PATH` (PATH may carry a `kind:` prefix) -> DatasetSpec; UserError otherwise."""
    name, sep, spec = text.partition("=")
    if not sep or not name.strip() or not spec.strip():
        raise UserError(f"--dataset expects NAME=PATH (e.g. multimed=/data/MultiMed), got {text!r}")
    if not _NAME.fullmatch(name.strip()):
        raise UserError(f"--dataset name {name!r}: use letters, digits, '_' and '-' only "
                        "(it names the predictions files)")
    return DatasetSpec(name.strip(), spec.strip())


@dataclass
class Row:
    index: int  # position in the dataset
    id: str
    reference: str  # written form: what is scored
    reference_raw: str
    duration: float | None  # from the dataset's metadata, if it has any
    dropped: str | None = None  # decided without decoding the audio


def read_utterances(spec: DatasetSpec, split: str, limit: int | None):
    from medasr.data import read_dataset

    utterances = read_dataset(spec.spec, split)
    return utterances if limit is None else islice(utterances, limit)


def list_rows(spec: DatasetSpec, split: str, limit: int | None = None) -> list[Row]:
    """Every row of the dataset (the first `limit`), without keeping any audio."""
    rows, seen = [], {}
    for index, u in enumerate(read_utterances(spec, split, limit)):
        if u.id in seen:
            raise DataError(f"dataset {spec.name}: utterance id {u.id!r} appears twice (rows "
                            f"{seen[u.id]} and {index}); ids must be unique to match predictions")
        seen[u.id] = index
        ref = written_form(u.text)
        dropped = None
        if not ref:
            dropped = "empty reference"
        elif u.duration is not None and u.duration > MAX_DURATION_S:
            dropped = f"longer than {MAX_DURATION_S:g} s"
        rows.append(Row(index, u.id, ref, u.text, u.duration, dropped))
    return rows


# ------------------------------------------------------------------------------ sharding
@dataclass(frozen=True)
class Shard:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @staticmethod
    def from_env(env: dict | None = None) -> Shard:
        env = os.environ if env is None else env
        try:
            world = int(env.get("WORLD_SIZE", "1"))
            rank = int(env.get("RANK", "0"))
            local = int(env.get("LOCAL_RANK", str(rank)))
        except ValueError:
            raise UserError("WORLD_SIZE, RANK and LOCAL_RANK must be integers") from None
        if world < 1 or not 0 <= rank < world:
            raise UserError(f"RANK={rank} is not within WORLD_SIZE={world}")
        return Shard(rank, world, local)

    def take(self, items: list) -> list:
        return items[self.rank :: self.world_size]

    def device(self, requested: str) -> str:
        """With several processes, `auto` means this process's own GPU."""
        if requested == "auto" and self.world_size > 1:
            import torch

            if torch.cuda.is_available():
                return f"cuda:{self.local_rank % torch.cuda.device_count()}"
        return requested


# ------------------------------------------------------------------------------ predictions
def predictions_path(out_dir: Path, system: str, dataset: str, shard: Shard) -> Path:
    part = f".rank{shard.rank}" if shard.world_size > 1 else ""
    return Path(out_dir) / "predictions" / f"{system}__{dataset}{part}.jsonl"


def prediction_parts(out_dir: Path, system: str, dataset: str) -> list[Path]:
    """Every file holding predictions of `system` on `dataset`, whatever world size wrote it."""
    pattern = re.compile(re.escape(f"{system}__{dataset}") + r"(\.rank\d+)?\.jsonl")
    folder = Path(out_dir) / "predictions"
    return sorted(p for p in folder.glob(f"{system}__{dataset}*.jsonl") if pattern.fullmatch(p.name))


def read_predictions(paths: Iterable[Path]) -> dict[str, dict]:
    """id -> record over the files (complete lines only; a duplicate id keeps its first record)."""
    out: dict[str, dict] = {}
    for path in paths:
        for key, record in read_records(path, ID).items():
            out.setdefault(key, record)
    return out


def prediction_record(row: Row, audio: str, **fields) -> dict:
    rec = {"id": row.id, "audio": audio, "reference": row.reference, "reference_raw": row.reference_raw,
           "hypothesis": None, "duration": row.duration, "hit_token_cap": False, "error": None, "dropped": None}
    rec.update(fields)
    return rec


# ------------------------------------------------------------------------------ running
@dataclass
class EvalConfig:
    model: str
    datasets: list[DatasetSpec]
    output_dir: str
    baseline: str | None = None
    split: str = "test"
    limit: int | None = None
    normalizer: str = "basic"
    terms: str | None = None
    batch_size: int = 16
    max_new_tokens: int | None = None
    language: str | None = "English"
    context: str | None = None
    max_context_tokens: int = MAX_CONTEXT_TOKENS
    device: str = "auto"
    dtype: str = "auto"
    quantize: str | None = None  # "int8": CPU int8 linear layers (medasr.model.quantize)
    resamples: int = 1000
    seed: int = 42
    command: str = ""
    options: dict = field(default_factory=dict)
    ray: object | None = None  # medasr.scale.cluster.RayOptions (settled): transcribe as a Ray Data job

    def systems(self) -> dict[str, str]:
        out = {"model": self.model}
        if self.baseline:
            out["baseline"] = self.baseline
        return out
