"""Checking a model on held-out synthetic medical speech, as `medasr demo` and the demo model's
tests do: held-out sentences spoken by espeak-ng's default English voices at default speed and
pitch, transcribed, and scored by corpus WER after the seed's normalisation (lowercase,
punctuation deleted).

Sentence sets (`SETS`), none of which any training sentence comes from (`medasr.synth.sources`):
- heldout: sentences of the training sources (clinical templates, WordNet files) held out by a
  hash of their text;
- templates: sentences of the held-out clinical templates;
- documents: glosses and examples of the held-out WordNet lexicographer files;
- independent: 30 medical sentences written by hand (assets/eval/independent-medical.txt);
- legacy: the first demo model's held-out sentences (its 41 templates, `synth.sentences`).
Besides WER: `context_check` (held-out drug names, with and without them in the context) and
`silence_check` (silence, noise and 0.2 s clips must come back empty).
"""

from __future__ import annotations

import random
import re
import tempfile
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from medasr.synth.sentences import ESPEAK_PITCH, ESPEAK_SPEED, PLAIN_VOICES

EVAL_SEED = 2024  # a sentence seed no recipe trains or validates on
SETS = ("heldout", "templates", "documents", "independent", "legacy")


@dataclass
class DemoResult:
    voice: str
    reference: str
    hypothesis: str
    wer: float  # this sentence's normalised WER
    context: str = ""


def normalise(text: str) -> str:
    from medasr.text.normalize import basic

    return basic(text)


def corpus_wer(references: list[str], hypotheses: list[str]) -> float:
    """Total word edits over total reference words, after normalisation (jiwer)."""
    import jiwer

    refs = [normalise(r) for r in references]
    hyps = [normalise(h) for h in hypotheses]
    keep = [i for i, r in enumerate(refs) if r]  # jiwer refuses empty references
    return jiwer.wer([refs[i] for i in keep], [hyps[i] for i in keep])


def independent_sentences() -> list[str]:
    text = resources.files("medasr").joinpath("assets/eval/independent-medical.txt").read_text(encoding="utf-8")
    return [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]


def set_sentences(name: str, n: int, seed: int = EVAL_SEED) -> list[str]:
    """`n` sentences of the evaluation set `name` (all of them for "independent")."""
    from medasr.synth import sentences as synth
    from medasr.synth import sources as textsources

    if name == "heldout":
        return [s.text for s in textsources.corpus(n, seed, "heldout")]
    if name == "templates":
        return [s.text for s in textsources.corpus(n, seed, "heldout-docs", clinical_share=1.0)]
    if name == "documents":
        return [s.text for s in textsources.corpus(n, seed, "heldout-docs", clinical_share=0.0)]
    if name == "independent":
        return independent_sentences()[:n]
    if name == "legacy":
        return synth.sentences(n, seed, "heldout")
    raise ValueError(f"unknown sentence set {name!r}; known: {', '.join(SETS)}")


def heldout_sentences(n: int, seed: int = EVAL_SEED) -> list[str]:
    return set_sentences("heldout", n, seed)


def _speak(texts: list[str], voices, tmp: str) -> tuple[list[Path], list[tuple[str, str]]]:
    from medasr.synth import sentences as synth

    clips, meta = [], []
    for voice in voices:
        for i, text in enumerate(texts):
            path = Path(tmp) / f"{voice}-{i}.wav"
            synth.render(text, path, voice=voice, speed=ESPEAK_SPEED, pitch=ESPEAK_PITCH)
            clips.append(path)
            meta.append((voice, text))
    return clips, meta


def _transcribe(asr, clips: list[Path], contexts: list[str | None]) -> list[str]:
    """Transcripts of `clips`, each with its own context, in batches (engine level: no speech
    detection, each clip whole, the language forced to English as `medasr transcribe` does)."""
    from medasr.audio.decode import load_audio
    from medasr.pipeline.engine import Request
    from medasr.pipeline.scheduler import run_requests

    requests = [Request(load_audio(c).samples, ctx or None, "English") for c, ctx in zip(clips, contexts)]
    return [r.text for r in run_requests(asr.engine, requests)]


def run_demo(
    model: str = "demo",
    n: int = 3,
    voices: tuple[str, ...] | list[str] = PLAIN_VOICES,
    seed: int = EVAL_SEED,
    device: str = "cpu",
    sentences: list[str] | None = None,
    batch_size: int = 16,
    context: str | None = None,
    asr=None,
) -> tuple[list[DemoResult], float]:
    """Speak `n` held-out sentences with each voice, transcribe them with `model`; (results, corpus WER)."""
    from medasr.transcribe import load_model

    texts = sentences if sentences is not None else heldout_sentences(n, seed)
    asr = asr or load_model(model, device=device, batch_size=batch_size)
    with tempfile.TemporaryDirectory(prefix="medasr-demo-") as tmp:
        clips, meta = _speak(texts, voices, tmp)
        hyps = _transcribe(asr, clips, [context] * len(clips))
    results = [DemoResult(v, t, h, corpus_wer([t], [h]), context or "") for (v, t), h in zip(meta, hyps)]
    total = corpus_wer([r.reference for r in results], [r.hypothesis for r in results])
    return results, total


# ---- context ----------------------------------------------------------------------------------

@dataclass
class ContextCheck:
    recall_without: float  # share of held-out drug names written exactly, no context
    recall_with: float  # ... with a hotword list holding the right names among distractors
    wer_without: float
    wer_with: float
    wer_unrelated: float  # with a context that has nothing to do with the clip
    examples: list[tuple[str, str, str, str]]  # (reference, no context, right context, the context)
    clips: int


def drug_sentences(n: int, seed: int = EVAL_SEED) -> list[tuple[str, tuple[str, ...]]]:
    """(sentence, its held-out drug names): held-out templates whose drugs are `HELDOUT_DRUGS`,
    names no training sentence holds."""
    from medasr.synth import sentences as synth
    from medasr.synth import sources as textsources

    lexicon = {**synth._terms(None), "drugs": textsources.HELDOUT_DRUGS}
    templates = [t for t in textsources.HELDOUT_TEMPLATES if "{drug}" in t]
    rng = random.Random(f"drugs:{seed}")
    out, seen = [], set()
    while len(out) < n:
        made_up: list[str] = []
        text = synth._fill(rng.choice(templates), rng, lexicon, textsources._extra(made_up))
        drugs = tuple(d for d in textsources.HELDOUT_DRUGS if re.search(rf"\b{d}\b", text))
        if text not in seen and drugs:
            seen.add(text)
            out.append((text, drugs))
    return out


def _recalled(term: str, hypothesis: str) -> bool:
    return re.search(rf"\b{re.escape(term)}\b", normalise(hypothesis)) is not None


def context_check(model: str = "demo", n: int = 50, voices=PLAIN_VOICES, seed: int = EVAL_SEED,
                  device: str = "cpu", asr=None) -> ContextCheck:
    """Held-out drug names with and without them in the context, and an unrelated context."""
    from medasr.synth import sources as textsources
    from medasr.transcribe import load_model

    asr = asr or load_model(model, device=device)
    items = drug_sentences(n, seed)
    texts = [t for t, _ in items]
    rng = random.Random(f"context:{seed}")
    right = [textsources.hotword_context(drugs, rng) for _, drugs in items]
    unrelated = [textsources.unrelated_context(rng) for _ in items]
    with tempfile.TemporaryDirectory(prefix="medasr-demo-") as tmp:
        clips, meta = _speak(texts, voices, tmp)
        k = len(texts)
        bare = _transcribe(asr, clips, [None] * len(clips))
        with_ctx = _transcribe(asr, clips, [right[i % k] for i in range(len(clips))])
        other = _transcribe(asr, clips, [unrelated[i % k] for i in range(len(clips))])
    refs = [t for _, t in meta]
    names = [(items[i % k][1], i) for i in range(len(clips))]

    def recall(hyps: list[str]) -> float:
        hits = [_recalled(d, hyps[i]) for drugs, i in names for d in drugs]
        return sum(hits) / len(hits)

    examples = [(refs[i], bare[i], with_ctx[i], right[i % k]) for i in range(min(3, len(refs)))]
    return ContextCheck(recall(bare), recall(with_ctx), corpus_wer(refs, bare), corpus_wer(refs, with_ctx),
                        corpus_wer(refs, other), examples, len(clips))


# ---- silence ----------------------------------------------------------------------------------

def silence_clips(seed: int = EVAL_SEED) -> list[tuple[str, object]]:
    """(name, 16 kHz samples): silence, noises, hum and clicks of 5 s, and 0.2 s clips."""
    import numpy as np

    from medasr.synth.corpus import NONSPEECH_KINDS, nonspeech

    rng = np.random.default_rng(seed)
    clips = [("5 s digital silence", np.zeros(80_000, np.float32)),
             ("0.2 s digital silence", np.zeros(3_200, np.float32))]
    for kind in NONSPEECH_KINDS[1:]:
        clips.append((f"5 s {kind}", nonspeech(kind, 5.0, rng)))
        clips.append((f"0.2 s {kind}", nonspeech(kind, 0.2, rng)))
    for level in (-60, -40):  # white noise at fixed levels: a quiet and a loud room
        x = rng.normal(0, 10 ** (level / 20), 80_000).astype(np.float32)
        clips.append((f"5 s white noise at {level} dBFS", x))
    return clips


def silence_check(model: str = "demo", device: str = "cpu", contexts=(None, "metoprolol, warfarin, apixaban"),
                  asr=None) -> list[tuple[str, str | None, str]]:
    """(clip, context, transcript) for every silence clip, without and with a context; each
    transcript should be empty. Engine level: no speech detection in front of the model."""
    from medasr.pipeline.engine import Request
    from medasr.pipeline.scheduler import run_requests
    from medasr.transcribe import load_model

    asr = asr or load_model(model, device=device)
    clips = silence_clips()
    requests = [Request(samples, ctx, "English") for _, samples in clips for ctx in contexts]
    requests += [Request(samples, ctx, None) for _, samples in clips for ctx in contexts]  # language detection on
    labels = [(name, ctx) for name, _ in clips for ctx in contexts] * 2
    return [(name, ctx, r.text) for (name, ctx), r in zip(labels, run_requests(asr.engine, requests))]
