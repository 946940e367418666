"""The demo model's varied corpus: its text sources, the held-out sets that never meet training,
its voices, contexts and non-speech clips."""

from __future__ import annotations

import json
import random
import re
import shutil

import numpy as np
import pytest
import soundfile as sf

from medasr.synth import corpus as synthcorpus
from medasr.synth import sources as textsources
from medasr.synth.sentences import split_of
from medasr.text.normalize import written_form


@pytest.fixture(scope="module", autouse=True)
def wordnet():
    if not (textsources.WORDNET_DIR / "data.noun").exists():
        pytest.fail("WordNet is not installed: apt-get install wordnet-base (the corpus's general English)")


@pytest.fixture(scope="module")
def train_sample():
    return textsources.corpus(3000, seed=0, split="train")


def test_corpus_mixes_clinical_and_wordnet_text_in_written_form(train_sample):
    sources = {s.source for s in train_sample}
    assert sources == {"clinical", "wordnet"}
    share = sum(s.source == "clinical" for s in train_sample) / len(train_sample)
    assert 0.45 < share < 0.65
    assert len({s.text for s in train_sample}) == len(train_sample)
    for s in train_sample[:500]:
        assert written_form(s.text) == s.text and not re.search(r"[{}]", s.text)
    # numbers, dates, spelled names, abbreviations and made-up drugs all occur
    texts = " ".join(s.text for s in train_sample)
    for pattern in (r"\b\d+:\d\d\b", r"\b(January|March|July) \d+\b", r"spelled( [A-Z]){3,}", r"\b(ECG|COPD|ICU)\b"):
        assert re.search(pattern, texts), pattern
    assert any(t not in textsources._drug_names() for s in train_sample for t in s.terms)
    assert textsources.corpus(50, seed=0) == train_sample[:50]  # seeded and prefix-stable


def test_training_never_meets_a_heldout_sentence_template_file_or_drug(train_sample):
    docs = {s.doc for s in train_sample}
    held_docs = {"wordnet:" + name for name in textsources.HELDOUT_LEXFILES}
    held_templates = {"template:" + textsources._template_id(t) for t in textsources.HELDOUT_TEMPLATES}
    assert not docs & held_docs and not docs & held_templates
    texts = {s.text for s in train_sample}
    assert not texts & textsources.heldout_document_texts()
    assert all(split_of(t) == "train" for t in texts)
    drugs = re.compile(r"\b(" + "|".join(textsources.HELDOUT_DRUGS) + r")\b", re.IGNORECASE)
    assert not any(drugs.search(t) for t in texts)
    # every evaluation set is refused by the training gate, whatever its seed
    for split, share in (("heldout", 0.5), ("heldout-docs", 1.0), ("heldout-docs", 0.0)):
        held = textsources.corpus(200, seed=7, split=split, clinical_share=share)
        assert not any(textsources.training_filter(s) for s in held), split
        assert not {s.text for s in held} & texts
    # a WordNet gloss holding a held-out drug is refused too
    assert not textsources.training_filter(textsources.Sentence("Ticagrelor is a drug.", "wordnet", "wordnet:noun.artifact"))


def test_heldout_documents_are_whole_files_and_templates():
    from medasr.synth.sentences import TEMPLATES

    held = textsources.corpus(300, seed=1, split="heldout-docs")
    for s in held:
        if s.source == "wordnet":
            assert s.doc.split(":", 1)[1] in textsources.HELDOUT_LEXFILES
        else:
            assert s.doc in {"template:" + textsources._template_id(t) for t in textsources.HELDOUT_TEMPLATES}
    assert not set(textsources.HELDOUT_TEMPLATES) & set(textsources.training_templates())
    assert set(TEMPLATES) <= set(textsources.training_templates())
    # the held-out WordNet files hold every sentence of those files, and only those
    assert len(textsources.heldout_document_texts()) > 1500


def test_independent_sentences_are_not_training_text(train_sample):
    from medasr.train.demo import independent_sentences

    sentences = independent_sentences()
    assert len(sentences) == 30
    assert not set(sentences) & {s.text for s in train_sample}
    assert all(written_form(s) == s for s in sentences)


def test_contexts_hold_the_clip_words_or_none_of_them():
    rng = random.Random(0)
    sentences = [s for s in textsources.corpus(1500, seed=3) if s.terms]
    related = unrelated = 0
    for s in sentences:
        context = synthcorpus._context(s, rng)
        if not context:
            continue
        named = [t for t in s.terms if re.search(rf"\b{re.escape(t)}\b", context)]
        if named:
            related += 1
        else:
            unrelated += 1
            assert not any(t in context for t in s.terms)
    assert related > 0.2 * len(sentences) and unrelated > 0.03 * len(sentences)
    # an unrelated context never quotes held-out text
    for _ in range(200):
        assert textsources.unrelated_context(rng) not in textsources.heldout_document_texts()


@pytest.mark.parametrize("kind", synthcorpus.NONSPEECH_KINDS)
def test_nonspeech_signals(kind):
    x = synthcorpus.nonspeech(kind, 0.2, np.random.default_rng(0))
    assert x.dtype == np.float32 and len(x) == 3200 and np.all(np.abs(x) <= 1)
    level = np.sqrt(np.mean(x.astype(np.float64) ** 2))
    assert level == 0 if kind == "silence" else 10 ** (-86 / 20) < level < 10 ** (-29 / 20)


def test_corpus_renders_voices_contexts_and_nonspeech_and_resumes(tmp_path):
    for tool in ("espeak-ng", "flite"):
        if shutil.which(tool) is None:
            pytest.fail(f"{tool} is not installed: apt-get install {tool}")
    manifest = synthcorpus.synthesize_corpus(tmp_path, 8, seed=11, nonspeech_share=0.25, progress=False)
    lines = [json.loads(line) for line in manifest.read_text().splitlines()]
    speech = [row for row in lines if row["dataset"] != "nonspeech"]
    quiet = [row for row in lines if row["dataset"] == "nonspeech"]
    assert len(speech) == 8 and len(quiet) == 2
    assert all(row["text"] == "" and row["language"] == "None" for row in quiet)
    for row in lines:
        info = sf.info(str(tmp_path / row["audio"]))
        assert info.samplerate == 16000 and abs(info.duration - row["duration"]) < 0.01
    mtimes = {p: p.stat().st_mtime_ns for p in (tmp_path / "audio").glob("*.wav")}
    synthcorpus.synthesize_corpus(tmp_path, 8, seed=11, nonspeech_share=0.25, progress=False)
    assert {p: p.stat().st_mtime_ns for p in (tmp_path / "audio").glob("*.wav")} == mtimes  # nothing re-rendered
    # a flite voice in a room renders too
    voice = synthcorpus.Voice("flite", "slt", 1.1, room=True, gain_db=-6.0)
    seconds = synthcorpus.render_voice("Give aspirin 75 milligrams.", tmp_path / "f.wav", voice, seed=1)
    samples, rate = sf.read(tmp_path / "f.wav")
    assert rate == 16000 and 0.8 < seconds < 4 and 0.05 < np.max(np.abs(samples)) <= 0.51


def test_evaluation_sets_speak_at_espeaks_defaults(tmp_path):
    manifest = synthcorpus.synthesize_corpus(tmp_path, 2, seed=5, split="heldout-docs",
                                             plain_voices=("en", "en-us"), progress=False)
    lines = [json.loads(line) for line in manifest.read_text().splitlines()]
    assert [row["voice"] for row in lines] == ["espeak:en", "espeak:en-us"] * 2
    assert all(row["speed"] == 175 and row["pitch"] == 50 and "prompt" not in row for row in lines)
