"""What the benchmarks transcribe: clips from a dataset, or seeded synthetic clips.

Synthetic clips follow LibriSpeech test-clean's shape (log-normal durations clipped to 2-35 s,
median 5.8 s, mean ~7.2 s; the real set: 1.3-35 s, mean 7.4 s), or the "long" profile
(2-10 minutes, for the long-audio case). Their audio is either espeak-ng speech (whole
sentences from `medasr.synth.sentences` separated by short pauses, padded with quiet to the drawn
duration, so the reference text is exact) or white noise (fast, no reference).

Each clip is kept encoded (WAV bytes, or the dataset's file), so the offline benchmark's
end-to-end time includes decoding, and the serving benchmark uploads what a client would.
"""

from __future__ import annotations

import io
import json
import random
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from medasr.errors import DataError, UserError

SAMPLE_RATE = 16000
PROFILES = {
    # name: (min s, max s, log-normal median s, sigma) -- None sigma: uniform between the bounds
    "librispeech": (2.0, 35.0, 5.8, 0.65),
    "long": (120.0, 600.0, None, None),
}
AUDIO_KINDS = ("speech", "noise")
POOL_SENTENCES = 24  # rendered once per workload, reused by every clip
PAUSE_S = (0.2, 0.6)  # between sentences
QUIET_STD = 1e-4  # -80 dBFS hiss instead of digital silence


@dataclass
class Clip:
    id: str
    source: str | bytes  # a path or URL, or encoded audio bytes
    duration: float  # seconds
    text: str | None = None  # the reference, when known
    name: str = "audio.wav"  # file name for uploads (its extension tells the server the container)

    def payload(self) -> bytes:
        """The encoded audio, as a client would upload it."""
        if isinstance(self.source, bytes):
            return self.source
        if self.source.startswith(("http://", "https://", "data:")):
            from medasr.audio.decode import load_audio

            return wav_bytes(load_audio(self.source).samples)
        return Path(self.source).read_bytes()


@dataclass
class Workload:
    clips: list[Clip]
    description: dict  # how it was made (written into the results)

    @property
    def audio_s(self) -> float:
        return sum(c.duration for c in self.clips)

    @property
    def has_references(self) -> bool:
        return bool(self.clips) and all(c.text is not None for c in self.clips)

    def summary(self) -> dict:
        d = np.array([c.duration for c in self.clips]) if self.clips else np.zeros(1)
        return {
            **self.description,
            "clips": len(self.clips),
            "audio_s": round(self.audio_s, 3),
            "duration_s": {"min": round(float(d.min()), 3), "mean": round(float(d.mean()), 3),
                           "median": round(float(np.median(d)), 3), "max": round(float(d.max()), 3)},
        }  # fmt: skip


# ---------------------------------------------------------------------------------------------- datasets


def from_dataset(spec: str, split: str = "test", limit: int | None = None) -> Workload:
    """Clips of any dataset `medasr.data.read_dataset` reads (a JSONL manifest, LibriSpeech, ...)."""
    from medasr.data import read_dataset

    clips = []
    for u in read_dataset(spec, split):
        if limit is not None and len(clips) >= limit:
            break
        duration = u.duration if u.duration else _measure(u.audio)
        name = Path(u.audio).name if isinstance(u.audio, str) and not u.audio.startswith("data:") else "audio.wav"
        clips.append(Clip(u.id, u.audio, float(duration), u.text, name))
    if not clips:
        raise DataError(f"{spec}: no utterances in split {split!r}")
    return Workload(clips, {"source": str(spec), "split": split, "limit": limit})


def _measure(audio: str | bytes) -> float:
    from medasr.audio.decode import load_audio, local_file, probe_duration

    path = local_file(audio) if isinstance(audio, str) else None
    probed = probe_duration(path) if path is not None else None
    return probed if probed is not None else load_audio(audio).duration


# ---------------------------------------------------------------------------------------------- synthetic


def durations(n: int, profile: str = "librispeech", seed: int = 0) -> list[float]:
    """n seeded durations (seconds, 10 ms resolution) of a profile."""
    if profile not in PROFILES:
        raise UserError(f"unknown duration profile {profile!r}: use {', '.join(PROFILES)}")
    lo, hi, median, sigma = PROFILES[profile]
    rng = np.random.default_rng(seed)
    d = rng.uniform(lo, hi, n) if sigma is None else np.clip(rng.lognormal(np.log(median), sigma, n), lo, hi)
    return [round(float(x), 2) for x in d]


def synthetic(n: int, audio: str = "speech", profile: str = "librispeech", seed: int = 0) -> Workload:
    """n clips with seeded durations; espeak-ng speech with exact references, or white noise."""
    if n < 1:
        raise UserError("--synthetic needs at least 1 clip")
    if audio not in AUDIO_KINDS:
        raise UserError(f"unknown synthetic audio {audio!r}: use speech or noise")
    lengths = durations(n, profile, seed)
    rng = np.random.default_rng(seed + 1)
    pool = _sentence_pool(seed) if audio == "speech" else []
    clips = []
    for i, seconds in enumerate(lengths):
        if audio == "noise":
            samples, text = rng.normal(0.0, 0.05, int(seconds * SAMPLE_RATE)).astype(np.float32), None
        else:
            samples, text = _speech(pool, seconds, random.Random(f"{seed}:{i}"), rng)
        clips.append(Clip(f"synth-{i:05d}", wav_bytes(samples), seconds, text, f"synth-{i:05d}.wav"))
    return Workload(clips, {"source": "synthetic", "audio": audio, "profile": profile, "seed": seed})


def _sentence_pool(seed: int) -> list[tuple[str, np.ndarray]]:
    """Sentences and their leading 2-3 words (for the shortest clips), spoken by espeak-ng."""
    import tempfile

    from medasr.audio.decode import load_audio
    from medasr.synth import sentences as synth

    texts = synth.sentences(POOL_SENTENCES, seed=seed, split="all")
    texts += [" ".join(t.split()[: 2 + i % 2]).rstrip(",;:") + "." for i, t in enumerate(texts)]
    with tempfile.TemporaryDirectory(prefix="medasr-bench-") as tmp:

        def speak(item: tuple[int, str]) -> np.ndarray:
            k, text = item
            path = Path(tmp) / f"s{k}.wav"
            synth.render(text, path, voice=synth.DEFAULT_VOICES[k % 2], speed=150 + 10 * (k % 4))
            return load_audio(path).samples

        with ThreadPoolExecutor(4) as pool:
            audio = list(pool.map(speak, enumerate(texts)))
    return list(zip(texts, audio))


def _speech(pool, seconds: float, pick: random.Random, rng: np.random.Generator) -> tuple[np.ndarray, str]:
    """Whole sentences drawn from the pool until the next would not fit, then quiet up to `seconds`."""
    total = int(seconds * SAMPLE_RATE)
    parts, texts, used = [], [], 0
    while True:
        pause = int(pick.uniform(*PAUSE_S) * SAMPLE_RATE)
        fits = [(t, a) for t, a in pool if used + pause + len(a) <= total]
        if not fits:
            break
        text, audio = pick.choice(fits)
        parts += [np.zeros(pause, np.float32), audio]
        texts.append(text)
        used += pause + len(audio)
    if not texts:  # shorter than every phrase (not reached at 2 s and above): cut the shortest
        text, audio = min(pool, key=lambda x: len(x[1]))
        parts, texts, used = [audio[:total]], [text], min(total, len(audio))
    parts.append(np.zeros(total - used, np.float32))
    samples = np.concatenate(parts)
    samples += rng.normal(0.0, QUIET_STD, len(samples)).astype(np.float32)
    return samples, " ".join(texts)


def wav_bytes(samples: np.ndarray) -> bytes:
    import soundfile as sf

    buf = io.BytesIO()
    sf.write(buf, np.clip(samples, -1.0, 1.0), SAMPLE_RATE, subtype="PCM_16", format="WAV")
    return buf.getvalue()


def save(workload: Workload, out_dir: str | Path) -> Path:
    """Write the clips as WAV files plus a manifest.jsonl (to rerun the same set, e.g. on vLLM)."""
    out = Path(out_dir)
    (out / "audio").mkdir(parents=True, exist_ok=True)
    lines = []
    for c in workload.clips:
        path = out / "audio" / c.name
        path.write_bytes(c.payload())
        lines.append({"id": c.id, "audio": f"audio/{c.name}", "text": c.text or "", "duration": c.duration})
    manifest = out / "manifest.jsonl"
    manifest.write_text("".join(json.dumps(x, ensure_ascii=False) + "\n" for x in lines), encoding="utf-8")
    return manifest


def cycle(clips: list[Clip], n: int) -> Iterable[tuple[int, Clip]]:
    """n (request number, clip) pairs going round the clips in order."""
    return ((i, clips[i % len(clips)]) for i in range(n))
