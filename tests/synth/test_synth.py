"""Synthetic medical sentences and speech, and the lexicon they draw on."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import soundfile as sf

from medasr.audio.decode import SAMPLE_RATE
from medasr.cli import main
from medasr.data import read_manifest
from medasr.errors import DataError, UserError
from medasr.synth import sentences as synth
from medasr.text.lexicon import LEXICON, all_terms, medical_terms
from medasr.text.normalize import written_form

# ---- lexicon --------------------------------------------------------------------------------


def test_lexicon_has_the_categories_and_a_few_hundred_terms():
    for category in ("drugs", "conditions", "symptoms", "anatomy", "procedures", "units",
                     "frequencies", "routes"):
        assert LEXICON[category], category
    assert sum(map(len, LEXICON.values())) >= 300
    assert {"atorvastatin", "appendicitis", "milligrams", "twice daily"} <= all_terms()
    for words in LEXICON.values():
        assert len(words) == len(set(words))


def test_medical_terms_merges_a_user_file(tmp_path):
    extra = tmp_path / "terms.txt"
    extra.write_text("# site terms\nsemaglutide\n\ndrugs\ttirzepatide\nDevices\tinsulin pump\n")
    terms = medical_terms(extra)
    assert "tirzepatide" in terms["drugs"] and "atorvastatin" in terms["drugs"]
    assert terms["custom"] == {"semaglutide"} and terms["devices"] == {"insulin pump"}
    assert "tirzepatide" not in LEXICON["drugs"]  # the defaults are not mutated
    extra.write_text("drugs\t\n")
    with pytest.raises(DataError, match=r"terms.txt:1"):
        medical_terms(extra)
    with pytest.raises(DataError, match="does not exist"):
        medical_terms(tmp_path / "missing.txt")


# ---- sentences ------------------------------------------------------------------------------


def test_generator_gives_thousands_of_distinct_written_form_sentences():
    texts = synth.sentences(3500, seed=0)
    assert len(set(texts)) == 3500
    assert synth.sentences(3500, seed=0) == texts  # seeded
    assert synth.sentences(50, seed=1) != texts[:50]
    for text in texts:
        assert text[0].isupper() and text.endswith(".") and "  " not in text
        assert not re.search(r"\{|\}", text)
        assert written_form(text) == text
    # Quantities are digits, units spelled out.
    assert any(re.search(r"\b\d+(\.\d+)? milligrams of \w+", t) for t in texts)
    assert not any(re.search(r"\b(mg|mcg|ml)\b", t) for t in texts)


def test_train_and_heldout_never_overlap():
    train = set(synth.sentences(3000, seed=0, split="train"))
    heldout = set(synth.sentences(300, seed=0, split="heldout"))
    other_seed = set(synth.sentences(300, seed=7, split="heldout"))
    assert not train & heldout and not train & other_seed
    assert all(synth.split_of(t) == "heldout" for t in heldout)
    share = sum(synth.split_of(t) == "heldout" for t in synth.sentences(2000, seed=3, split="all"))
    assert 100 < share < 300  # about HELDOUT_PERCENT of all sentences


def test_generator_uses_a_given_lexicon_and_reports_exhaustion(monkeypatch):
    monkeypatch.setattr(synth, "TEMPLATES", ("Findings are consistent with {condition}.",))
    tiny = {cat: words[:2] for cat, words in LEXICON.items()}
    with pytest.raises(ValueError, match="could only make 2 distinct all sentences, not 3"):
        synth.sentences(3, seed=0, split="all", lexicon=tiny)
    monkeypatch.undo()
    lexicon = medical_terms()
    lexicon["drugs"] = {"zzdrug"}
    assert any("zzdrug" in t.lower() for t in synth.sentences(200, seed=0, lexicon=lexicon))


# ---- speech ---------------------------------------------------------------------------------


def test_render_real_speech_with_noise_and_gain(tmp_path):
    text = "The patient was started on 40 milligrams of atorvastatin once daily."
    seconds = synth.render(text, tmp_path / "clean.wav", voice="en-gb", speed=175, pitch=50)
    samples, rate = sf.read(tmp_path / "clean.wav")
    assert rate == SAMPLE_RATE and samples.ndim == 1
    assert seconds == pytest.approx(len(samples) / SAMPLE_RATE)
    assert 2.0 < seconds < 8.0  # 11 words at about 175 words per minute
    assert np.abs(samples).max() > 0.05

    synth.render(text, tmp_path / "noisy.wav", voice="en-gb", speed=175, pitch=50, noise_db=10, seed=1)
    noisy, _ = sf.read(tmp_path / "noisy.wav")
    snr = 10 * np.log10(np.mean(samples**2) / np.mean((noisy - samples) ** 2))
    assert snr == pytest.approx(10, abs=1.0)

    synth.render(text, tmp_path / "quiet.wav", voice="en-gb", speed=175, pitch=50, gain_db=-20)
    quiet, _ = sf.read(tmp_path / "quiet.wav")
    assert np.abs(quiet).max() == pytest.approx(np.abs(samples).max() / 10, rel=0.05)


def test_render_errors(tmp_path, monkeypatch):
    with pytest.raises(UserError, match="no voice 'xx-none'"):
        synth.check_voice("xx-none")
    monkeypatch.setattr(synth.shutil, "which", lambda name: None)
    with pytest.raises(UserError, match="apt-get install espeak-ng"):
        synth.render("Hello.", tmp_path / "x.wav")


def test_synthesize_writes_manifest_and_resumes(tmp_path, monkeypatch):
    out = tmp_path / "synth"
    manifest = synth.synthesize(out, 3, seed=5, voices=["en-us", "en-gb"], progress=False, jobs=2)
    assert manifest == out / "manifest.jsonl"
    lines = [json.loads(x) for x in manifest.read_text().splitlines()]
    assert len(lines) == 3 and {x["voice"].split("+")[0] for x in lines} <= {"en-us", "en-gb"}
    assert [x["text"] for x in lines] == synth.sentences(3, seed=5)
    utts = list(read_manifest(manifest))  # the project's reader resolves the relative paths
    for utt, line in zip(utts, lines):
        assert line["audio"].startswith("audio/")
        assert sf.info(utt.audio).duration == pytest.approx(line["duration"], abs=0.002)
        assert 0.8 < line["duration"] < 12 and utt.dataset == "synth"
    assert json.loads((out / "synth_config.json").read_text())["seed"] == 5

    # A second run renders nothing: every clip is already there.
    def fail(*args, **kwargs):
        raise AssertionError("re-rendered a clip that exists")

    monkeypatch.setattr(synth, "render", fail)
    synth.synthesize(out, 3, seed=5, voices=["en-us", "en-gb"], progress=False)
    assert [json.loads(x) for x in manifest.read_text().splitlines()] == lines

    # An interrupted run: the missing clip, and only it, is rendered again.
    monkeypatch.undo()
    missing = out / lines[1]["audio"]
    missing.unlink()
    calls = []
    real = synth.render
    monkeypatch.setattr(synth, "render", lambda text, path, *a, **k: calls.append(path) or real(text, path, *a, **k))
    synth.synthesize(out, 3, seed=5, voices=["en-us", "en-gb"], progress=False)
    assert calls == [missing] and missing.exists()


def test_cli_synth(tmp_path, capsys):
    assert main(["synth", "--out", str(tmp_path / "o"), "--n", "1", "--split", "heldout",
                 "--voices", "en-us", "--noise-db", "30"]) == 0
    line = json.loads((tmp_path / "o" / "manifest.jsonl").read_text())
    assert synth.split_of(line["text"]) == "heldout" and line["id"].startswith("synth-heldout-")
    assert capsys.readouterr().out.strip().endswith("manifest.jsonl")
    assert main(["synth", "--out", str(tmp_path / "p"), "--n", "1", "--voices", "xx-none"]) == 2
    assert main(["synth", "--list-voices"]) == 0
    assert "en-us" in capsys.readouterr().out.split()
