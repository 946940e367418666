"""Common Voice 17 (English by default), in the layouts it is distributed in:

- the Hugging Face release (`mozilla-foundation/common_voice_17_0`): `transcript/en/{split}.tsv`
  with MP3 clips in tar shards `audio/en/{split}/en_{split}_{k}.tar`, or those shards extracted
  (any folders below `audio/en/{split}/`);
- Mozilla's own tarball: `en/{split}.tsv` with `en/clips/*.mp3` (and `clip_durations.tsv`);
- parquet mirrors (e.g. `fixie-ai/common_voice_17_0`: `en/{split}/*.parquet`, columns
  `sentence` and `audio`).

Splits: train, dev (also accepted: validation, eval), test, and any other tsv by name.
"""

from __future__ import annotations

import csv
import os
import sys
import tarfile
from collections.abc import Iterator
from pathlib import Path

from medasr.data.parquet import audio_value, iter_rows, parquet_files
from medasr.errors import DataError
from medasr.records import Utterance

_TSV_SPLIT = {"validation": "dev", "eval": "dev", "valid": "dev"}


def find_tsv(root: Path, split: str, language: str = "en") -> Path | None:
    name = _TSV_SPLIT.get(split, split)
    for candidate in (root / "transcript" / language / f"{name}.tsv", root / language / f"{name}.tsv",
                      root / f"{name}.tsv"):
        if candidate.is_file():
            return candidate
    return None


def read_cv17(root: str | Path, split: str = "test", language: str = "en") -> Iterator[Utterance]:
    """Common Voice utterances of `split`, in tsv order (or shard order for parquet mirrors)."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"Common Voice folder {root} does not exist")
    tsv = find_tsv(root, split, language)
    if tsv is not None:
        return _read_tsv(root, tsv, _TSV_SPLIT.get(split, split), language)
    base = root / language if (root / language).is_dir() else root
    files = parquet_files(base, split)  # "dev" also finds validation shards
    if files:
        return _read_parquet(files)
    raise DataError(f"no Common Voice {split!r} data under {root}: expected transcript/{language}/"
                    f"{_TSV_SPLIT.get(split, split)}.tsv (official layout), {language}/{split}.tsv with "
                    f"clips/, or {split} parquet shards")


def _rows(tsv: Path) -> Iterator[tuple[int, dict]]:
    csv.field_size_limit(sys.maxsize)
    with tsv.open(encoding="utf-8", newline="") as fh:
        # Sentences contain quotes: the files are tab-separated without any quoting.
        reader = csv.DictReader(fh, delimiter="\t", quoting=csv.QUOTE_NONE)
        missing = [c for c in ("path", "sentence") if c not in (reader.fieldnames or [])]
        if missing:
            raise DataError(f"{tsv}: missing column(s) {', '.join(missing)} "
                            f"(has: {', '.join(reader.fieldnames or [])})")
        yield from enumerate(reader, 2)  # line numbers, counting the header as line 1


def _durations(tsv: Path) -> dict[str, float]:
    """Mozilla's tarball lists clip durations (ms) in clip_durations.tsv; HF's release does not."""
    file = tsv.parent / "clip_durations.tsv"
    if not file.is_file():
        return {}
    out = {}
    with file.open(encoding="utf-8") as fh:
        next(fh, None)
        for line in fh:
            clip, _, ms = line.rstrip("\n").partition("\t")
            try:
                out[clip] = float(ms) / 1000
            except ValueError:
                continue
    return out


def _read_tsv(root: Path, tsv: Path, split: str, language: str) -> Iterator[Utterance]:
    flat = [d for d in (tsv.parent / "clips", root / "clips", root / language / "clips") if d.is_dir()]
    shard_dir = root / "audio" / language / split
    extracted: dict[str, Path] | None = None
    shards: dict[str, tuple[Path, tarfile.TarInfo]] | None = None
    open_tars: dict[Path, tarfile.TarFile] = {}
    durations = _durations(tsv)
    try:
        for number, row in _rows(tsv):
            clip, sentence = row.get("path"), row.get("sentence")
            if not clip or sentence is None:
                raise DataError(f"{tsv}:{number}: empty path or sentence")
            name = os.path.basename(clip)
            audio: str | bytes | None = next((str(d / clip) for d in flat if (d / clip).is_file()), None)
            if audio is None and shard_dir.is_dir():
                if extracted is None:
                    extracted, shards = _index_shard_dir(shard_dir)
                if name in extracted:
                    audio = str(extracted[name])
                elif name in shards:
                    tar_path, member = shards[name]
                    if tar_path not in open_tars:
                        open_tars[tar_path] = tarfile.open(tar_path)  # noqa: SIM115 (kept open across clips, closed at the end)
                    audio = open_tars[tar_path].extractfile(member).read()
            if audio is None:
                places = [str(d) for d in flat] + ([str(shard_dir)] if shard_dir.is_dir() else [])
                raise DataError(f"{tsv}:{number}: clip {clip} not found (looked in: "
                                f"{', '.join(places) or 'no clips folder or audio shards found'})")
            yield Utterance(id=Path(name).stem, audio=audio, text=sentence,
                            duration=durations.get(clip), dataset="cv17",
                            language="English" if language == "en" else language)
    finally:
        for tar in open_tars.values():
            tar.close()


def _index_shard_dir(shard_dir: Path) -> tuple[dict[str, Path], dict[str, tuple[Path, tarfile.TarInfo]]]:
    """Clip name -> extracted file, and clip name -> (tar shard, member), for one split."""
    extracted: dict[str, Path] = {}
    shards: dict[str, tuple[Path, tarfile.TarInfo]] = {}
    for folder, _, files in os.walk(shard_dir):
        for file in sorted(files):
            path = Path(folder) / file
            if file.endswith(".tar"):
                try:
                    with tarfile.open(path) as tar:
                        for member in tar.getmembers():
                            if member.isfile():
                                shards.setdefault(os.path.basename(member.name), (path, member))
                except (tarfile.TarError, OSError) as err:
                    raise DataError(f"{path}: not a readable tar shard ({err})") from None
            else:
                extracted.setdefault(file, path)
    return extracted, shards


def _read_parquet(files: list[Path]) -> Iterator[Utterance]:
    rows = iter_rows(files, ("path", "sentence", "audio"), ("sentence", "audio"))
    for index, (file, number, row) in enumerate(rows):
        where = f"{file} row {number}"
        if not isinstance(row["sentence"], str):
            raise DataError(f"{where}: sentence is {type(row['sentence']).__name__}, not a string")
        clip = row.get("path") or ""
        yield Utterance(
            id=Path(os.path.basename(clip)).stem if clip else f"cv17-{index:07d}",
            audio=audio_value(row["audio"], file, where),
            text=row["sentence"],
            dataset="cv17",
        )
