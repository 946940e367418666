"""Synthetic speech with exact word times for training and measuring forced aligners.

Sentences come from `medasr.synth.sentences`'s template generator and are spoken by libespeak-ng with word
events (`medasr.synth.words`), so every word's start and end is known on the audio's own samples.

Held out: every `every`-th template of `synth.TEMPLATES` (`heldout_templates`). Training draws
from the synth train split minus any sentence such a template could have made
(`training_pool`); measurements draw from the synth held-out split, keeping only sentences of
held-out templates (`heldout_pool`). So no measured sentence and no measured template is ever
trained on (the lexicon of drugs, doses and conditions is shared).

Training audio is made of 8 s windows (`WINDOW_S`): the Qwen3-ASR encoder attends within windows
of `n_window_infer` = 800 mel frames and convolves 1 s chunks, so its output for k consecutive
windows is the concatenation of its outputs for each window encoded alone. Each window holds
whole sentences of one speaker between pauses, so any run of 1 to 4 windows (8-32 s) is a
training piece that starts and ends in silence, as the pieces long recordings are cut into; the
encoder runs once per window however many pieces share it.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass, field

import numpy as np

from medasr.audio.decode import SAMPLE_RATE
from medasr.errors import UserError

WINDOW_S = 8.0  # n_window_infer (800 mel frames of 10 ms)
WINDOW_TOKENS = 104  # encoder outputs per full window: 13 per 1 s chunk


# ---------------------------------------------------------------------------- held-out templates
def _template_pattern(template: str) -> re.Pattern:
    parts = re.split(r"\{[a-z_0-9]+\}", template)
    return re.compile("^" + "(.+?)".join(re.escape(p) for p in parts) + "$", re.IGNORECASE)


def heldout_templates(every: int) -> list[str]:
    """Templates every-1, 2*every-1, ... of synth.TEMPLATES (none when every <= 0)."""
    from medasr.synth.sentences import TEMPLATES

    return [t for i, t in enumerate(TEMPLATES) if every > 0 and i % every == every - 1]


def matches_any(text: str, templates: list[str]) -> bool:
    return any(_template_pattern(t).match(text) for t in templates)


def training_pool(n: int, seed: int, held: list[str]) -> list[str]:
    """Synth train-split sentences, minus any sentence a held-out template could have made."""
    from medasr.synth import sentences as synth

    pool = [s for s in synth.sentences(n, seed=seed, split="train") if not matches_any(s, held)]
    if not pool:
        raise UserError("no training sentences left after holding out templates")
    return pool


def heldout_pool(n: int, held: list[str], seed: int = 2024) -> list[str]:
    """`n` sentences of the synth held-out split made by held-out templates (and by no other)."""
    from medasr.synth import sentences as synth

    others = [t for t in synth.TEMPLATES if t not in held]
    draw = 4 * n
    while True:
        out = [s for s in synth.sentences(draw, seed=seed, split="heldout") if matches_any(s, held) and not matches_any(s, others)]
        if len(out) >= n:
            return out[:n]
        if draw > 200 * n:
            raise UserError(f"only {len(out)} held-out sentences match the held-out templates")
        draw *= 2


# ---------------------------------------------------------------------------- recordings
@dataclass
class Spoken:
    """A synthetic recording, its text, and each timed word's (start, end) in seconds."""

    samples: np.ndarray
    text: str
    times: list[tuple[float, float]] = field(default_factory=list)  # tokens with letters or digits, in order


def speak_sentences(
    texts: list[str], rng: random.Random, voice: str, speed: int, pitch: int,
    pause_s: tuple[float, float] = (0.3, 2.0), edge_silence_s: float = 0.0,
    noise_dbfs: tuple[float, float] | None = None,
) -> Spoken:
    """`texts` spoken in turn by one voice with pauses, silence at both ends, optional white noise."""
    from medasr.synth.words import speak_timed

    parts, times, pos = [], [], 0
    for i, text in enumerate(texts):
        gap = int((rng.uniform(0, edge_silence_s) if i == 0 else rng.uniform(*pause_s)) * SAMPLE_RATE)
        parts.append(np.zeros(gap, np.float32))
        pos += gap
        spoken = speak_timed(text, voice, speed, pitch)
        times += [(pos / SAMPLE_RATE + w.start, pos / SAMPLE_RATE + w.end) for w in spoken.words]
        parts.append(spoken.samples)
        pos += len(spoken.samples)
    parts.append(np.zeros(int(rng.uniform(0, edge_silence_s) * SAMPLE_RATE), np.float32))
    return Spoken(_noisy(np.concatenate(parts), rng, noise_dbfs), " ".join(texts), times)


def _noisy(samples: np.ndarray, rng: random.Random, noise_dbfs: tuple[float, float] | None) -> np.ndarray:
    if noise_dbfs is None:
        return samples
    level = 10 ** (rng.uniform(*noise_dbfs) / 20)
    noise = np.random.default_rng(rng.getrandbits(32)).normal(0.0, level, len(samples))
    return np.clip(samples + noise, -1.0, 1.0).astype(np.float32)


def speak_windows(
    pool: list[str], rng: random.Random, n_windows: int, voice: str, speed: int, pitch: int,
    pause_s: tuple[float, float], edge_silence_s: float, noise_dbfs: tuple[float, float] | None,
) -> list[Spoken]:
    """`n_windows` recordings of exactly WINDOW_S, each whole sentences of one speaker: up to
    `edge_silence_s` of silence first, pauses between sentences, silence to the end."""
    from medasr.synth.words import speak_timed

    size = int(WINDOW_S * SAMPLE_RATE)
    tail = int(0.1 * SAMPLE_RATE)  # the last sound ends at least this far before the window's end
    windows = []
    for _ in range(n_windows):
        samples = np.zeros(size, np.float32)
        pos = int(rng.uniform(0.05, max(0.05, edge_silence_s)) * SAMPLE_RATE)
        texts, times, misses = [], [], 0
        while misses < 3:
            spoken = speak_timed(rng.choice(pool), voice, speed, pitch)
            start = pos + (int(rng.uniform(*pause_s) * SAMPLE_RATE) if texts else 0)
            if start + len(spoken.samples) > size - tail:
                misses += 1  # does not fit: try another sentence, then close the window
                continue
            samples[start : start + len(spoken.samples)] = spoken.samples
            times += [(float(start / SAMPLE_RATE + w.start), float(start / SAMPLE_RATE + w.end)) for w in spoken.words]
            texts.append(spoken.text)
            pos = start + len(spoken.samples)
        if texts:
            windows.append(Spoken(_noisy(samples, rng, noise_dbfs), " ".join(texts), times))
    return windows
