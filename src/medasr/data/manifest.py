"""JSONL manifests: one utterance per line, `{"audio", "text", "duration"?, "id"?, "prompt"?}`.

Also reads the official Qwen3-ASR fine-tuning recipe's lines, whose text carries the answer
prefix (`language English<asr_text>...`): the prefix is moved into `language`.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Iterator
from pathlib import Path

from medasr.errors import DataError
from medasr.records import Utterance

_ANSWER_PREFIX = re.compile(r"^\s*language\s+([^<]*?)\s*<asr_text>", re.DOTALL)
_REMOTE = ("http://", "https://", "data:")


def split_answer_prefix(text: str) -> tuple[str, str | None]:
    """`language English<asr_text>Hello.` -> ("Hello.", "English"); other text -> (text, None)."""
    match = _ANSWER_PREFIX.match(text)
    if not match:
        return text, None
    return text[match.end():], match.group(1) or None


def read_manifest(path: str | Path, check_audio: bool = True) -> Iterator[Utterance]:
    """Utterances of a JSONL manifest. Relative audio paths resolve against the manifest's folder.

    Raises DataError with the line number for bad JSON, missing or mistyped fields, and (with
    `check_audio`) audio files that do not exist.
    """
    path = Path(path)
    try:
        fh = path.open(encoding="utf-8")
    except FileNotFoundError:
        raise DataError(f"manifest {path} does not exist") from None
    except OSError as err:
        raise DataError(f"cannot read manifest {path}: {err.strerror}") from None
    return _read(fh, path, check_audio)


def _read(fh, path: Path, check_audio: bool) -> Iterator[Utterance]:
    base = path.parent.resolve()
    with fh:
        for number, line in enumerate(fh, 1):
            where = f"{path}:{number}"
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                raise DataError(f"{where}: not valid JSON ({err.msg} at column {err.colno})") from None
            except UnicodeDecodeError:
                raise DataError(f"{where}: not UTF-8 text") from None
            if not isinstance(row, dict):
                raise DataError(f"{where}: expected a JSON object, got {type(row).__name__}")
            yield _utterance(row, where, base, path.stem, number, check_audio)


def _utterance(row: dict, where: str, base: Path, stem: str, number: int, check_audio: bool) -> Utterance:
    for key in ("audio", "text"):
        if key not in row:
            raise DataError(f"{where}: missing \"{key}\"")
        if not isinstance(row[key], str):
            raise DataError(f"{where}: \"{key}\" must be a string, not {type(row[key]).__name__}")
    audio = row["audio"]
    if not audio:
        raise DataError(f"{where}: \"audio\" is empty")
    if not audio.startswith(_REMOTE):
        full = Path(audio).expanduser()
        if not full.is_absolute():
            full = base / full
        if check_audio and not full.is_file():
            raise DataError(f"{where}: audio file {full} does not exist")
        audio = str(full)
    text, language = split_answer_prefix(row["text"])
    duration = row.get("duration")
    if duration is not None:
        if isinstance(duration, bool) or not isinstance(duration, (int, float)) or duration < 0:
            raise DataError(f"{where}: \"duration\" must be a non-negative number of seconds")
        duration = float(duration)
    prompt = row.get("prompt") or ""
    if not isinstance(prompt, str):
        raise DataError(f"{where}: \"prompt\" must be a string")
    return Utterance(
        id=str(row.get("id") or f"{stem}-{number:06d}"),
        audio=audio,
        text=text,
        duration=duration,
        dataset=str(row.get("dataset") or stem),
        prompt=prompt,
        language=language or str(row.get("language") or "English"),
    )


def _extension(data: bytes) -> str:
    if data[:4] == b"RIFF":
        return ".wav"
    if data[:4] == b"fLaC":
        return ".flac"
    if data[:4] == b"OggS":
        return ".ogg"
    if data[:3] == b"ID3" or (len(data) > 1 and data[0] == 0xFF and data[1] & 0xE0 == 0xE0):
        return ".mp3"
    if data[4:8] == b"ftyp":
        return ".m4a"
    if data[:4] == b"\x1a\x45\xdf\xa3":
        return ".webm"
    return ".audio"


def write_manifest(utterances: Iterable[Utterance], path: str | Path,
                   audio_dir: str | Path | None = None) -> int:
    """Write utterances as JSONL; returns the number written.

    Audio held as bytes (parquet datasets) is saved under `audio_dir` (default: `audio/` next to
    the manifest). Paths inside the manifest's folder are written relative to it, so the folder
    can be moved as a whole. The manifest appears only once complete.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    audio_dir = Path(audio_dir) if audio_dir else path.parent / "audio"
    base = path.parent.resolve()
    partial = path.with_name(path.name + ".partial")
    names: set[str] = set()
    count = 0
    with partial.open("w", encoding="utf-8") as fh:
        for utt in utterances:
            audio = utt.audio
            if isinstance(audio, (bytes, bytearray, memoryview)):
                audio = bytes(audio)
                stem = re.sub(r"[^A-Za-z0-9._-]+", "_", utt.id) or "utt"
                name, k = stem, 1
                while name in names:  # two ids that clean up to the same file name
                    k += 1
                    name = f"{stem}-{k}"
                names.add(name)
                audio_dir.mkdir(parents=True, exist_ok=True)
                target = audio_dir / (name + _extension(audio))
                target.write_bytes(audio)
                audio = str(target)
            if not audio.startswith(_REMOTE):
                full = Path(audio).resolve()
                audio = os.path.relpath(full, base) if full.is_relative_to(base) else str(full)
            row = {"id": utt.id, "audio": audio, "text": utt.text}
            if utt.duration is not None:
                row["duration"] = round(float(utt.duration), 3)
            if utt.prompt:
                row["prompt"] = utt.prompt
            if utt.dataset:
                row["dataset"] = utt.dataset
            if utt.language != "English":
                row["language"] = utt.language
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
            count += 1
    partial.replace(path)
    return count
