"""Word timestamps on the one pipeline: `transcribe(timestamps="word")`, the CLI, live finals, and
the word stage's bad input. The demo model and demo aligner run for real; the demo aligner is not
accurate, so these tests check mechanics and invariants (every word of the text, in order, on
the timeline inside its segment, probabilities from the model's tokens), never its accuracy."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

from medasr.audio.decode import load_audio
from medasr.defaults import LOW_CONFIDENCE
from medasr.errors import ModelLoadError
from medasr.output.formats import render
from medasr.pipeline.words import word_probabilities
from medasr.records import Segment, TokenLogprob, Transcript, Word
from medasr.transcribe import load_model

DEMO_ASR = str(__import__("medasr.model.checkpoint", fromlist=["DEMO_DIR"]).DEMO_DIR)


@pytest.fixture(scope="module")
def asr():
    return load_model("demo", device="cpu")


@pytest.fixture(scope="module")
def long_wav(speech_clips, tmp_path_factory):
    """~13 s: three clips with pauses; with max_piece_s=6 it is cut into several pieces and
    streamed from the file (longer than the limit), so the words come from pieces read back."""
    parts = []
    for c in (speech_clips[1], speech_clips[3], speech_clips[0]):
        parts += [load_audio(c).samples, np.zeros(16000, np.float32)]
    path = tmp_path_factory.mktemp("long") / "long.wav"
    sf.write(path, np.concatenate(parts), 16000, subtype="PCM_16")
    return path


@pytest.fixture(scope="module")
def worded(asr, speech_clips, long_wav):
    short = asr.transcribe([str(c) for c in speech_clips[:2]], timestamps="word", aligner="demo")
    long = asr.transcribe(str(long_wav), timestamps="word", aligner="demo", max_piece_s=6)[0]
    return short + [long]


def check_invariants(t: Transcript) -> None:
    """What every worded transcript must satisfy, whatever the aligner's accuracy."""
    assert t.words is not None and not t.warnings, t.warnings
    assert t.text and t.words
    assert " ".join(w.word for w in t.words) == " ".join(t.text.split())  # every word of the text, in order
    at = 0
    for seg in t.segments:  # each segment's words, in turn, on the timeline inside it
        n = len(seg.text.split())
        inside = t.words[at : at + n]
        at += n
        assert " ".join(w.word for w in inside) == " ".join(seg.text.split())
        assert all(seg.start - 1e-6 <= w.start <= w.end <= seg.end + 1e-6 for w in inside)
    assert all(a.end <= b.start + 1e-6 for a, b in zip(t.words, t.words[1:]))  # in order, no overlap
    assert all(w.probability is None or 0.0 < w.probability <= 1.0 for w in t.words)


def test_words_from_the_python_api(worded):
    for t in worded:
        check_invariants(t)
    assert len(worded[-1].segments) >= 2  # the long input's words come from several pieces
    assert any(w.probability is not None for t in worded for w in t.words)


def test_probability_is_the_mean_of_its_tokens(worded):
    for t in worded:
        probs = [math.exp(x.logprob) for x in t.logprobs]
        for w in t.words:
            # a word spelled by one token (" patient") has that token's probability
            single = [x for x in t.logprobs if x.token.strip() == w.word and x.token in (w.word, " " + w.word)]
            if len(single) == 1 and sum(x.token.strip() == w.word for x in t.logprobs) == 1:
                assert w.probability == pytest.approx(math.exp(single[0].logprob), abs=1e-4)
            assert min(probs) - 1e-4 <= w.probability <= max(probs) + 1e-4


def test_json_marks_low_confidence_words(worded):
    t = worded[1]
    record = t.to_dict()
    assert [w["word"] for w in record["words"]] == [w.word for w in t.words]
    for w, d in zip(t.words, record["words"]):
        assert d["low_confidence"] == (w.probability < LOW_CONFIDENCE)
    everything = t.to_dict(low_confidence=1.01)
    assert all(d["low_confidence"] for d in everything["words"])
    unscored = Word("x", 0.0, 0.1).to_dict()
    assert unscored == {"word": "x", "start": 0.0, "end": 0.1}  # no probability: neither field


def test_segment_timestamps_have_no_words_and_no_aligner(asr, speech_clips):
    fresh = load_model("demo", device="cpu")
    t = fresh.transcribe(str(speech_clips[0]))[0]
    assert t.words is None and "words" not in t.to_dict() and not fresh._timers
    assert t.text == asr.transcribe(str(speech_clips[0]), timestamps="word", aligner="demo")[0].text


def test_the_aligner_loads_once_per_model(asr, speech_clips):
    timer = asr.word_timer("demo")
    first = timer.load()
    asr.transcribe(str(speech_clips[2]), timestamps="word", aligner="demo")
    assert asr.word_timer("demo") is timer and timer.load() is first


def test_silence_gives_no_words_and_no_warning(asr, tmp_path):
    path = tmp_path / "silence.wav"
    sf.write(path, np.zeros(32000, np.float32), 16000)
    t = asr.transcribe(str(path), timestamps="word", aligner="demo")[0]
    assert t.text == "" and t.words == [] and not t.warnings


def test_alignment_failure_keeps_the_text(asr, speech_clips):
    # Spanish is the aligner's; Polish is the model's but not the aligner's: text, no words, a warning
    t = asr.transcribe(str(speech_clips[1]), timestamps="word", aligner="demo", language="pl")[0]
    assert t.text and t.words == [] and t.warnings and "Polish" in t.warnings[0]
    assert t.to_dict()["words"] == [] and t.to_dict()["warnings"] == t.warnings
    # more words than the audio can hold (one per 80 ms bin): the stage says so, the text stays
    timer = asr.word_timer("demo")
    from medasr.pipeline.align import Clip

    text = " ".join(["word"] * 20)
    many = Transcript("x", text, "English", 0.5, [Segment(0.0, 0.5, text)])
    timer.add_words(many, [Clip(np.zeros(8000, np.float32), 0.0, text)])
    assert many.words == [] and "at most" in many.warnings[0] and many.text == text


def test_a_bad_aligner_is_refused_before_any_work(asr, speech_clips):
    with pytest.raises(ModelLoadError, match="not a forced aligner"):
        asr.transcribe(str(speech_clips[0]), timestamps="word", aligner=DEMO_ASR)
    with pytest.raises(ValueError, match="timestamps"):
        asr.transcribe(str(speech_clips[0]), timestamps="character")


# ---------------------------------------------------------------- the probability rule


def tokens(*pairs) -> list[TokenLogprob]:
    out = []
    for piece, p in pairs:
        raw = piece if isinstance(piece, bytes) else piece.encode()
        out.append(TokenLogprob(raw.decode("utf-8", "replace"), math.log(p), list(raw)))
    return out


def test_word_probabilities_rule():
    toks = tokens(("Give", 0.9), (" met", 0.5), ("oprolol", 0.7), (".", 0.2), (" ", 0.01), (" Stop", 0.8))
    got = word_probabilities("Give metoprolol.  Stop", ["Give", "metoprolol.", "Stop"], toks)
    assert got == [0.9, pytest.approx((0.5 + 0.7 + 0.2) / 3, abs=1e-4), 0.8]  # white space counts for no word
    # a character split over two tokens (bytes of "é"): both count for the word
    e = "é".encode()
    split = tokens(("caf", 0.4), (e[:1], 0.6), (e[1:], 0.8), (" ok", 1.0))
    assert word_probabilities("café ok", ["café", "ok"], split) == [pytest.approx(0.6, abs=1e-4), 1.0]
    # text the tokens do not spell (the repetition clean-up removed some): only words found get one
    rep = tokens(("yes", 0.5), (" yes", 0.5), (" no", 0.3))
    assert word_probabilities("yes no maybe", ["yes", "no", "maybe"], rep)[1:] == [0.3, None]
    assert word_probabilities("a b", ["a", "b"], []) == [None, None]


# ---------------------------------------------------------------- command line


def medasr(*args, timeout=300):
    return subprocess.run([sys.executable, "-m", "medasr", *map(str, args)], check=False, capture_output=True, text=True, timeout=timeout)


def test_cli_transcribe_words(asr, speech_clips, tmp_path):
    clip = speech_clips[3]
    out = medasr("transcribe", "--model", "demo", "--device", "cpu", "--timestamps", "word", "--aligner", "demo",
                 "--format", "verbose_json", "--output-dir", tmp_path, clip)  # fmt: skip
    assert out.returncode == 0, out.stderr
    body = json.loads((tmp_path / f"{clip.stem}.json").read_text())
    lib = asr.transcribe(str(clip), timestamps="word", aligner="demo")[0]
    assert body["text"] == lib.text and body["segments"]
    assert body["words"] == [w.to_dict() for w in lib.words]  # the same words as the library
    first = render(lib, "srt").splitlines()[1]  # what --format srt writes
    start = lib.words[0].start
    assert first.startswith(f"00:00:{int(start):02d},{round(start % 1 * 1000):03d} --> ")  # cues timed by the words
    bad = medasr("transcribe", "--model", "demo", "--device", "cpu", "--timestamps", "word", "--aligner", DEMO_ASR, clip)
    assert bad.returncode == 2 and "not a forced aligner" in bad.stderr and not bad.stdout


def test_cli_stream_words(speech_clips, tmp_path):
    wav = tmp_path / "two.wav"
    a, b = load_audio(speech_clips[0]).samples, load_audio(speech_clips[1]).samples
    sf.write(wav, np.concatenate([a, np.zeros(16000, np.float32), b, np.zeros(8000, np.float32)]), 16000, subtype="PCM_16")
    out = medasr("stream", "--model", "demo", "--device", "cpu", "--speed", "0", "--timestamps", "word",
                 "--aligner", "demo", "--format", "jsonl", wav)  # fmt: skip
    assert out.returncode == 0, out.stderr
    finals = [e for e in map(json.loads, out.stdout.splitlines()) if e["type"] == "completed"]
    assert len(finals) == 2
    for e in finals:
        t = e["transcript"]
        assert " ".join(w["word"] for w in t["words"]) == " ".join(t["text"].split())
        assert all(0.0 <= w["start"] <= w["end"] <= t["duration"] + 1e-6 for w in t["words"])
        assert all("low_confidence" in w for w in t["words"] if "probability" in w)
    remote = medasr("stream", "--url", "http://127.0.0.1:9/v1", "--timestamps", "word", wav)
    assert remote.returncode == 2 and "locally only" in remote.stderr


def test_live_finals_carry_words_when_asked(speech_clips):
    from medasr.model.checkpoint import load
    from medasr.pipeline.engine import Engine
    from medasr.pipeline.events import Completed
    from medasr.pipeline.scheduler import Scheduler
    from medasr.pipeline.session import LiveOptions, LiveSession
    from medasr.pipeline.words import WordTimer

    speech = load_audio(speech_clips[3]).samples
    scheduler = Scheduler(Engine(load("demo", device="cpu")))
    scheduler.start()
    try:
        finals = {}
        for words in (False, True):
            events = []
            session = LiveSession(scheduler, LiveOptions(turn_detection=False, words=words), events.append,
                                  words=WordTimer("demo", device="cpu"))  # fmt: skip
            for i in range(0, len(speech), 1600):
                session.append(speech[i : i + 1600])
            session.finish()
            assert session.wait(120)
            finals[words] = [e.transcript for e in events if isinstance(e, Completed)]
        plain, worded = finals[False][0], finals[True][0]
        assert plain.words is None and worded.text == plain.text
        check_invariants(worded)
    finally:
        scheduler.stop()


def test_subtitles_are_timed_by_the_transcribed_words(worded):
    from medasr.output.subtitles import MAX_CUE_S, MAX_LINE_CHARS, cues

    for t in worded:
        cs = cues(t.segments, t.words)
        for c in cs:  # readable: at most 2 lines of 42 characters, at most 7 s
            assert len(c.text.split("\n")) <= 2 and all(len(x) <= MAX_LINE_CHARS for x in c.text.split("\n"))
            assert c.end - c.start <= MAX_CUE_S + 1e-9
        assert " ".join(c.text.replace("\n", " ") for c in cs) == " ".join(w.word for w in t.words)  # words whole, in order
        starts = {w.start for w in t.words}
        assert all(c.start in starts for c in cs)  # each cue starts where a word starts
