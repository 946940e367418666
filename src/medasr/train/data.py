"""Training data: dataset readers -> clean targets -> a torch Dataset of encoded examples.

Targets are references in written form (`medasr.text.normalize.written_form`, the seed's normalisation);
clips over `max_duration_s` (30 s: the seed filters them out) and empty texts are dropped and
counted. Several datasets are concatenated, each optionally weighted (repeated or subsampled);
the Trainer's sampler reshuffles the mix every epoch.
"""

from __future__ import annotations

import io
import logging
import math
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from medasr.errors import DataError
from medasr.records import Utterance

log = logging.getLogger(__name__)


@dataclass
class DataSource:
    """One dataset of a recipe: any spec `medasr.data.read_dataset` accepts, its split, its weight."""

    path: str
    split: str = "train"
    weight: float = 1.0


@dataclass
class DataReport:
    """What reading the data kept and dropped, per dataset."""

    kept: dict[str, int] = field(default_factory=dict)
    dropped_long: dict[str, int] = field(default_factory=dict)
    dropped_empty: dict[str, int] = field(default_factory=dict)
    hours: dict[str, float] = field(default_factory=dict)

    def summary(self) -> str:
        parts = []
        for name, n in self.kept.items():
            text = f"{name}: {n} clips ({self.hours.get(name, 0.0):.2f} h)"
            if name in self.dropped_long:  # a dataset read from disk, not the made-up compounds
                text += (f" kept, {self.dropped_long[name]} over the duration limit and "
                         f"{self.dropped_empty.get(name, 0)} with empty text dropped")
            parts.append(text)
        return "; ".join(parts)


def parse_sources(entries: Iterable, default_split: str) -> list[DataSource]:
    """Recipe entries (a spec string, or {path, split, weight}) -> DataSources."""
    out = []
    for entry in entries or []:
        if isinstance(entry, str):
            out.append(DataSource(entry, default_split))
        elif isinstance(entry, dict):
            unknown = set(entry) - {"path", "split", "weight"}
            if unknown or "path" not in entry:
                raise DataError(
                    f"dataset entry {entry!r}: expected a path string or {{path, split, weight}}"
                    + (f" (unknown keys: {', '.join(sorted(unknown))})" if unknown else "")
                )
            weight = float(entry.get("weight", 1.0))
            if weight <= 0:
                raise DataError(f"dataset entry {entry!r}: weight must be positive")
            out.append(DataSource(str(entry["path"]), str(entry.get("split", default_split)), weight))
        else:
            raise DataError(f"dataset entry {entry!r}: expected a path string or a mapping")
    return out


def clip_duration(audio: str | bytes) -> float:
    """Seconds of a clip, read from its header when possible (cheap), else by decoding it."""
    import soundfile as sf

    try:
        info = sf.info(io.BytesIO(audio) if isinstance(audio, (bytes, bytearray)) else str(audio))
        return info.frames / info.samplerate
    except Exception:  # containers soundfile cannot read (mp3 in old libsndfile, m4a, webm)
        from medasr.audio.decode import load_audio

        return load_audio(audio).duration


NO_SPEECH = "None"  # the language of clips without speech: the model answers `language None<asr_text>`


def is_nonspeech(utt: Utterance) -> bool:
    return (utt.language or "").strip().lower() == NO_SPEECH.lower()


def targets(utterances: Iterable[Utterance], name: str, report: DataReport, max_duration_s: float) -> list[Utterance]:
    """Written-form targets; over-long clips and empty texts are dropped and counted under `name`."""
    from medasr.text.normalize import written_form

    kept: list[Utterance] = []
    long = empty = 0
    seconds = 0.0
    for utt in utterances:
        text = written_form(utt.text)
        # Empty text is a target only for clips marked as holding no speech (language "None").
        if not text and not is_nonspeech(utt):
            empty += 1
            continue
        duration = utt.duration if utt.duration is not None else clip_duration(utt.audio)
        if duration > max_duration_s:
            long += 1
            continue
        seconds += duration
        kept.append(Utterance(utt.id, utt.audio, text, duration, utt.dataset or name, utt.prompt, utt.language))
    report.kept[name] = report.kept.get(name, 0) + len(kept)
    report.dropped_long[name] = report.dropped_long.get(name, 0) + long
    report.dropped_empty[name] = report.dropped_empty.get(name, 0) + empty
    report.hours[name] = report.hours.get(name, 0.0) + seconds / 3600
    return kept


def read_sources(sources: Sequence[DataSource], max_duration_s: float, report: DataReport) -> list[list[Utterance]]:
    """Clean targets of each source, in order."""
    from medasr.data import read_dataset

    out = []
    for src in sources:
        name = f"{src.path}[{src.split}]"
        utts = targets(read_dataset(src.path, src.split), name, report, max_duration_s)
        if not utts:
            raise DataError(f"{name}: no usable clips (all empty or over {max_duration_s:g} s)")
        out.append(utts)
    return out


def mix(parts: Sequence[Sequence[Utterance]], weights: Sequence[float], seed: int = 0) -> list[Utterance]:
    """Concatenate datasets; weight w repeats a dataset floor(w) times plus a seeded random
    fraction w - floor(w) of it (0.5: half of its clips, 2: every clip twice)."""
    rng = random.Random(seed)
    out: list[Utterance] = []
    for utts, w in zip(parts, weights):
        whole = math.floor(w)
        out.extend(list(utts) * whole)
        extra = round((w - whole) * len(utts))
        if extra:
            out.extend(rng.sample(list(utts), extra))
    return out


@dataclass
class Compound:
    """Several utterances spoken one after another with pauses: one longer training clip.

    Clips of single sentences teach a model nothing about the multi-sentence pieces of up to 30 s
    that long recordings are cut into; compounds do (`concat_fraction` in the recipe). Clips
    without speech are never parts.
    """

    parts: list[Utterance]
    pauses: list[float]  # seconds of silence after each part but the last

    @property
    def id(self) -> str:
        return "+".join(u.id for u in self.parts)

    @property
    def text(self) -> str:
        return " ".join(u.text for u in self.parts)

    @property
    def duration(self) -> float:
        return sum(u.duration or 0.0 for u in self.parts) + sum(self.pauses)


def compounds(utterances: Sequence[Utterance], n: int, max_s: float, seed: int = 0) -> list[Compound]:
    """`n` compounds of 2+ random utterances, each filled up to a random length in [max_s/3, max_s]."""
    rng = random.Random(seed)
    pool = [u for u in utterances if (u.duration or 0) > 0 and u.duration < max_s / 2 and not is_nonspeech(u)]
    if len(pool) < 2:
        return []
    out = []
    for _ in range(n):
        target = rng.uniform(max_s / 3, max_s)
        parts = [rng.choice(pool)]
        pauses: list[float] = []
        total = parts[0].duration
        while True:
            nxt, pause = rng.choice(pool), rng.uniform(0.3, 2.0)
            if total + pause + nxt.duration > (target if len(parts) > 1 else max_s):
                break
            parts.append(nxt)
            pauses.append(pause)
            total += pause + nxt.duration
        if len(parts) > 1:
            out.append(Compound(parts, pauses))
    return out


def _samples(utt: Utterance):
    from medasr.audio.decode import load_audio

    audio = utt.audio
    if isinstance(audio, str) and not audio.startswith(("http://", "https://", "data:")):
        audio = Path(audio)
    return load_audio(audio, name=utt.id).samples


@dataclass(frozen=True)
class Augment:
    """Training-time changes that make clean clips look like the pieces long recordings are cut
    into: a speech-detected piece starts and ends with some silence, and real rooms are not
    digitally silent (a model that only heard exact zeros between words loses its place in faint
    noise). Each clip's changes are drawn from (seed, index): the same in every epoch and on resume.
    """

    edge_silence_s: float = 0.0  # up to this much silence before and, independently, after a clip
    noise_dbfs: tuple[float, float] | None = None  # white, pink or brown noise at an RMS level drawn from this range
    noise_fraction: float = 0.0  # share of the clips that get the noise
    max_s: float = 30.0  # silence is never added beyond this total length
    seed: int = 0

    @property
    def active(self) -> bool:
        return self.edge_silence_s > 0 or (self.noise_dbfs is not None and self.noise_fraction > 0)

    def __call__(self, samples, index: int):
        import numpy as np

        from medasr.audio.decode import SAMPLE_RATE

        rng = np.random.default_rng((self.seed, index))
        room = max(0.0, self.max_s - len(samples) / SAMPLE_RATE)
        before, after = rng.uniform(0, self.edge_silence_s, 2)
        if before + after > room:  # shrink both margins so the clip stays within max_s
            before, after = before * room / (before + after), after * room / (before + after)
        samples = np.concatenate([
            np.zeros(int(before * SAMPLE_RATE), np.float32), samples, np.zeros(int(after * SAMPLE_RATE), np.float32)
        ])
        if self.noise_dbfs is not None and rng.random() < self.noise_fraction:
            rms = 10 ** (rng.uniform(*self.noise_dbfs) / 20)
            samples = np.clip(samples + rms * _noise(rng, len(samples)), -1, 1).astype(np.float32)
        return samples


def _noise(rng, n: int):
    """Unit-RMS noise of a random colour: white (half the time), pink or brown (rooms and
    equipment hum low, not flat)."""
    import numpy as np

    from medasr.audio.decode import SAMPLE_RATE

    colour = rng.choice(3, p=(0.5, 0.25, 0.25))
    x = rng.normal(0, 1, n)
    if colour:
        spectrum = np.fft.rfft(x) * np.maximum(np.fft.rfftfreq(n, 1 / SAMPLE_RATE), 20.0) ** (-0.5 * colour)
        x = np.fft.irfft(spectrum, n)
    return (x / (np.sqrt(np.mean(x**2)) or 1.0)).astype(np.float32)


class SpeechDataset:
    """Utterances (or Compounds) -> encoded Examples; audio is decoded (and augmented, for
    training) and features computed when an item is read."""

    def __init__(self, utterances: Sequence[Utterance | Compound], processor, augment: Augment | None = None):
        self.utterances = list(utterances)
        self.processor = processor
        self.augment = augment if augment is not None and augment.active else None

    def __len__(self) -> int:
        return len(self.utterances)

    def __getitem__(self, i: int):
        import numpy as np

        from medasr.audio.decode import SAMPLE_RATE
        from medasr.train.collator import encode

        item = self.utterances[i]
        if isinstance(item, Compound):
            pieces = []
            for k, utt in enumerate(item.parts):
                pieces.append(_samples(utt))
                if k < len(item.pauses):
                    pieces.append(np.zeros(int(item.pauses[k] * SAMPLE_RATE), np.float32))
            samples, first = np.concatenate(pieces), item.parts[0]
        else:
            samples, first = _samples(item), item
        if self.augment:
            samples = self.augment(samples, i)
        if is_nonspeech(first):
            # Half answer `language None<asr_text>` (language detection on), half are asked with the
            # language forced, as `medasr transcribe` does by default, and answer nothing at all.
            forced = "English" if i % 2 else None
            return encode(self.processor, samples, "", first.prompt or None, NO_SPEECH, forced_language=forced)
        return encode(self.processor, samples, item.text, first.prompt or None, first.language or "English")
