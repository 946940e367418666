"""Typed records at the seams between modules."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field


@dataclass
class Segment:
    """A stretch of a transcript on the original recording's timeline (seconds)."""

    start: float
    end: float
    text: str


@dataclass
class Word:
    """One word on the recording's timeline (seconds); probability None when not computed."""

    word: str
    start: float
    end: float
    probability: float | None = None


@dataclass
class Transcript:
    """What transcribing one input gives."""

    source: str
    text: str
    language: str
    duration: float
    segments: list[Segment] = field(default_factory=list)
    error: str | None = None  # set instead of raising when a batch keeps going past bad inputs
    hit_token_cap: bool = False  # decoding stopped at max_new_tokens: the text may be cut or looping
    words: list[Word] = field(default_factory=list)  # word times, when a forced aligner ran

    def to_dict(self) -> dict:
        d = asdict(self)
        if d["error"] is None:
            d.pop("error")
        return d


@dataclass
class Utterance:
    """One labelled recording, the shape every dataset reader produces (lhotse-style)."""

    id: str
    audio: str | bytes  # a path or URL, or the encoded audio bytes (parquet datasets)
    text: str
    duration: float | None = None
    dataset: str = ""
    prompt: str = ""  # optional context for the system turn (official recipe's "prompt")
    language: str = "English"
