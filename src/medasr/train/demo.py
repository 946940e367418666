"""Checking a model on held-out synthetic medical speech, as `medasr demo` and the demo model's
tests do: held-out sentences (never in the synthetic train split) spoken by espeak-ng's default
English voices at default speed and pitch, transcribed, and scored by corpus WER after the
seed's normalisation (lowercase, punctuation deleted)."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

DEFAULT_VOICES = ("en", "en-us")  # espeak-ng's default English voices
ESPEAK_SPEED = 175  # espeak-ng's default words per minute
ESPEAK_PITCH = 50  # espeak-ng's default pitch
EVAL_SEED = 2024  # a sentence seed no recipe trains or validates on


@dataclass
class DemoResult:
    voice: str
    reference: str
    hypothesis: str
    wer: float  # this sentence's normalised WER


def normalise(text: str) -> str:
    try:
        from medasr.text import basic
    except ImportError:  # the normaliser module missing: its definition, inline
        import string

        return " ".join(text.lower().translate(str.maketrans("", "", string.punctuation)).split())
    return basic(text)


def corpus_wer(references: list[str], hypotheses: list[str]) -> float:
    """Total word edits over total reference words, after normalisation (jiwer)."""
    import jiwer

    return jiwer.wer([normalise(r) for r in references], [normalise(h) for h in hypotheses])


def heldout_sentences(n: int, seed: int = EVAL_SEED) -> list[str]:
    from medasr import synth

    return synth.sentences(n, seed, "heldout")


def run_demo(
    model: str = "demo",
    n: int = 3,
    voices: tuple[str, ...] | list[str] = DEFAULT_VOICES,
    seed: int = EVAL_SEED,
    device: str = "cpu",
    sentences: list[str] | None = None,
    batch_size: int = 16,
) -> tuple[list[DemoResult], float]:
    """Speak `n` held-out sentences with each voice, transcribe them with `model`; (results, corpus WER)."""
    from medasr import synth
    from medasr.transcribe import load_model

    texts = sentences if sentences is not None else heldout_sentences(n, seed)
    asr = load_model(model, device=device, batch_size=batch_size)
    results: list[DemoResult] = []
    with tempfile.TemporaryDirectory(prefix="medasr-demo-") as tmp:
        clips, meta = [], []
        for voice in voices:
            for i, text in enumerate(texts):
                path = Path(tmp) / f"{voice}-{i}.wav"
                synth.render(text, path, voice=voice, speed=ESPEAK_SPEED, pitch=ESPEAK_PITCH)
                clips.append(path)
                meta.append((voice, text))
        transcripts = asr.transcribe(clips)
    for (voice, text), t in zip(meta, transcripts):
        results.append(DemoResult(voice, text, t.text, corpus_wer([text], [t.text])))
    total = corpus_wer([r.reference for r in results], [r.hypothesis for r in results])
    return results, total
