"""Output writers, checked with real subtitle parsers (srt, webvtt-py)."""

from __future__ import annotations

import io
import json

import pytest

from medasr.formats import EXTENSIONS, FORMATS, render, srt, verbose_json, vtt
from medasr.records import Segment, Transcript

srt_lib = pytest.importorskip("srt")
webvtt = pytest.importorskip("webvtt")

SEGMENTS = [
    Segment(0.0, 12.5, "The patient takes metoprolol."),
    Segment(14.04, 41.999, "Chest pain radiating\nto the left arm  since this morning."),
    Segment(3599.9995, 3661.25, "Follow up --> cardiology & <echo> next month."),
    Segment(3700.0, 3710.0, "   "),  # a piece that gave no text
]
T = Transcript("consult.wav", "x", "English", 3720.0, SEGMENTS)


def test_srt_parses_with_the_srt_library():
    subs = list(srt_lib.parse(srt(SEGMENTS)))
    assert [s.index for s in subs] == [1, 2, 3]  # numbered from 1, empty segment left out
    assert subs[0].start.total_seconds() == 0.0 and subs[0].end.total_seconds() == 12.5
    assert subs[1].start.total_seconds() == pytest.approx(14.04) and subs[1].end.total_seconds() == pytest.approx(41.999)
    assert subs[2].start.total_seconds() == pytest.approx(3600.0)  # past an hour, rounded to the ms
    assert subs[1].content == "Chest pain radiating to the left arm since this morning."  # one line
    assert "-->" not in subs[2].content
    assert "01:00:00,000 --> 01:01:01,250" in srt(SEGMENTS)


def test_vtt_parses_with_webvtt():
    doc = vtt(SEGMENTS)
    assert doc.startswith("WEBVTT\n\n")
    cues = webvtt.from_string(doc).captions
    assert len(cues) == 3
    assert cues[1].start == "00:00:14.040" and cues[1].end == "00:00:41.999"
    assert cues[2].start == "01:00:00.000" and cues[2].end == "01:01:01.250"  # past an hour
    assert "&amp;" in cues[2].raw_text and "&lt;echo&gt;" in cues[2].raw_text and "-->" not in cues[2].raw_text
    assert webvtt.from_buffer(io.StringIO(vtt([]))).captions == []  # an empty transcript is still valid


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
