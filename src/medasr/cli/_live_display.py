"""What `medasr stream` shows: partial text in place on a terminal, one line per final with its
start and end times, or the events as JSON lines. Called from several threads (the feeder and
the scheduler's), so every write holds a lock."""

from __future__ import annotations

import json
import shutil
import sys
import threading
from typing import TextIO

GREY, RESET, ERASE = "\033[2m", "\033[0m", "\r\033[K"


def clock(seconds: float) -> str:
    """00:04.2, or 1:02:03.4 past an hour."""
    tenths = round(max(seconds, 0.0) * 10)
    s, t = divmod(tenths, 10)
    m, s = divmod(s, 60)
    h, m = divmod(m, 60)
    return f"{h}:{m:02d}:{s:02d}.{t}" if h else f"{m:02d}:{s:02d}.{t}"


class Display:
    def __init__(self, fmt: str = "text", out: TextIO | None = None, live: bool | None = None):
        self.fmt = fmt
        self.out = out or sys.stdout
        # partial text only makes sense where a line can be rewritten
        self.live = (self.out.isatty() if live is None else live) and fmt == "text"
        self._lock = threading.Lock()
        self._partials: dict[str, str] = {}  # open items' text so far, in order
        self._shown = False
        self.finals = 0

    def event(self, obj: dict) -> None:
        """A JSON line (jsonl format only)."""
        if self.fmt != "jsonl":
            return
        with self._lock:
            self.out.write(json.dumps(obj, ensure_ascii=False) + "\n")
            self.out.flush()

    def partial(self, item_id: str, delta: str) -> None:
        with self._lock:
            self._partials[item_id] = self._partials.get(item_id, "") + delta
            self._redraw()

    def final(self, item_id: str, start: float, end: float, text: str) -> None:
        with self._lock:
            self._partials.pop(item_id, None)
            self.finals += 1
            if self.fmt == "text":
                self._erase()
                if text:
                    self.out.write(f"[{clock(start)} - {clock(end)}] {text}\n")
                self._redraw()
                self.out.flush()

    def words(self, offset: float, words, warnings: list[str], low_confidence: float) -> None:
        """A final's words (text format): `start word` on the stream's timeline, `?` after a word
        whose probability is below `low_confidence`; or why there are none."""
        if self.fmt != "text":
            return
        with self._lock:
            self._erase()
            if words:
                marked = [f"{offset + w.start:.2f} {w.word}{'?' if w.probability is not None and w.probability < low_confidence else ''}"
                          for w in words]  # fmt: skip
                self.out.write("    " + "  ".join(marked) + "\n")
            for warning in warnings:
                print(f"medasr stream: warning: {warning}", file=sys.stderr)
            self._redraw()
            self.out.flush()

    def failed(self, item_id: str, message: str) -> None:
        with self._lock:
            self._partials.pop(item_id, None)
            self._erase()
            print(f"medasr stream: an utterance failed: {message}", file=sys.stderr)
            self._redraw()

    def close(self) -> None:
        with self._lock:
            self._erase()
            self.out.flush()

    # ------------------------------------------------------------------ the partial line
    def _erase(self) -> None:
        if self._shown:
            self.out.write(ERASE)
            self._shown = False

    def _redraw(self) -> None:
        if not self.live:
            return
        text = " ".join(t for t in self._partials.values() if t)
        if not text:
            self._erase()
            return
        width = shutil.get_terminal_size((80, 24)).columns - 1
        if len(text) > width:  # the newest words, where the speaker is
            text = "..." + text[-(width - 3) :]
        self.out.write(ERASE + GREY + text + RESET)
        self.out.flush()
        self._shown = True
