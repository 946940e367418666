"""Trainer checkpoints that a kill at any moment cannot make unusable.

The Trainer writes `checkpoint-N/` in place: weights, optimizer, scheduler, RNG states, and
`trainer_state.json` last; then it deletes old checkpoints beyond `save_total_limit`. A kill
during the save leaves a half-written folder, a kill during the clean-up a half-deleted one.
So every save is closed by a marker, `medasr-complete.json`, listing each file and its size,
written (atomically) only once all processes have finished writing; a save into a folder
first removes any old marker there. `newest_complete` picks the checkpoint to resume from: the
highest-numbered one whose marker matches its files, whose trainer state parses and whose
weights and optimizer state are present and readable (checked cheaply: safetensors headers
and sizes, zip directories). Checkpoints without a marker (older medasr, or a kill between
the save and the marker) count when those content checks pass: `trainer_state.json` is
written after everything else, so a readable one means the save finished.
"""

from __future__ import annotations

import json
import logging
import os
import re
import struct
import zipfile
from pathlib import Path

log = logging.getLogger(__name__)

MARKER = "medasr-complete.json"
TRAINER_STATE = "trainer_state.json"
_CHECKPOINT = re.compile(r"checkpoint-(\d+)")
_WEIGHTS = ("model.safetensors", "adapter_model.safetensors", "model.safetensors.index.json")
# Optimizer state in the stock layout, or the DeepSpeed / FSDP ones (folders, not checked inside).
_OPTIMIZER = ("optimizer.pt", "optimizer.bin")
_SHARDED_OPTIMIZER = re.compile(r"global_step\d+|optimizer_\d+|pytorch_model_fsdp_\d+")


def begin_save(folder: Path) -> None:
    """Before the Trainer writes into `folder`: an old marker there no longer vouches for it."""
    (Path(folder) / MARKER).unlink(missing_ok=True)


def mark_complete(folder: Path) -> None:
    """After every process has written its part: list the files and their sizes, atomically."""
    folder = Path(folder)
    files = {
        str(p.relative_to(folder)): p.stat().st_size
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name != MARKER and not p.name.endswith(".partial")
    }
    partial = folder / (MARKER + ".partial")
    partial.write_text(json.dumps({"files": files}, indent=1) + "\n", encoding="utf-8")
    os.replace(partial, folder / MARKER)


def problem(folder: Path) -> str | None:
    """Why `folder` cannot be resumed from, or None when it is a complete checkpoint."""
    folder = Path(folder)
    marker = folder / MARKER
    if marker.exists():
        try:
            files = json.loads(marker.read_text(encoding="utf-8"))["files"]
        except (OSError, ValueError, KeyError, TypeError):
            return f"its {MARKER} is unreadable"
        for name, size in files.items():
            path = folder / name
            if not path.is_file():
                return f"{name} is missing (the folder was being deleted?)"
            if path.stat().st_size != size:
                return f"{name} has {path.stat().st_size:,} bytes, not the {size:,} written"
    try:
        state = json.loads((folder / TRAINER_STATE).read_text(encoding="utf-8"))
        int(state["global_step"])
    except FileNotFoundError:
        return f"no {TRAINER_STATE} (the save did not finish)"
    except (OSError, ValueError, KeyError, TypeError):
        return f"{TRAINER_STATE} is cut short or unreadable (the save did not finish)"
    weights = [folder / name for name in _WEIGHTS if (folder / name).is_file()]
    if not weights and not any(_SHARDED_OPTIMIZER.fullmatch(p.name) for p in folder.iterdir()):
        return "no model weights"
    for path in weights:
        if path.name.endswith(".index.json"):
            try:
                shards = set(json.loads(path.read_text(encoding="utf-8"))["weight_map"].values())
            except (OSError, ValueError, KeyError, TypeError, AttributeError):
                return f"{path.name} is unreadable"
            for shard in sorted(shards):
                if (why := _safetensors_problem(folder / shard)) is not None:
                    return why
        elif (why := _safetensors_problem(path)) is not None:
            return why
    optimizer = [folder / name for name in _OPTIMIZER if (folder / name).is_file()]
    if not optimizer and not any(_SHARDED_OPTIMIZER.fullmatch(p.name) for p in folder.iterdir()):
        return "no optimizer state"
    for path in [*optimizer, folder / "scheduler.pt"]:
        if path.exists() and not _readable_zip(path):
            return f"{path.name} is cut short or unreadable"
    return None


def _safetensors_problem(path: Path) -> str | None:
    """A safetensors file is an 8-byte header length, a JSON header, then the tensors' bytes."""
    try:
        with path.open("rb") as fh:
            (length,) = struct.unpack("<Q", fh.read(8))
            header = json.loads(fh.read(length))
        end = max((v["data_offsets"][1] for k, v in header.items() if k != "__metadata__"), default=0)
    except FileNotFoundError:
        return f"{path.name} is missing"
    except (OSError, ValueError, KeyError, TypeError, struct.error):
        return f"{path.name} is cut short or unreadable"
    if path.stat().st_size < 8 + length + end:
        return f"{path.name} is cut short ({path.stat().st_size:,} of {8 + length + end:,} bytes)"
    return None


def _readable_zip(path: Path) -> bool:
    """torch.save writes a zip archive: its directory sits at the end, so a cut file fails here."""
    try:
        with zipfile.ZipFile(path) as archive:
            return bool(archive.namelist())
    except (OSError, zipfile.BadZipFile, ValueError):
        return False


def checkpoints(output_dir: Path) -> list[Path]:
    """`checkpoint-N` folders, highest N first."""
    output_dir = Path(output_dir)
    if not output_dir.is_dir():
        return []
    found = [p for p in output_dir.iterdir() if p.is_dir() and _CHECKPOINT.fullmatch(p.name)]
    return sorted(found, key=lambda p: int(_CHECKPOINT.fullmatch(p.name).group(1)), reverse=True)


def newest_complete(output_dir: Path) -> tuple[Path | None, list[tuple[Path, str]]]:
    """(the highest-numbered complete checkpoint or None, [(skipped checkpoint, why)])."""
    skipped = []
    for folder in checkpoints(output_dir):
        why = problem(folder)
        if why is None:
            return folder, skipped
        skipped.append((folder, why))
    return None, skipped
