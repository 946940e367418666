"""`medasr evaluate --ray`: one system's pending rows of every dataset as one Ray Data job.

The rows, their records and the predictions files are `medasr.scoring.evaluate`'s: rows dropped by
metadata are written at once, every other row gets the record the local path writes (its
hypothesis, or why it was dropped, or the audio error), appended to
`predictions/{system}__{dataset}.jsonl` by this process as each row completes. A rerun reads
those files and sends only the rows still missing.
"""

from __future__ import annotations

import sys
from pathlib import Path

from medasr.errors import DataError
from medasr.output.recordlog import RecordLog
from medasr.scale.job import Item, Outcome, Settings, model_ref, run
from medasr.scoring.spec import ID, MAX_DURATION_S, DatasetSpec, EvalConfig, Row, Shard, prediction_record, predictions_path, read_utterances


def transcribe_system(system: str, model: str, work: list[tuple[DatasetSpec, list[Row]]], out_dir: Path,
                      cfg: EvalConfig) -> dict[str, int]:
    """Transcribe the pending `work` rows of each dataset with `model`; returns rows per dataset."""
    from tqdm import tqdm

    from medasr.audio.decode import describe

    options = cfg.ray
    settings = Settings(model_ref(model), options.device(cfg.device), cfg.dtype, cfg.batch_size, cfg.language,
                        cfg.context, cfg.max_new_tokens, decode_first=True, max_duration_s=MAX_DURATION_S,
                        max_context_tokens=cfg.max_context_tokens, quantize=cfg.quantize)
    logs = {spec.name: RecordLog(predictions_path(out_dir, system, spec.name, Shard()), ID) for spec, _ in work}
    meta: list[tuple[str, Row, str]] = []  # item index -> (dataset, row, audio label)
    bar = tqdm(total=sum(len(rows) for _, rows in work), desc=f"{system} (ray)", unit="utt", file=sys.stderr,
               mininterval=1.0 if sys.stderr.isatty() else 30.0)

    def write(dataset: str, record: dict) -> None:
        logs[dataset].append(record)  # whole lines, flushed, as each row completes
        bar.update(1)

    def items():
        for spec, todo in work:
            wanted = {r.id: r for r in todo}
            for u in read_utterances(spec, cfg.split, cfg.limit):
                if not wanted:
                    break
                if (row := wanted.pop(u.id, None)) is None:
                    continue
                label = u.audio if isinstance(u.audio, str) else describe(u.audio)
                if row.dropped:
                    write(spec.name, prediction_record(row, label, dropped=row.dropped))
                    continue
                meta.append((spec.name, row, label))
                yield Item(len(meta) - 1, _readable(u.audio), u.id)
            if wanted:
                raise DataError(f"dataset {spec.name}: {len(wanted)} rows listed earlier were not found on a second read")

    def done(o: Outcome) -> None:
        dataset, row, label = meta[o.index]
        if o.load_error is not None:
            record = prediction_record(row, label, error=o.load_error)
        elif o.dropped is not None:
            record = prediction_record(row, label, duration=round(o.duration, 3), dropped=o.dropped)
        else:
            t = o.transcript
            record = prediction_record(row, label, hypothesis=t.text, duration=round(o.duration, 3),
                             hit_token_cap=bool(t.hit_token_cap), error=t.error)
        write(dataset, record)

    try:
        for log_file in logs.values():
            log_file.open()  # a torn last line of a killed run is set aside first
        stats = run(items(), settings, options, done)
    finally:
        bar.close()
        for log_file in logs.values():
            log_file.close()
    print(stats.summary(), file=sys.stderr)
    return {spec.name: len(rows) for spec, rows in work}


def _readable(audio: str | bytes) -> str | bytes:
    """Audio as every node can read it: a relative path made absolute; URLs and bytes as they are."""
    if isinstance(audio, str) and "://" not in audio and not audio.startswith("data:"):
        return str(Path(audio).expanduser().absolute())
    return audio
