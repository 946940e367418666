"""Results that survive kills and full disks, and runs that resume without redoing or repeating.

`RecordLog` is an append-only JSON-lines file of records, one per key (a transcribed input, an
evaluated row). Each record is appended as one whole line and flushed before the next one, and a
write that fails (full disk, file-size limit, Ctrl-C) is cut back to where it started. A kill
can still leave a torn last line, so opening a log for appending repairs it first: a last line
that only lacks its newline is completed, anything else that is not a record (a torn line, or
two records glued together by an older version) is moved to a side file `NAME.torn` and
reported; its input is then simply done again. Each key thus ends up in the file exactly once.

`write_atomic` replaces a whole file (temp file, fsync, rename): a reader sees the old file or
the new one, never a part. `input_key` is how inputs are matched across runs: a local path
resolved to an absolute one (so `syn/a.wav`, `./syn/a.wav` and `/abs/syn/a.wav` are one input),
a URL as given.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

log = logging.getLogger(__name__)

SIDE_SUFFIX = ".torn"  # where lines that are not records are kept
Key = Callable[[dict], str]


def input_key(source: str) -> str:
    """A URL (or data URL) as given; a local path resolved to an absolute path."""
    if source.startswith(("http://", "https://", "data:")):
        return source
    try:
        return str(Path(source).expanduser().resolve())
    except (OSError, RuntimeError, ValueError):  # e.g. a symlink loop: keep the spelling
        return os.path.abspath(source)


def field_key(name: str) -> Key:
    return lambda record: str(record[name])


def _lines(data: bytes) -> Iterator[tuple[int, bytes]]:
    """(line number, line without its newline) for each complete line."""
    start = 0
    for number, end in enumerate(_newlines(data), 1):
        yield number, data[start:end]
        start = end + 1


def _newlines(data: bytes) -> Iterator[int]:
    at = data.find(b"\n")
    while at >= 0:
        yield at
        at = data.find(b"\n", at + 1)


def _record(line: bytes, key: Key) -> tuple[str, dict] | None:
    """(key, record) for a line holding one record, else None."""
    try:
        record = json.loads(line.decode("utf-8"))
        return key(record), record
    except (UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError, AttributeError):
        return None


def read_records(path: Path, key: Key) -> dict[str, dict]:
    """key -> record over the complete lines of `path` (the first record of a key wins).

    Read-only, for a log that another process may be appending to: a line without its newline
    is still being written and is not read; lines that are not records are skipped (the log's
    own writer sets them aside when it reopens it)."""
    out: dict[str, dict] = {}
    path = Path(path)
    if not path.exists():
        return out
    bad = 0
    for _, line in _lines(path.read_bytes()):
        if not line.strip():
            continue
        found = _record(line, key)
        if found is None:
            bad += 1
        else:
            out.setdefault(*found)
    if bad:
        log.warning("%s: %d line(s) are not records and were skipped", path, bad)
    return out


class RecordLog:
    """An append-only JSON-lines file of records, one per key; see the module doc.

        with RecordLog(path, field_key("id")) as results:
            done = results.records            # what earlier runs wrote
            results.append({"id": "x", ...})  # written and flushed, whole or not at all
    """

    def __init__(self, path: str | os.PathLike, key: Key, overwrite: bool = False):
        self.path = Path(path)
        self.key = key
        self.overwrite = overwrite
        self.records: dict[str, dict] = {}
        self._fd: int | None = None

    def __enter__(self) -> RecordLog:
        self.open()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def open(self) -> dict[str, dict]:
        """Repair the file (see the module doc), then open it for appending; returns the records."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.overwrite:
            self.path.unlink(missing_ok=True)
        elif self.path.exists():
            self.records = self._repair()
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
        return self.records

    def append(self, record: dict) -> None:
        """Write one record as a whole line. On any failure the file is cut back to where it was."""
        if self._fd is None:
            raise ValueError(f"{self.path} is not open")
        data = (json.dumps(record, ensure_ascii=False) + "\n").encode("utf-8")
        start = os.lseek(self._fd, 0, os.SEEK_END)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(self._fd, view) :]
        except BaseException:  # disk full, file-size limit, KeyboardInterrupt between writes
            with contextlib.suppress(OSError):  # if even that fails, the next open() sets it aside
                os.ftruncate(self._fd, start)
            raise
        self.records.setdefault(self.key(record), record)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def _repair(self) -> dict[str, dict]:
        data = self.path.read_bytes()
        records: dict[str, dict] = {}
        bad: list[bytes] = []
        for _, line in _lines(data):
            found = _record(line, self.key) if line.strip() else None
            if found is not None:
                records.setdefault(*found)
            elif line.strip():
                bad.append(line)
        end = data.rfind(b"\n") + 1
        tail = data[end:]
        completed = _record(tail, self.key) if tail.strip() else None
        if completed is not None:  # a whole record that only lacks its newline
            records.setdefault(*completed)
            with self.path.open("ab") as fh:
                fh.write(b"\n")
            log.warning("%s: the last record lacked its newline (an interrupted write): completed it", self.path)
        elif tail.strip():
            bad.append(tail)
        if not bad:
            if tail and completed is None:  # whitespace only
                _truncate(self.path, end)
            return records
        side = self.path.with_name(self.path.name + SIDE_SUFFIX)
        with side.open("ab") as fh:
            for line in bad:
                fh.write(line + b"\n")
        if len(bad) == 1 and completed is None and tail.strip():  # the common case: a torn last line
            _truncate(self.path, end)
        else:  # lines in the middle too: rewrite the file without them
            keep = b"".join(line + b"\n" for _, line in _lines(data + (b"\n" if completed else b"")) if _valid(line, self.key))
            _replace_bytes(self.path, keep)
        log.warning(
            "%s: set aside %d line(s) that are not whole records (%s bytes, cut by an interrupted run or a "
            "full disk) in %s; their inputs are done again", self.path, len(bad), f"{sum(map(len, bad)):,}", side,
        )  # fmt: skip
        return records


def _valid(line: bytes, key: Key) -> bool:
    return bool(line.strip()) and _record(line, key) is not None


def _truncate(path: Path, size: int) -> None:
    with path.open("r+b") as fh:
        fh.truncate(size)


def _replace_bytes(path: Path, data: bytes) -> None:
    partial = path.with_name(path.name + ".partial")
    with partial.open("wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    partial.replace(path)


def write_atomic(path: str | os.PathLike, text: str, encoding: str = "utf-8") -> None:
    """Replace `path` with `text` whole: a reader (or a rerun) never sees a part of it."""
    path = Path(path)
    partial = path.with_name(path.name + ".partial")
    try:
        _replace_bytes(path, text.encode(encoding))
    except BaseException:
        partial.unlink(missing_ok=True)
        raise


def unique_inputs(sources: Iterable[str]) -> list[str]:
    """The sources in order, each input once (by `input_key`), as first spelled."""
    seen: set[str] = set()
    out = []
    for s in sources:
        k = input_key(s)
        if k not in seen:
            seen.add(k)
            out.append(s)
    return out
