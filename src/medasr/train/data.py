"""Training data: dataset readers -> clean targets -> a torch Dataset of encoded examples.

Targets are references in written form (`medasr.text.written_form`, the seed's normalisation);
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
            parts.append(
                f"{name}: {n} clips ({self.hours.get(name, 0.0):.2f} h) kept, "
                f"{self.dropped_long.get(name, 0)} over the duration limit and "
                f"{self.dropped_empty.get(name, 0)} with empty text dropped"
            )
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
        from medasr.audio import load_audio

        return load_audio(audio).duration


def targets(utterances: Iterable[Utterance], name: str, report: DataReport, max_duration_s: float) -> list[Utterance]:
    """Written-form targets; over-long clips and empty texts are dropped and counted under `name`."""
    from medasr.text import written_form

    kept: list[Utterance] = []
    long = empty = 0
    seconds = 0.0
    for utt in utterances:
        text = written_form(utt.text)
        if not text:
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


class SpeechDataset:
    """Utterances -> encoded Examples (audio decoded and features computed when an item is read)."""

    def __init__(self, utterances: Sequence[Utterance], processor):
        self.utterances = list(utterances)
        self.processor = processor

    def __len__(self) -> int:
        return len(self.utterances)

    def __getitem__(self, i: int):
        from medasr.audio import load_audio
        from medasr.train.collator import encode

        utt = self.utterances[i]
        audio = utt.audio
        if isinstance(audio, str) and not audio.startswith(("http://", "https://", "data:")):
            audio = Path(audio)
        samples = load_audio(audio, name=utt.id).samples
        return encode(self.processor, samples, utt.text, utt.prompt or None, utt.language or "English")
