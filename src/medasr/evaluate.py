"""`medasr evaluate`: run a model (and optionally a baseline) over test sets, keep every
prediction, and write a report (`medasr.report`).

1. Each dataset is listed once (`list_rows`): the rows read (up to `limit`), their written-form
   references, and the rows dropped without decoding (empty reference, metadata duration > 30 s).
2. For each system, each process transcribes its shard of the rows that no predictions file
   holds yet, appending one JSON line per row as results arrive (flushed), so a killed run
   resumes where it stopped. Every row gets exactly one line: a hypothesis, or why it was
   dropped, or the audio error.
3. Rank 0 waits until every row of every system is in some predictions file, then scores.

Sharding follows torchrun's environment (WORLD_SIZE, RANK, LOCAL_RANK): rank r takes rows
r, r + W, r + 2W, ... and writes `predictions/{system}__{dataset}.rank{r}.jsonl`.
"""

from __future__ import annotations

import gc
import json
import logging
import os
import re
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path

from medasr.errors import DataError, UserError
from medasr.outputs import RecordLog, field_key, read_records
from medasr.text import written_form

log = logging.getLogger(__name__)

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


def _read(spec: DatasetSpec, split: str, limit: int | None):
    from medasr.data import read_dataset

    utterances = read_dataset(spec.spec, split)
    return utterances if limit is None else islice(utterances, limit)


def list_rows(spec: DatasetSpec, split: str, limit: int | None = None) -> list[Row]:
    """Every row of the dataset (the first `limit`), without keeping any audio."""
    rows, seen = [], {}
    for index, u in enumerate(_read(spec, split, limit)):
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


def _record(row: Row, audio: str, **fields) -> dict:
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
    device: str = "auto"
    dtype: str = "auto"
    resamples: int = 1000
    seed: int = 42
    command: str = ""
    options: dict = field(default_factory=dict)

    def systems(self) -> dict[str, str]:
        out = {"model": self.model}
        if self.baseline:
            out["baseline"] = self.baseline
        return out


def transcribe_rows(asr, spec: DatasetSpec, split: str, limit: int | None, todo: list[Row], path: Path,
                    cfg: EvalConfig, bar=None) -> int:
    """Transcribe the `todo` rows of a dataset, appending one record each to `path`."""
    from medasr.audio import describe, load_audio
    from medasr.errors import AudioError

    wanted = {r.id: r for r in todo}
    chunk_size = max(4 * cfg.batch_size, 32)  # decoded clips held at once; sorted into batches
    with RecordLog(path, ID) as log_file:  # a torn last line of a killed run is set aside first

        def write(record: dict) -> None:
            log_file.append(record)  # whole lines, flushed: a killed run loses at most the batch in flight
            if bar is not None:
                bar.update(1)

        def flush(chunk: list) -> None:
            def done(i, t):
                row, audio, label = chunk[i]
                write(_record(row, label, hypothesis=t.text, duration=round(audio.duration, 3),
                              hit_token_cap=bool(t.hit_token_cap), error=t.error))

            if chunk:
                asr.transcribe([a for _, a, _ in chunk], language=cfg.language, context=cfg.context,
                               batch_size=cfg.batch_size, max_new_tokens=cfg.max_new_tokens,
                               errors="keep", on_result=done)
                chunk.clear()

        chunk: list = []  # (row, decoded audio, audio label)
        for u in _read(spec, split, limit):
            if not wanted:  # the rest of the dataset is someone else's or done
                break
            if (row := wanted.pop(u.id, None)) is None:
                continue
            label = u.audio if isinstance(u.audio, str) else describe(u.audio)
            if row.dropped:
                write(_record(row, label, dropped=row.dropped))
                continue
            try:
                audio = load_audio(u.audio, name=u.id)
            except AudioError as err:
                write(_record(row, label, error=str(err)))
                continue
            if audio.duration > MAX_DURATION_S:  # datasets without durations: known only now
                write(_record(row, label, duration=round(audio.duration, 3),
                              dropped=f"longer than {MAX_DURATION_S:g} s"))
                continue
            chunk.append((row, audio, label))
            if len(chunk) >= chunk_size:
                flush(chunk)
        flush(chunk)
    if wanted:  # the dataset changed between listing and reading
        raise DataError(f"dataset {spec.name}: {len(wanted)} rows listed earlier were not found on a second read")
    return len(todo)


def pending(out_dir: Path, system: str, spec: DatasetSpec, rows: list[Row], shard: Shard) -> list[Row]:
    done = read_predictions(prediction_parts(out_dir, system, spec.name))
    return [r for r in shard.take(rows) if r.id not in done]


def wait_for_parts(out_dir: Path, systems: Iterable[str], datasets: list[tuple[DatasetSpec, list[Row]]],
                   shard: Shard, poll_s: float = 2.0, note_every_s: float = 60.0) -> None:
    """Rank 0's barrier: until every row of every system is in some predictions part. Based on
    the files' contents, so stale state from an earlier run can never release it early."""
    if shard.world_size == 1:
        return
    torch_dist = sys.modules.get("torch.distributed")
    if torch_dist is not None and torch_dist.is_available() and torch_dist.is_initialized():
        torch_dist.barrier()
    systems = list(systems)
    last_note = time.monotonic()
    while True:
        missing = {}
        for spec, rows in datasets:
            for system in systems:
                done = read_predictions(prediction_parts(out_dir, system, spec.name))
                n = sum(r.id not in done for r in rows)
                if n:
                    missing[f"{system}/{spec.name}"] = n
        if not missing:
            return
        if time.monotonic() - last_note >= note_every_s:
            last_note = time.monotonic()
            print("medasr evaluate: rank 0 waiting for the other ranks: "
                  + ", ".join(f"{k} {v} rows" for k, v in missing.items()), file=sys.stderr)
        time.sleep(poll_s)


def _settings(cfg: EvalConfig, dtype: str) -> dict:
    """What the predictions depend on; a resumed run must match it."""
    return {
        "systems": cfg.systems(),
        "split": cfg.split,
        "datasets": {d.name: d.spec for d in cfg.datasets},
        "decoding": {"language": cfg.language, "context": cfg.context,
                     "max_new_tokens": cfg.max_new_tokens, "dtype": dtype},
    }


def check_settings(out_dir: Path, settings: dict, write: bool) -> None:
    """Refuse to mix predictions of different models or decoding settings in one folder."""
    path = Path(out_dir) / "run.json"
    old = json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
    problems = []
    for system, model in settings["systems"].items():
        if old.get("systems", {}).get(system, model) != model:
            problems.append(f"--{system} {old['systems'][system]} (now {model})")
    for name, spec in settings["datasets"].items():
        if old.get("datasets", {}).get(name, spec) != spec:
            problems.append(f"--dataset {name}={old['datasets'][name]} (now {spec})")
    for key in ("split", "decoding"):
        if key in old and old[key] != settings[key]:
            problems.append(f"{key} {old[key]} (now {settings[key]})")
    if problems:
        raise UserError(f"{out_dir} holds predictions made with " + "; ".join(problems)
                        + ": use another --output-dir, or delete its predictions to redo them")
    if write:
        merged = {**old, **settings,
                  "systems": {**old.get("systems", {}), **settings["systems"]},
                  "datasets": {**old.get("datasets", {}), **settings["datasets"]}}
        partial = path.with_name("run.json.partial")
        partial.write_text(json.dumps(merged, indent=2) + "\n", encoding="utf-8")
        partial.replace(path)  # other ranks read it whole or not at all


def _resolved(cfg: EvalConfig, shard: Shard) -> tuple[str, str]:
    from medasr.checkpoint import pick_device, pick_dtype

    device = pick_device(shard.device(cfg.device))
    return str(device), str(pick_dtype(cfg.dtype, device)).removeprefix("torch.")


def evaluate(cfg: EvalConfig, shard: Shard | None = None) -> dict | None:
    """Run the evaluation; rank 0 returns the report (also written to `cfg.output_dir`)."""
    from tqdm import tqdm

    from medasr import metrics, report
    from medasr.data import read_dataset
    from medasr.text import get_normalizer

    shard = shard or Shard.from_env()
    out_dir = Path(cfg.output_dir)
    norm = get_normalizer(cfg.normalizer)
    terms = metrics.default_terms(cfg.terms)  # a bad --terms file fails before any model loads
    for spec in cfg.datasets:  # layout and split checked before hours of transcription
        it = read_dataset(spec.spec, cfg.split)
        getattr(it, "close", lambda: None)()
    device, dtype = _resolved(cfg, shard)
    out_dir.mkdir(parents=True, exist_ok=True)
    check_settings(out_dir, _settings(cfg, dtype), write=shard.rank == 0)
    datasets = [(spec, list_rows(spec, cfg.split, cfg.limit)) for spec in cfg.datasets]

    transcribed: dict[str, dict[str, int]] = {}
    for system, model in cfg.systems().items():
        todo = {spec.name: pending(out_dir, system, spec, rows, shard) for spec, rows in datasets}
        if not any(todo.values()):
            continue  # all done: a rerun only rebuilds the report (e.g. with another normaliser)
        from medasr.transcribe import load_model

        asr = load_model(model, device=device, dtype=cfg.dtype, batch_size=cfg.batch_size)
        prefix = f"[rank {shard.rank}] " if shard.world_size > 1 else ""
        for spec, _rows in datasets:
            if not todo[spec.name]:
                continue
            path = predictions_path(out_dir, system, spec.name, shard)
            with tqdm(total=len(todo[spec.name]), desc=f"{prefix}{system} {spec.name}", unit="utt",
                      file=sys.stderr, mininterval=1.0 if sys.stderr.isatty() else 30.0) as bar:
                n = transcribe_rows(asr, spec, cfg.split, cfg.limit, todo[spec.name], path, cfg, bar)
            transcribed.setdefault(system, {})[spec.name] = n
        del asr
        gc.collect()
        _empty_cuda_cache()

    if shard.rank != 0:
        return None
    wait_for_parts(out_dir, cfg.systems(), datasets, shard)
    predictions = {
        spec.name: {s: read_predictions(prediction_parts(out_dir, s, spec.name)) for s in cfg.systems()}
        for spec, _ in datasets
    }
    run = {"device": device, "dtype": dtype, "world_size": shard.world_size, "transcribed_now": transcribed}
    result = report.build(cfg, datasets, predictions, norm, terms, run)
    report.write(result, out_dir)
    return result


def _empty_cuda_cache() -> None:
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()
