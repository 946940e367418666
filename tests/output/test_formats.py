"""Output writers, checked with real subtitle parsers (srt, webvtt-py)."""

from __future__ import annotations

import io
import json

import pytest
import srt as srt_lib
import webvtt

from medasr.output.formats import EXTENSIONS, FORMATS, render, srt, verbose_json, vtt
from medasr.records import Segment, Transcript, Word

SEGMENTS = [
    Segment(0.0, 12.5, "The patient takes metoprolol."),
    Segment(14.04, 41.999, "Chest pain radiating\nto the left arm  since this morning."),
    Segment(3599.9995, 3661.25, "Follow up --> cardiology & <echo> next month."),
    Segment(3700.0, 3710.0, "   "),  # a piece that gave no text
]
T = Transcript("consult.wav", "x", "English", 3720.0, SEGMENTS)


def _within(cue_start, cue_end, segments):
    return any(s.start - 1e-3 <= cue_start and cue_end <= max(s.end, s.start + 1.0) + 1e-3 for s in segments)


def test_srt_parses_with_the_srt_library():
    # Readable cues (medasr.output.subtitles): without word times, each segment's sentences are timed by
    # interpolation inside it, so a 28 s segment becomes several cues of at most 7 s and 2 lines.
    subs = list(srt_lib.parse(srt(SEGMENTS)))
    assert [s.index for s in subs] == list(range(1, len(subs) + 1)) and len(subs) > 3  # from 1; the empty segment gives none
    assert " ".join(s.content.replace("\n", " ") for s in subs) == (
        "The patient takes metoprolol. Chest pain radiating to the left arm since this morning. "
        "Follow up -> cardiology & <echo> next month."
    )
    for s in subs:
        lines = s.content.split("\n")
        assert len(lines) <= 2 and all(len(line) <= 42 for line in lines)
        assert (s.end - s.start).total_seconds() <= 7.0 + 1e-3
        assert _within(s.start.total_seconds(), s.end.total_seconds(), SEGMENTS)  # no cue crosses a segment
    assert subs[0].start.total_seconds() == 0.0
    assert [s.start.total_seconds() for s in subs] == sorted(s.start.total_seconds() for s in subs)
    assert any(s.start.total_seconds() == pytest.approx(14.04) for s in subs)  # a segment's first cue starts with it
    assert "01:00:00,000 --> " in srt(SEGMENTS)  # past an hour, rounded to the ms
    assert "-->" not in " ".join(s.content for s in subs)


def test_vtt_parses_with_webvtt():
    doc = vtt(SEGMENTS)
    assert doc.startswith("WEBVTT\n\n")
    cues = webvtt.from_string(doc).captions
    assert len(cues) == len(list(srt_lib.parse(srt(SEGMENTS))))
    assert cues[0].start == "00:00:00.000"
    late = [c for c in cues if c.start_in_seconds >= 3599]
    assert late[0].start == "01:00:00.000" and late[-1].end_in_seconds <= 3661.25
    raw = " ".join(c.raw_text for c in late)
    assert "&amp;" in raw and "&lt;echo&gt;" in raw and "-->" not in raw
    assert webvtt.from_buffer(io.StringIO(vtt([]))).captions == []  # an empty transcript is still valid


def test_subtitles_use_word_times_when_there_are_words():
    words = [Word("Give", 0.5, 0.8), Word("metoprolol.", 0.8, 1.6), Word("Then", 3.0, 3.2), Word("stop.", 3.2, 3.5)]
    t = Transcript("a.wav", "Give metoprolol. Then stop.", "English", 4.0, [Segment(0.0, 4.0, "Give metoprolol. Then stop.")], words=words)
    subs = list(srt_lib.parse(render(t, "srt")))
    assert [(s.start.total_seconds(), s.end.total_seconds(), s.content) for s in subs] == [
        (0.5, 1.6, "Give metoprolol."),
        (3.0, 4.0, "Then stop."),  # held at least 1 s
    ]


def test_verbose_json_has_openai_shape():
    d = verbose_json(T)
    assert {"task", "language", "duration", "text", "segments"} <= set(d)
    assert d["task"] == "transcribe" and d["language"] == "english" and d["duration"] == 3720.0
    assert [s["id"] for s in d["segments"]] == [0, 1, 2, 3]
    for s, seg in zip(d["segments"], SEGMENTS):
        assert {"id", "seek", "start", "end", "text", "tokens", "temperature"} <= set(s)
        assert (s["start"], s["end"], s["text"]) == (seg.start, seg.end, seg.text)
    assert d["segments"][1]["seek"] == 1404  # 10 ms frames, as whisper reports it
    assert verbose_json(Transcript("a", "", "", 1.0))["language"] == ""  # none detected
    for s in d["segments"]:  # computed from the text; scores not computed here are absent
        assert s["compression_ratio"] >= 0 and "avg_logprob" not in s and "no_speech_prob" not in s
    assert d["usage"] == {"type": "duration", "seconds": 3720.0}
    scored = Transcript("b", "x", "English", 2.0, [Segment(0.0, 2.0, "x", [7], -0.25, 0.01, 0.5)])
    (s,) = verbose_json(scored)["segments"]
    assert (s["tokens"], s["avg_logprob"], s["no_speech_prob"], s["temperature"]) == ([7], -0.25, 0.01, 0.5)


def test_render_every_format():
    for fmt in FORMATS:
        assert render(T, fmt).endswith("\n") and fmt in EXTENSIONS
    assert json.loads(render(T, "verbose_json"))["segments"][0]["text"] == "The patient takes metoprolol."
    assert json.loads(render(T, "json"))["segments"][0] == {"start": 0.0, "end": 12.5, "text": "The patient takes metoprolol.",
                                                            "temperature": 0.0}  # fmt: skip
    assert render(T, "txt") == "x\n"
    with pytest.raises(ValueError, match="unknown format"):
        render(T, "docx")
