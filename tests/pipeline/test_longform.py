"""Long recordings end to end: speech detection, batched pieces, merged timestamped transcripts,
subtitle outputs. Recordings are assembled from the shared real recordings, espeak-ng speech
and silences over faint noise, so where the speech lies is known."""

from __future__ import annotations

import itertools
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from medasr import transcribe as transcribe_module
from medasr.audio import vad
from medasr.audio.decode import SAMPLE_RATE, load_audio
from medasr.pipeline import segmenter
from medasr.pipeline.decoder import Decoder
from medasr.pipeline.scheduler import Scheduler, run_requests
from medasr.transcribe import load_model

SR = SAMPLE_RATE
DEMO = Path(transcribe_module.__file__).parent / "assets" / "demo" / "config.json"
# no commas: a sentence stays one speech region, so a cut inside it would be a mistake
SENTENCES = [
    "The patient presents with acute chest pain radiating to the left arm.",
    "Start metoprolol twenty five milligrams twice daily and recheck in two weeks.",
    "History of type two diabetes mellitus managed with metformin.",
    "Impression is community acquired pneumonia of the right lower lobe.",
    "Plan to obtain a CT angiogram to rule out pulmonary embolism.",
    "Follow up with cardiology for an echocardiogram next month.",
]
TOKENS = 4  # the tiny model's answers only need to exist: keep decoding short


def _espeak(text: str, out: Path, voice: str = "en-us", speed: int = 175) -> np.ndarray:
    """espeak-ng speech at 16 kHz, trimmed to where the voice is."""
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed")
    subprocess.run(["espeak-ng", "-v", voice, "-s", str(speed), "-w", str(out), text], check=True)
    clip = load_audio(out).samples
    loud = np.flatnonzero(np.abs(clip) > 0.01)
    return clip[loud[0] : loud[-1] + 1]


def _write(path: Path, parts: list[np.ndarray], seed: int) -> Path:
    signal = np.concatenate(parts)
    signal += np.random.default_rng(seed).normal(0, 0.001, len(signal)).astype(np.float32)  # -60 dBFS room
    sf.write(path, np.clip(signal, -1, 1), SR, format="FLAC", subtype="PCM_16")
    return path


@pytest.fixture(scope="module")
def asr(tiny_model):
    return load_model(str(tiny_model["original"]), device="cpu", batch_size=8)


@pytest.fixture(scope="module")
def sentences(tmp_path_factory) -> list[np.ndarray]:
    tmp = tmp_path_factory.mktemp("sentences")
    voices = [("en-us", 160), ("en-gb", 175), ("en-us", 190)]
    return [_espeak(t, tmp / f"s{i}.wav", *voices[i % 3]) for i, t in enumerate(SENTENCES)]


@pytest.fixture(scope="module")
def consultation(sentences, shared_audio, tmp_path_factory):
    """~11 minutes: multilingual.mp3 (60 s of speech with pauses), JFK and espeak-ng sentences
    between 1.5-6 s silences, with a 45 s silence in the middle. Returns (path, duration,
    sentence spans, all speech spans, silence span)."""
    rng = np.random.default_rng(11)
    real = [load_audio(shared_audio / n).samples for n in ("multilingual.mp3", "jfk.flac")]
    parts, pos = [np.zeros(3 * SR, np.float32)], 3 * SR
    short_spans, speech_spans, silence = [], [], None
    k = 0
    while pos < 10.5 * 60 * SR:
        if silence is None and pos > 5 * 60 * SR:
            silence = (pos / SR, pos / SR + 45.0)
            parts.append(np.zeros(45 * SR, np.float32))
            pos += 45 * SR
        if k % 7 == 0:
            clip, short = real[(k // 7) % 2], False
        else:
            clip, short = sentences[int(rng.integers(len(sentences)))], True
        clip = (clip * rng.uniform(0.4, 1.0)).astype(np.float32)
        span = (pos / SR, (pos + len(clip)) / SR)
        speech_spans.append(span)
        if short:
            short_spans.append(span)
        gap = np.zeros(int(rng.uniform(1.5, 6.0) * SR), np.float32)
        parts += [clip, gap]
        pos += len(clip) + len(gap)
        k += 1
    path = _write(tmp_path_factory.mktemp("long") / "consultation.flac", parts, seed=3)
    return path, pos / SR, short_spans, speech_spans, silence


@pytest.fixture(scope="module")
def two_minutes(sentences, tmp_path_factory) -> Path:
    rng = np.random.default_rng(5)
    parts, pos = [], 0
    while pos < 120 * SR:
        gap = np.zeros(int(rng.uniform(1.0, 4.0) * SR), np.float32)
        clip = sentences[int(rng.integers(len(sentences)))]
        parts += [gap, clip]
        pos += len(gap) + len(clip)
    return _write(tmp_path_factory.mktemp("two") / "two.flac", parts, seed=4)


def _check_timeline(t, duration: float, limit: float = 30.0) -> None:
    assert t.error is None and t.segments
    assert t.duration == pytest.approx(duration, abs=0.01)
    assert t.text == " ".join(s.text for s in t.segments)
    for s in t.segments:
        assert 0.0 <= s.start < s.end <= t.duration
        assert s.end - s.start <= limit + 1e-6
        assert s.text and s.text == s.text.strip()
    for a, b in itertools.pairwise(t.segments):
        assert a.end <= b.start  # increasing, never overlapping


def _same(a: list, b: list) -> bool:
    """Segments equal in times, text and tokens; scores equal to float noise (the arithmetic of
    a batch depends slightly on what else is in it; the chosen tokens do not)."""
    key = lambda s: (s.start, s.end, s.text, s.tokens)
    return [key(s) for s in a] == [key(s) for s in b] and all(
        x.avg_logprob == pytest.approx(y.avg_logprob, abs=1e-4) for x, y in zip(a, b)
    )


def _overlap(seg, spans) -> float:
    return sum(max(0.0, min(seg.end, e) - max(seg.start, s)) for s, e in spans)


# ---------------------------------------------------------------- the long recording


def test_ten_minute_consultation(asr, consultation, monkeypatch):
    path, duration, short_spans, speech_spans, silence = consultation
    assert duration >= 600
    decoded_whole = []
    real_load = segmenter.load_audio
    monkeypatch.setattr(segmenter, "load_audio", lambda src, *a, **k: decoded_whole.append(src) or real_load(src, *a, **k))

    t = asr.transcribe(str(path), max_new_tokens=TOKENS)[0]

    assert decoded_whole == []  # a long file is streamed, never decoded whole
    _check_timeline(t, duration)
    assert len(t.segments) >= 20  # ~8 minutes of speech in pieces of at most 30 s
    regions = vad.speech_regions(path)
    for s in t.segments:
        assert _overlap(s, speech_spans) > 0.5 * min(1.0, s.end - s.start)  # each segment holds speech
        assert _overlap(s, regions) > 0
    quiet = (silence[0] + 1.0, silence[1] - 1.0)  # the 45 s silence, less the regions' padding
    assert not any(min(s.end, quiet[1]) > max(s.start, quiet[0]) for s in t.segments)
    cuts = sorted({x for s in t.segments for x in (s.start, s.end)})
    # no cut falls inside a speech region shorter than the piece limit, nor inside a sentence
    for s, e in regions + short_spans:
        if e - s <= 30.0:
            assert not any(s + 0.02 < c < e - 0.02 for c in cuts), (s, e)
    # every sentence is covered by one segment, whole
    for s, e in short_spans:
        assert any(seg.start <= s and e <= seg.end for seg in t.segments), (s, e)


def test_silence_only_gives_an_empty_transcript(asr, tmp_path):
    path = _write(tmp_path / "silence.flac", [np.zeros(70 * SR, np.float32)], seed=9)
    for method in ("silero", "energy"):
        t = asr.transcribe(str(path), vad=method, max_new_tokens=TOKENS)[0]
        assert t.error is None and t.text == "" and t.segments == []
        assert t.duration == pytest.approx(70.0, abs=0.01) and t.language == "English"


def test_streamed_file_equals_decoded_bytes_and_pieces_share_batches(asr, two_minutes, speech_clips, monkeypatch):
    """A file streamed from disk and the same file given as bytes (decoded whole) give the same
    transcript; the pieces of both, and a short clip, are batched together by one engine."""
    sizes: list[list[int]] = []  # the groups the decoder admitted together
    real_admit = Decoder.admit

    def admit(self, items):  # a spy: records the groups, the real decoder admits them
        sizes.append([len(r.samples) for _, r in items])
        return real_admit(self, items)

    monkeypatch.setattr(Decoder, "admit", admit)
    clip = str(speech_clips[1])
    streamed, from_bytes, short = asr.transcribe([str(two_minutes), two_minutes.read_bytes(), clip], max_new_tokens=TOKENS, batch_size=3)
    _check_timeline(streamed, sf.info(two_minutes).duration)
    assert _same(streamed.segments, from_bytes.segments) and streamed.text == from_bytes.text
    assert streamed.duration == from_bytes.duration and len(streamed.segments) >= 4
    assert from_bytes.source.startswith("<") and streamed.source == str(two_minutes)
    alone = asr.transcribe(clip, max_new_tokens=TOKENS)[0]
    assert short.text == alone.text and _same(short.segments, alone.segments)
    clip_len = len(load_audio(clip).samples)
    assert any(clip_len in b and len(b) > 1 for b in sizes)  # the short clip rode with pieces
    assert len({n for b in sizes for n in b}) > 3  # pieces of both inputs
    assert len(sizes[0]) == 3 and sum(map(len, sizes)) >= 2 * len(streamed.segments) + 1  # rows refilled as they free


def test_pieces_reach_the_engine_in_bounded_groups(asr, two_minutes, monkeypatch):
    groups: list[float] = []
    real_submit = Scheduler.submit

    def spy(self, requests, *args, **kw):
        groups.append(sum(len(r.samples) for r in requests) / SR)
        return real_submit(self, requests, *args, **kw)

    monkeypatch.setattr(Scheduler, "submit", spy)
    t = asr.transcribe(str(two_minutes), max_new_tokens=TOKENS, feed_s=40.0)[0]
    assert len(groups) >= 2 and max(groups) <= 40.0 + 30.0
    monkeypatch.undo()
    again = asr.transcribe(str(two_minutes), max_new_tokens=TOKENS)[0]
    assert again.text == t.text and _same(again.segments, t.segments)  # grouping changes nothing


def test_short_clips_keep_the_single_piece_path(asr, speech_clips):
    clip = str(speech_clips[3])
    duration = load_audio(clip).duration
    ref = run_requests(asr.engine, [transcribe_module.Request(load_audio(clip).samples)], max_new_tokens=TOKENS)[0]
    for method in ("silero", "energy", "none"):
        t = asr.transcribe(clip, vad=method, max_new_tokens=TOKENS)[0]
        assert t.text == ref.text and len(t.segments) == 1
        assert t.segments[0].start == 0.0 and t.segments[0].end == round(duration, 3)


def test_piece_limit_and_methods(asr, two_minutes):
    short = asr.transcribe(str(two_minutes), max_piece_s=10.0, vad="energy", max_new_tokens=TOKENS)[0]
    duration = sf.info(two_minutes).duration
    _check_timeline(short, duration, limit=10.0)
    everything = asr.transcribe(str(two_minutes), vad="none", max_new_tokens=TOKENS)[0]
    _check_timeline(everything, duration)
    assert everything.segments[0].start == 0.0 and everything.segments[-1].end == everything.duration
    with pytest.raises(ValueError, match="webrtc"):
        asr.transcribe(str(two_minutes), vad="webrtc")
    with pytest.raises(ValueError, match="max_piece_s"):
        asr.transcribe(str(two_minutes), max_piece_s=0.5)


def test_long_array_and_errors_kept(asr, two_minutes, tmp_path):
    samples = load_audio(two_minutes).samples
    bad = tmp_path / "broken.flac"
    bad.write_bytes(b"fLaC" + b"\x00" * 100)
    seen = []
    out = asr.transcribe([(samples, SR), str(bad)], errors="keep", max_new_tokens=TOKENS, on_result=lambda i, t: seen.append(i))
    assert out[1].error and "broken.flac" in out[1].error
    _check_timeline(out[0], sf.info(two_minutes).duration)
    assert sorted(seen) == [0, 1]


# ---------------------------------------------------------------- command line outputs


def _cli(*args):
    cmd = [sys.executable, "-m", "medasr", "transcribe", *map(str, args)]
    return subprocess.run(cmd, capture_output=True, text=True, check=False)


def test_cli_subtitles_and_verbose_json(tiny_model, shared_audio, speech_clips, tmp_path):
    import srt
    import webvtt

    model = ["--model", tiny_model["original"], "--max-new-tokens", str(TOKENS)]
    long = shared_audio / "multilingual.mp3"  # 60 s: two pieces around its pause
    out = _cli(*model, "--format", "srt", long)
    assert out.returncode == 0, out.stderr
    subs = list(srt.parse(out.stdout))
    assert len(subs) >= 2 and [s.index for s in subs] == list(range(1, len(subs) + 1))
    assert all(a.end <= b.start for a, b in itertools.pairwise(subs))
    assert subs[-1].end.total_seconds() <= 59.9 + 1e-3 and all(s.content for s in subs)

    js = _cli(*model, "--format", "verbose_json", long, speech_clips[0])  # several inputs: JSON lines
    assert js.returncode == 0, js.stderr
    docs = [json.loads(line) for line in js.stdout.splitlines()]
    assert len(docs) == 2 and docs[0]["task"] == "transcribe" and docs[0]["language"] == "english"
    assert docs[0]["duration"] == pytest.approx(59.9, abs=0.05)
    segs = docs[0]["segments"]
    # readable cues (medasr.output.subtitles): at least one per segment, each segment's first cue starts with it
    assert [s["id"] for s in segs] == list(range(len(segs))) and len(segs) <= len(subs)
    assert docs[0]["text"] == " ".join(s["text"] for s in segs)
    assert {round(s["start"], 3) for s in segs} <= {round(x.start.total_seconds(), 3) for x in subs}
    assert len(docs[1]["segments"]) == 1 and docs[1]["segments"][0]["start"] == 0.0

    out_dir = tmp_path / "subs"
    run = _cli(*model, "--format", "vtt", "--vad", "energy", "--max-piece-s", "20", "--output-dir", out_dir, long, speech_clips[0])
    assert run.returncode == 0, run.stderr
    cues = webvtt.read(str(out_dir / "multilingual.vtt")).captions
    assert len(cues) >= 3 and all(c.end_in_seconds - c.start_in_seconds <= 20.0 + 1e-3 for c in cues)
    assert len(webvtt.read(str(out_dir / f"{speech_clips[0].stem}.vtt")).captions) >= 1

    several = _cli(*model, "--format", "srt", long, speech_clips[0])
    assert several.returncode == 2 and "--output-dir" in several.stderr and "Traceback" not in several.stderr
    bad = _cli(*model, "--max-piece-s", "0", long)
    assert bad.returncode == 2 and "--max-piece-s" in bad.stderr


# ---------------------------------------------------------------- quality, with the demo model


@pytest.mark.skipif(not DEMO.is_file(), reason=f"the demo model is not built yet ({DEMO} is missing)")
def test_long_consultation_transcribes_about_as_well_as_its_parts(tmp_path):
    """Held-out sentences spoken one after another with pauses over faint room noise: transcribing
    the whole recording (speech detection, pieces of several sentences, merging) costs at most a
    few WER points against transcribing the same stretches of audio one sentence at a time.

    Pieces of at most 15 s (2-3 sentences): the 4 M-parameter demo model is reliable up to there;
    on 30 s pieces of 5-6 sentences it still skips a sentence now and then (docs/demo-model.md)."""
    import jiwer

    from medasr.synth import sentences as synth
    from medasr.text.normalize import basic

    texts = synth.sentences(14, seed=2024, split="heldout")
    clean, spans = synth.spoken_in_turn(texts, tmp_path, np.random.default_rng(2))
    long = _write(tmp_path / "consultation.flac", [clean], seed=1)
    signal = load_audio(long).samples
    assert len(signal) / SR > 60

    asr = load_model("demo", device="cpu")
    one_by_one = asr.transcribe([(signal[a:b], SR) for a, b in spans])
    whole = asr.transcribe(str(long), max_piece_s=15)[0]
    assert 2 <= len(whole.segments) <= 0.6 * len(texts)  # most pieces hold several sentences
    ref = " ".join(basic(t) for t in texts)
    wer_parts = jiwer.wer(ref, " ".join(basic(t.text) for t in one_by_one))
    wer_long = jiwer.wer(ref, basic(whole.text))
    print(f"WER one by one {wer_parts:.3f}, whole recording {wer_long:.3f}")
    assert wer_long <= wer_parts + 0.05, (wer_parts, wer_long)


def test_a_streamed_file_is_normalised_as_a_whole_decode(tmp_path, speech_clips):
    """One normalisation rule: a file peaking above full scale (float WAV) is scaled by 1 / peak
    whether it is decoded whole or streamed piece by piece."""
    speech = load_audio(speech_clips[1]).samples
    signal = np.concatenate([speech * 1.8, np.zeros(SR, np.float32), speech, np.zeros(SR, np.float32)] * 4)
    path = tmp_path / "hot.wav"
    sf.write(path, signal, SR, subtype="FLOAT")
    whole = load_audio(path).samples
    assert np.abs(whole).max() == pytest.approx(1.0) and len(whole) > 30 * SR
    options = segmenter.vad_options("silero")
    streamed = segmenter.plan_input(str(path), options)
    assert streamed.path is not None and streamed.gain == pytest.approx(1 / np.abs(signal).max(), rel=1e-5)
    in_memory = segmenter.plan_samples(whole, "hot", options)
    assert streamed.pieces == in_memory.pieces
    for (k, a), (_, b) in zip(segmenter.piece_samples(streamed), segmenter.piece_samples(in_memory)):
        assert np.allclose(a, b, atol=1e-6), k
