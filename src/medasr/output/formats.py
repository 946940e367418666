"""Transcript writers: txt, json, jsonl, srt, vtt and OpenAI's verbose_json.

Subtitles: readable cues (`medasr.output.subtitles`: at most 2 lines of 42 characters and 7 s, cut at
sentence and clause ends and pauses), timed by the transcript's words when an aligner gave them,
else interpolated inside its segments (approximate); numbered from 1, times on the recording's
timeline with millisecond precision.
"""

from __future__ import annotations

import json
import zlib

from medasr.defaults import LOW_CONFIDENCE
from medasr.output.subtitles import cues as subtitle_cues
from medasr.records import Segment, Transcript, Word

FORMATS = ("txt", "json", "jsonl", "srt", "vtt", "verbose_json")
EXTENSIONS = {"txt": "txt", "json": "json", "jsonl": "jsonl", "srt": "srt", "vtt": "vtt", "verbose_json": "json"}
FRAMES_PER_SECOND = 100  # whisper's `seek` unit: mel frames (10 ms)


def to_record(t: Transcript, low_confidence: float = LOW_CONFIDENCE) -> dict:
    """The JSON object for one input (json / jsonl formats); words (when asked for) are marked
    `low_confidence` below that probability."""
    return t.to_dict(low_confidence)


def verbose_json(t: Transcript, granularities=("segment", "word"), low_confidence: float = LOW_CONFIDENCE) -> dict:
    """OpenAI's verbose_json transcription shape, the same from the CLI and the server.

    `segments` when "segment" is among `granularities`, `words` ({word, start, end}, plus
    medasr's `probability` and `low_confidence` where the word has a probability) when "word" is
    and the transcript has words asked for (as OpenAI: words alone give no segments);
    `warnings` (medasr's) when there are some.

    `seek` is where the segment's window starts, in 10 ms frames (as whisper reports it);
    `tokens` are the segment's text token ids; `avg_logprob` the mean log-probability of its
    generated tokens; `no_speech_prob` the model's probability of answering `language None`
    (left out where the model gives none); `compression_ratio` is computed from the text, as
    whisper does (zlib).
    """
    segments = []
    for i, s in enumerate(t.segments):
        seg = {
            "id": i, "seek": round(s.start * FRAMES_PER_SECOND), "start": s.start, "end": s.end, "text": s.text,
            "tokens": list(s.tokens), "temperature": s.temperature, "compression_ratio": compression_ratio(s.text),
        }  # fmt: skip
        if s.avg_logprob is not None:
            seg["avg_logprob"] = s.avg_logprob
        if s.no_speech_prob is not None:
            seg["no_speech_prob"] = s.no_speech_prob
        segments.append(seg)
    out = {"task": "transcribe", "language": (t.language or "").lower(), "duration": t.duration, "text": t.text}
    if "segment" in granularities:
        out["segments"] = segments
    if "word" in granularities and t.words is not None:
        out["words"] = [w.to_dict(low_confidence) for w in t.words]
    if t.warnings:
        out["warnings"] = list(t.warnings)
    out["usage"] = {"type": "duration", "seconds": t.duration}
    return out


def compression_ratio(text: str) -> float:
    """Text bytes over their zlib-compressed size (whisper's repetition indicator)."""
    raw = text.encode("utf-8")
    return round(len(raw) / max(1, len(zlib.compress(raw))), 3) if raw else 0.0


def _stamp(seconds: float, sep: str) -> str:
    ms = max(0, int(round(seconds * 1000)))
    h, ms = divmod(ms, 3_600_000)
    m, ms = divmod(ms, 60_000)
    s, ms = divmod(ms, 1000)
    return f"{h:02d}:{m:02d}:{s:02d}{sep}{ms:03d}"


def _cues(segments: list[Segment], words: list[Word] | None) -> list[tuple[float, float, str]]:
    """(start, end, text) of readable cues (`medasr.output.subtitles`); an end never precedes its start."""
    return [(c.start, max(c.end, c.start), c.text) for c in subtitle_cues(segments, words)]


def srt(segments: list[Segment], words: list[Word] | None = None) -> str:
    blocks = [
        f"{i}\n{_stamp(a, ',')} --> {_stamp(b, ',')}\n{text}\n"
        for i, (a, b, text) in enumerate(_cues(segments, words), start=1)
    ]
    return "\n".join(blocks)


def vtt(segments: list[Segment], words: list[Word] | None = None) -> str:
    # WebVTT cue text is HTML-like: & and < must be escaped (> too, for symmetry)
    escape = lambda x: x.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    cues = [f"{_stamp(a, '.')} --> {_stamp(b, '.')}\n{escape(text)}\n" for a, b, text in _cues(segments, words)]
    return "WEBVTT\n\n" + "\n".join(cues)


def render(t: Transcript, fmt: str, low_confidence: float = LOW_CONFIDENCE) -> str:
    """One transcript as a document of the given format."""
    if fmt == "txt":
        return t.text + "\n"
    if fmt in ("json", "jsonl"):
        return json.dumps(to_record(t, low_confidence), ensure_ascii=False) + "\n"
    if fmt == "verbose_json":
        return json.dumps(verbose_json(t, low_confidence=low_confidence), ensure_ascii=False) + "\n"
    if fmt == "srt":
        return srt(t.segments, t.words)
    if fmt == "vtt":
        return vtt(t.segments, t.words)
    raise ValueError(f"unknown format {fmt!r}; choose from {', '.join(FORMATS)}")
