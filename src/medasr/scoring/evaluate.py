"""`medasr evaluate`: run a model (and optionally a baseline) over test sets, keep every
prediction, and write a report (`medasr.scoring.report`).

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
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from medasr.errors import DataError, UserError
from medasr.output.recordlog import RecordLog
from medasr.scoring import medical, report
from medasr.scoring.spec import (
    ID,
    MAX_DURATION_S,
    DatasetSpec,
    EvalConfig,
    Row,
    Shard,
    list_rows,
    prediction_parts,
    prediction_record,
    predictions_path,
    read_predictions,
    read_utterances,
)

log = logging.getLogger(__name__)

# Transcribes one system's pending rows elsewhere (the Ray job, `medasr.scale.evaluate`) and
# returns rows transcribed per dataset: (system, model, [(spec, rows)], out_dir, cfg) -> counts.
RemoteTranscriber = Callable[[str, str, list[tuple[DatasetSpec, list[Row]]], Path, EvalConfig], dict[str, int]]


def transcribe_rows(asr, spec: DatasetSpec, split: str, limit: int | None, todo: list[Row], path: Path,
                    cfg: EvalConfig, bar=None) -> int:
    """Transcribe the `todo` rows of a dataset, appending one record each to `path`."""
    from medasr.audio.decode import describe, load_audio
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
                write(prediction_record(row, label, hypothesis=t.text, duration=round(audio.duration, 3),
                              hit_token_cap=bool(t.hit_token_cap), error=t.error))

            if chunk:
                asr.transcribe([a for _, a, _ in chunk], language=cfg.language, context=cfg.context,
                               batch_size=cfg.batch_size, max_new_tokens=cfg.max_new_tokens,
                               errors="keep", on_result=done)
                chunk.clear()

        chunk: list = []  # (row, decoded audio, audio label)
        for u in read_utterances(spec, split, limit):
            if not wanted:  # the rest of the dataset is someone else's or done
                break
            if (row := wanted.pop(u.id, None)) is None:
                continue
            label = u.audio if isinstance(u.audio, str) else describe(u.audio)
            if row.dropped:
                write(prediction_record(row, label, dropped=row.dropped))
                continue
            try:
                audio = load_audio(u.audio, name=u.id)
            except AudioError as err:
                write(prediction_record(row, label, error=str(err)))
                continue
            if audio.duration > MAX_DURATION_S:  # datasets without durations: known only now
                write(prediction_record(row, label, duration=round(audio.duration, 3),
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
    decoding = {"language": cfg.language, "context": cfg.context, "max_new_tokens": cfg.max_new_tokens, "dtype": dtype}
    if cfg.quantize and cfg.quantize != "none":  # absent otherwise: runs made before the option still resume
        decoding["quantize"] = cfg.quantize
    return {
        "systems": cfg.systems(),
        "split": cfg.split,
        "datasets": {d.name: d.spec for d in cfg.datasets},
        "decoding": decoding,
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
    import torch

    from medasr.model.checkpoint import pick_device, pick_dtype

    if cfg.ray is not None:  # the workers' device, not this process's
        device = torch.device(cfg.ray.device(cfg.device))
        return str(device), str(pick_dtype(cfg.dtype, device)).removeprefix("torch.")
    device = pick_device(shard.device(cfg.device))
    return str(device), str(pick_dtype(cfg.dtype, device)).removeprefix("torch.")


def evaluate(cfg: EvalConfig, shard: Shard | None = None, remote: RemoteTranscriber | None = None) -> dict | None:
    """Run the evaluation; rank 0 returns the report (also written to `cfg.output_dir`).

    With `cfg.ray` set, `remote` transcribes each system's pending rows (the caller passes
    `medasr.scale.evaluate.transcribe_system`: the job layer sits above scoring)."""
    from tqdm import tqdm

    from medasr.data import read_dataset
    from medasr.text.normalize import get_normalizer

    shard = shard or Shard.from_env()
    if cfg.ray is not None and shard.world_size > 1:
        raise UserError("--ray and torchrun both spread the work: run one process with --ray, or torchrun without it")
    out_dir = Path(cfg.output_dir)
    norm = get_normalizer(cfg.normalizer)
    terms = medical.default_terms(cfg.terms)  # a bad --terms file fails before any model loads
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
        if cfg.ray is not None:  # the same rows and records, transcribed on a Ray cluster
            if remote is None:
                raise UserError("evaluation with cfg.ray needs a remote transcriber (medasr.scale.evaluate.transcribe_system)")
            work = [(spec, todo[spec.name]) for spec, _ in datasets if todo[spec.name]]
            transcribed[system] = remote(system, model, work, out_dir, cfg)
            continue
        from medasr.transcribe import load_model

        asr = load_model(model, device=device, dtype=cfg.dtype, batch_size=cfg.batch_size, max_context_tokens=cfg.max_context_tokens,
                         quantize=cfg.quantize)
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
    label = f"{dtype}, {cfg.quantize} weights" if cfg.quantize and cfg.quantize != "none" else dtype
    run = {"device": device, "dtype": label, "world_size": shard.world_size, "transcribed_now": transcribed}
    result = report.build(cfg, datasets, predictions, norm, terms, run)
    report.write(result, out_dir)
    return result


def _empty_cuda_cache() -> None:
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()
