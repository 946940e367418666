"""Forced alignment (medasr.pipeline.align) with aligners of the real architecture built here: loading both
formats, the written form put back on the aligner's units, zero-length words widened, pieces of at
most 30 s on the original timeline, and bad input."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from medasr.audio.decode import SAMPLE_RATE, load_audio
from medasr.errors import AlignmentError, ModelLoadError
from medasr.model.aligner import load_aligner
from medasr.pipeline import align as A
from medasr.records import Segment, Word
from medasr.transcribe import MAX_PIECE_S


@pytest.fixture(scope="session")
def aligner(tiny_aligner):
    return load_aligner(str(tiny_aligner["original"]), device="cpu", dtype="float32")


def test_both_formats_load_to_the_same_aligner(tiny_aligner, speech_clips):
    import torch

    samples = load_audio(speech_clips[0]).samples
    logits = []
    for fmt in ("original", "transformers"):
        loaded = load_aligner(str(tiny_aligner[fmt]), device="cpu")
        assert loaded.format == fmt and loaded.num_bins == 400 and loaded.segment_ms == 80.0
        inputs, _ = loaded.processor.prepare_forced_aligner_inputs(audio=samples, transcript="The patient takes metoprolol.")
        with torch.no_grad():
            logits.append(loaded.model(**inputs).logits)
    assert torch.equal(logits[0], logits[1])
    config = json.loads((tiny_aligner["original"] / "config.json").read_text())
    assert config["thinker_config"]["model_type"] == "qwen3_forced_aligner" and config["thinker_config"]["classify_num"] == 400
    assert config["timestamp_segment_time"] == 80.0 and "timestamp_token_id" in config


def test_an_asr_checkpoint_is_not_an_aligner_and_vice_versa(tiny_model, tiny_aligner):
    from medasr.model.checkpoint import load

    for fmt in ("original", "transformers"):
        with pytest.raises(ModelLoadError, match="not a forced aligner.*--model"):
            load_aligner(str(tiny_model[fmt]))
        with pytest.raises(ModelLoadError, match="is a forced aligner.*--aligner"):
            load(str(tiny_aligner[fmt]))


def test_an_aligner_without_its_head_is_refused(tiny_aligner, tmp_path):
    import shutil

    from safetensors.torch import load_file, save_file

    for fmt, head in (("original", "thinker.lm_head.weight"), ("transformers", "score.weight")):
        broken = tmp_path / fmt
        shutil.copytree(tiny_aligner[fmt], broken)
        state = load_file(str(broken / "model.safetensors"))
        del state[head]
        save_file(state, str(broken / "model.safetensors"))
        with pytest.raises(ModelLoadError, match="do not match"):
            load_aligner(str(broken))


def test_medasr_convert_handles_aligners(tiny_aligner, tmp_path):
    # original -> transformers runs in-process in test_align_parity; here the command, the other way
    dst = tmp_path / "original"
    run = subprocess.run(
        [sys.executable, "-m", "medasr", "convert", str(tiny_aligner["transformers"]), str(dst), "--to", "original"],
        capture_output=True, text=True, check=False,
    )
    assert run.returncode == 0, run.stderr
    converted = load_aligner(str(dst))
    assert converted.format == "original" and converted.num_bins == 400
    config = json.loads((dst / "config.json").read_text())
    assert config["thinker_config"]["model_type"] == "qwen3_forced_aligner"


# ---------------------------------------------------------------------------- written form
def test_units_are_the_official_split_and_keep_their_written_form(aligner):
    units = A.split_units(aligner.processor, 'Give (metoprolol) 2.5 mg -- now; the x-ray, "Don\'t" stop.')
    assert [u.text for u in units] == ["Give", "metoprolol", "25", "mg", "now", "the", "xray", "Don't", "stop"]
    assert [u.display for u in units] == ["Give", "(metoprolol)", "2.5", "mg --", "now;", "the", "x-ray,", '"Don\'t"', "stop."]
    assert [u.sentence_end for u in units][-1] and units[4].clause_end and units[3].clause_end
    cjk = A.split_units(aligner.processor, "你好，世界。 ok", language=None)
    assert [(u.text, u.display) for u in cjk] == [("你", "你"), ("好", "好，"), ("世", "世"), ("界", "界。"), ("ok", "ok")]
    assert A.split_units(aligner.processor, "  -- ... !") == [] and A.split_units(aligner.processor, "") == []


def test_zero_length_words_are_widened_within_their_neighbours():
    words = [Word("a", 0.0, 0.4), Word("b", 0.4, 0.4), Word("c", 0.4, 0.4), Word("d", 1.0, 1.2), Word("e", 1.2, 1.2)]
    A.widen(words, 0.0, 1.25, 0.08)
    assert [(w.start, w.end) for w in words] == [(0.0, 0.4), (0.4, 0.48), (0.48, 0.56), (1.0, 1.2), (1.2, 1.25)]
    boxed = [Word("x", 0.5, 0.5), Word("y", 0.5, 0.5), Word("z", 0.5, 0.6)]  # no room on the left, up to z on the right
    A.widen(boxed, 0.5, 2.0, 0.08)
    assert boxed[0].start == 0.5 and boxed[1].end == 0.5  # nothing to widen into: left as it is
    assert all(a.end <= b.start for a, b in zip(boxed, boxed[1:]))


def test_written_form_and_widening_on_top_of_the_raw_output(aligner, speech_clips):
    samples = load_audio(speech_clips[1]).samples
    text = "Chest pain, radiating to the left-arm since this morning."
    raw = A.align(aligner, samples, text, raw=True)
    final = A.align(aligner, samples, text)
    assert [w.word for w in raw] == ["Chest", "pain", "radiating", "to", "the", "leftarm", "since", "this", "morning"]
    assert [w.word for w in final] == ["Chest", "pain,", "radiating", "to", "the", "left-arm", "since", "this", "morning."]
    duration = len(samples) / SAMPLE_RATE
    for r, f in zip(raw, final):
        if r.end > r.start:  # words with a length keep the aligner's times
            assert (f.start, f.end) == (r.start, r.end)
    assert all(0.0 <= w.start <= w.end <= duration + 1e-6 for w in final)
    assert all(a.end <= b.start + 1e-9 for a, b in zip(final, final[1:]))
    assert sum(w.end - w.start for w in final) >= sum(w.end - w.start for w in raw)


# ---------------------------------------------------------------------------- long recordings
def test_long_recordings_go_in_pieces_of_at_most_30_s_on_the_original_timeline(aligner, tmp_path, monkeypatch):
    from medasr.synth import sentences as synth

    texts = synth.sentences(14, seed=7, split="heldout")
    signal, spans = synth.spoken_in_turn(texts, tmp_path, np.random.default_rng(0))
    assert len(signal) / SAMPLE_RATE > 2 * MAX_PIECE_S
    seen = []
    run = A._run

    def spy(al, clips, texts_, language, batch_size):
        seen.extend((len(c) / SAMPLE_RATE, t) for c, t in zip(clips, texts_))
        return run(al, clips, texts_, language, batch_size)

    monkeypatch.setattr(A, "_run", spy)
    words = A.align(aligner, signal, " ".join(texts))
    assert len(seen) >= 3 and all(d <= MAX_PIECE_S + A.PIECE_TOLERANCE_S for d, _ in seen)
    assert " ".join(t for _, t in seen).split() == [u.text for u in A.split_units(aligner.processor, " ".join(texts))]
    assert [w.word for w in words] == " ".join(texts).split()
    assert all(a.start <= b.start for a, b in zip(words, words[1:]))
    assert words[-1].end <= len(signal) / SAMPLE_RATE and words[-1].start > MAX_PIECE_S


def test_words_are_shared_out_in_proportion_to_speech_preferring_sentence_ends(aligner):
    text = "One two three four. Five six seven eight nine ten, eleven twelve. Thirteen fourteen."
    units = A.split_units(aligner.processor, text)
    parts = A.share_out(units, [4.0, 6.0, 2.0])
    assert " ".join(parts) == text and len(parts) == 3
    assert parts[0] == "One two three four." and parts[2] == "Thirteen fourteen."
    assert A.share_out(units, [5.0]) == [text]


# ---------------------------------------------------------------------------- bad input
def test_bad_input_gives_a_clear_error_or_no_words(aligner, speech_clips):
    samples = load_audio(speech_clips[2]).samples  # "No." (~0.6 s)
    assert A.align(aligner, samples, "") == [] and A.align(aligner, samples, " -- ... ") == []
    with pytest.raises(AlignmentError, match=r"words but the audio is .* at most \d+ words fit"):
        A.align(aligner, samples, "the patient " * 40)
    with pytest.raises(AlignmentError, match="no speech"):
        A.align(aligner, np.zeros(3 * SAMPLE_RATE, np.float32), "Give metoprolol.")
    with pytest.raises(AlignmentError, match="empty"):
        A.align(aligner, np.zeros(0, np.float32), "Give metoprolol.")
    with pytest.raises(AlignmentError, match="does not support Greek"):
        A.align(aligner, samples, "No.", language="el")
    with pytest.raises(AlignmentError, match="at most 30 s"):
        A.align_pieces(aligner, np.zeros(40 * SAMPLE_RATE, np.float32), [Segment(0.0, 40.0, "Give metoprolol.")])
    with pytest.raises(AlignmentError, match="cannot be aligned to"):
        A.align_pieces(aligner, samples, [Segment(0.0, 0.3, "one two three four five six seven")])
    assert A.align_pieces(aligner, samples, [Segment(0.0, 0.5, " "), Segment(0.5, 0.6, "")]) == []


def test_pieces_read_one_by_one_each_get_their_words_and_a_bad_one_can_be_skipped(aligner, speech_clips, caplog):
    first, second = (load_audio(c).samples for c in speech_clips[:2])
    clips = [A.Clip(first, 3.0, "The patient takes metoprolol."), A.Clip(second[:4000], 10.0, "word " * 10), A.Clip(second, 12.5, "Chest pain.")]
    with pytest.raises(AlignmentError, match="at 10.00 s"):
        A.align_clips(aligner, clips)
    words = A.align_clips(aligner, clips, skip_bad=True)
    assert [len(w) for w in words] == [4, 0, 2] and "no word times for the piece at 10.00 s" in caplog.text
    assert all(3.0 <= w.start <= w.end <= 3.0 + len(first) / SAMPLE_RATE + 1e-3 for w in words[0])
    assert all(w.start >= 12.5 for w in words[2]) and [w.word for w in words[2]] == ["Chest", "pain."]
