"""Transcript writers: txt, json, jsonl, srt, vtt and OpenAI's verbose_json."""

from __future__ import annotations

import json

from medasr.records import Segment, Transcript

FORMATS = ("txt", "json", "jsonl", "srt", "vtt", "verbose_json")
EXTENSIONS = {"txt": "txt", "json": "json", "jsonl": "jsonl", "srt": "srt", "vtt": "vtt", "verbose_json": "json"}


def to_record(t: Transcript) -> dict:
    """The JSON object for one input (json / jsonl formats)."""
    return t.to_dict()


def verbose_json(t: Transcript) -> dict:
    """OpenAI's verbose_json transcription shape."""
    return {
        "task": "transcribe",
        "language": (t.language or "").lower() or None,
        "duration": t.duration,
        "text": t.text,
        "segments": [
            {"id": i, "seek": 0, "start": s.start, "end": s.end, "text": s.text, "tokens": [], "temperature": 0.0}
            for i, s in enumerate(t.segments)
        ],
    }


def _stamp(seconds: float, sep: str) -> str:
    ms = max(0, int(round(seconds * 1000)))
    h, ms = divmod(ms, 3_600_000)
    m, ms = divmod(ms, 60_000)
    s, ms = divmod(ms, 1000)
    return f"{h:02d}:{m:02d}:{s:02d}{sep}{ms:03d}"


def srt(segments: list[Segment]) -> str:
    blocks = [
        f"{i}\n{_stamp(s.start, ',')} --> {_stamp(s.end, ',')}\n{s.text.strip()}\n"
        for i, s in enumerate((s for s in segments if s.text.strip()), start=1)
    ]
    return "\n".join(blocks)


def vtt(segments: list[Segment]) -> str:
    cues = [f"{_stamp(s.start, '.')} --> {_stamp(s.end, '.')}\n{s.text.strip()}\n" for s in segments if s.text.strip()]
    return "WEBVTT\n\n" + "\n".join(cues)


def render(t: Transcript, fmt: str) -> str:
    """One transcript as a document of the given format."""
    if fmt == "txt":
        return t.text + "\n"
    if fmt in ("json", "jsonl"):
        return json.dumps(to_record(t), ensure_ascii=False) + "\n"
    if fmt == "verbose_json":
        return json.dumps(verbose_json(t), ensure_ascii=False) + "\n"
    if fmt == "srt":
        return srt(t.segments)
    if fmt == "vtt":
        return vtt(t.segments)
    raise ValueError(f"unknown format {fmt!r}; choose from {', '.join(FORMATS)}")
