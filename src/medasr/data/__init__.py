"""Dataset readers: every layout becomes a stream of `Utterance` records.

`read_dataset(spec, split)` finds the layout of a local path by itself; a `kind:` prefix
(`multimed:`, `cv17:`, `librispeech:`, `manifest:`) forces one. Readers check the layout when
called and read lazily; malformed data raises `DataError` naming the file (and line or row).
Nothing is downloaded: fetch datasets first, e.g.
`hf download leduckhai/MultiMed --repo-type dataset --include "English/*" --local-dir DIR`.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from medasr.data.commonvoice import find_tsv, read_cv17
from medasr.data.librispeech import read_librispeech
from medasr.data.manifest import read_manifest, split_answer_prefix, write_manifest
from medasr.data.parquet import columns, parquet_files, read_multimed
from medasr.errors import DataError
from medasr.records import Utterance

__all__ = [
    "KINDS", "detect", "read_cv17", "read_dataset", "read_librispeech", "read_manifest",
    "read_multimed", "split_answer_prefix", "write_manifest",
]

KINDS = ("manifest", "multimed", "cv17", "librispeech")
_ALIASES = {"commonvoice": "cv17", "cv": "cv17", "jsonl": "manifest", "ls": "librispeech"}
MANIFEST_SUFFIXES = (".jsonl", ".ndjson", ".json")


def _parse(spec: str | Path) -> tuple[str | None, Path]:
    text = str(spec)
    kind, sep, rest = text.partition(":")
    kind = _ALIASES.get(kind.lower(), kind.lower())
    if sep and kind in KINDS:
        return kind, Path(rest).expanduser()
    return None, Path(text).expanduser()


def detect(path: str | Path, split: str = "test") -> str:
    """Which reader handles `path`: one of KINDS. Cheap checks first (big trees are not walked)."""
    path = Path(path)
    if path.is_file():
        if path.suffix.lower() in MANIFEST_SUFFIXES:
            return "manifest"
        raise DataError(f"{path}: not a manifest (expected a .jsonl file) nor a dataset folder")
    if not path.is_dir():
        raise DataError(f"{path}: no such file or folder (datasets are read from local copies)")
    if (path / "manifest.jsonl").is_file() or (path / f"{split}.jsonl").is_file():
        return "manifest"
    if (path / "English").is_dir():
        return "multimed"
    if (path / "transcript").is_dir() or find_tsv(path, split) is not None:
        return "cv17"
    shards = parquet_files(path, split) or sorted(path.rglob("*.parquet"))[:1]
    if shards:
        names = columns(shards[0])
        if "sentence" in names:
            return "cv17"
        if "text" in names:
            return "multimed"
        raise DataError(f"{shards[0]}: parquet without a `text` (MultiMed) or `sentence` "
                        f"(Common Voice) column (has: {', '.join(names)})")
    if next(path.rglob("*.trans.txt"), None) is not None:
        return "librispeech"
    raise DataError(f"{path}: unrecognised dataset layout; expected a JSONL manifest, MultiMed "
                    "(English/*.parquet), Common Voice (transcript/en/*.tsv or parquet with "
                    "`sentence`) or LibriSpeech (speaker/chapter/*.trans.txt)")


def read_dataset(spec: str | Path, split: str = "test") -> Iterator[Utterance]:
    """Utterances of the dataset at `spec` (a path, optionally `kind:path`), for `split`.

    Splits: MultiMed train/eval/test; Common Voice train/dev/test; LibriSpeech the subset folder
    (test-clean, ...) when `spec` is the LibriSpeech root; manifests ignore it unless `spec` is
    a folder holding `{split}.jsonl`.
    """
    kind, path = _parse(spec)
    kind = kind or detect(path, split)
    if kind == "manifest":
        if path.is_dir():
            path = path / f"{split}.jsonl" if (path / f"{split}.jsonl").is_file() else path / "manifest.jsonl"
        return read_manifest(path)
    if kind == "multimed":
        return read_multimed(path, split)
    if kind == "cv17":
        return read_cv17(path, split)
    return read_librispeech(path, split)
