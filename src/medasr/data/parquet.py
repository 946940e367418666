"""Parquet shards as Hugging Face publishes them, and the MultiMed reader built on them.

Audio columns hold the HF audio struct `{"bytes": ..., "path": ...}`; the encoded bytes become
the utterance's audio, so nothing is decoded until a model needs it.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

from medasr.errors import DataError
from medasr.records import Utterance

BATCH_ROWS = 64  # rows read at a time: shards hold hundreds of MB of audio

# Requested split -> names a shard may carry for it (HF mirrors call "dev" "validation").
SPLIT_NAMES = {
    "train": ("train",),
    "eval": ("eval", "validation", "dev", "valid"),
    "test": ("test",),
}


def split_names(split: str) -> tuple[str, ...]:
    for names in SPLIT_NAMES.values():
        if split in names:
            return names
    return (split,)


def _pyarrow():
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise DataError("reading parquet datasets needs pyarrow: pip install pyarrow") from None
    return pq


def parquet_files(root: Path, split: str) -> list[Path]:
    """Shards of `split` under `root`: in a folder named after the split (`en/test/0000.parquet`)
    or named after it (`English/test-00000-of-00003.parquet`)."""
    names = split_names(split)
    found = []
    for file in root.rglob("*.parquet"):
        rel = file.relative_to(root)
        stem = file.name.removesuffix(".parquet")
        if any(part in names for part in rel.parts[:-1]) or any(
            stem == n or stem.startswith((f"{n}-", f"{n}_", f"{n}.")) for n in names
        ):
            found.append(file)
    return sorted(found)


def columns(file: Path) -> list[str]:
    try:
        return list(_pyarrow().read_schema(file).names)
    except DataError:
        raise
    except Exception as err:
        raise DataError(f"{file}: not a readable parquet file ({err})") from None


def iter_rows(files: Sequence[Path], wanted: Sequence[str],
              required: Sequence[str]) -> Iterator[tuple[Path, int, dict]]:
    """(shard, row number in shard, row) with the `wanted` columns that exist; DataError if `required` are missing."""
    pq = _pyarrow()
    for file in files:
        names = columns(file)
        missing = [c for c in required if c not in names]
        if missing:
            raise DataError(f"{file}: missing column(s) {', '.join(missing)} (has: {', '.join(names)})")
        try:
            shard = pq.ParquetFile(file)
            number = 0
            for batch in shard.iter_batches(batch_size=BATCH_ROWS, columns=[c for c in wanted if c in names]):
                for row in batch.to_pylist():
                    yield file, number, row
                    number += 1
        except DataError:
            raise
        except Exception as err:
            raise DataError(f"{file}: cannot read parquet rows ({err})") from None


def audio_value(value, file: Path, where: str) -> str | bytes:
    """Encoded bytes of an HF audio cell, or failing that an existing file it points to."""
    if isinstance(value, dict):
        data, path = value.get("bytes"), value.get("path")
        if data:
            return bytes(data)
        if path:
            for candidate in (Path(path), file.parent / path):
                if candidate.is_file():
                    return str(candidate)
            raise DataError(f"{where}: audio has no bytes and its path {path!r} does not exist")
        raise DataError(f"{where}: audio cell has neither bytes nor a path")
    if isinstance(value, (bytes, bytearray)) and value:
        return bytes(value)
    raise DataError(f"{where}: audio cell is empty or of an unexpected type ({type(value).__name__})")


def read_multimed(root: str | Path, split: str = "test") -> Iterator[Utterance]:
    """MultiMed as published (`English/{train,eval,test}-*.parquet`: audio, text, duration).

    `root` is the downloaded dataset folder (holding `English/`) or the `English` folder itself.
    """
    root = Path(root)
    base = root / "English" if (root / "English").is_dir() else root
    if not base.is_dir():
        raise DataError(f"MultiMed folder {root} does not exist")
    files = parquet_files(base, split)
    if not files:
        raise DataError(f"no MultiMed {split!r} shards under {base} (expected English/{split}-*.parquet; "
                        "splits are train, eval, test)")
    return _read_multimed(files, split_names(split)[0])


def _read_multimed(files: list[Path], canonical: str) -> Iterator[Utterance]:
    rows = iter_rows(files, ("audio", "text", "duration"), ("audio", "text"))
    for index, (file, number, row) in enumerate(rows):
        where = f"{file} row {number}"
        text = row["text"]
        if not isinstance(text, str):
            raise DataError(f"{where}: text is {type(text).__name__}, not a string")
        duration = row.get("duration")
        yield Utterance(
            id=f"multimed-{canonical}-{index:06d}",
            audio=audio_value(row["audio"], file, where),
            text=text,
            duration=float(duration) if duration is not None else None,
            dataset="multimed",
        )
