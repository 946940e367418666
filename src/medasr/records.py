"""Typed records at the seams between modules."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

from medasr.defaults import LOW_CONFIDENCE


@dataclass
class TokenLogprob:
    """One generated token of the transcript and the model's log-probability of it (OpenAI's shape)."""

    token: str
    logprob: float
    bytes: list[int]


@dataclass
class Segment:
    """A stretch of a transcript on the original recording's timeline (seconds), with the
    model's scores for it when it came from the model (None: not computed)."""

    start: float
    end: float
    text: str
    tokens: list[int] = field(default_factory=list)  # the text's token ids
    avg_logprob: float | None = None  # mean log-probability of the generated tokens (end of turn included)
    no_speech_prob: float | None = None  # the model's probability of answering `language None` here
    temperature: float = 0.0  # what it was decoded at (0: greedy)

    @property
    def confidence(self) -> float | None:
        """exp(avg_logprob): the geometric-mean probability of its tokens, in (0, 1]."""
        return None if self.avg_logprob is None else math.exp(self.avg_logprob)


@dataclass
class Word:
    """One word on the recording's timeline (seconds), as written in the transcript (punctuation
    kept). probability: the mean probability of the ASR tokens that spell it
    (`medasr.pipeline.words`); None when not computed or when no token maps onto it."""

    word: str
    start: float
    end: float
    probability: float | None = None

    def to_dict(self, low_confidence: float = LOW_CONFIDENCE) -> dict:
        """{word, start, end} plus `probability` and `low_confidence` (probability below the
        threshold) when it has a probability; neither when it has none."""
        d = {"word": self.word, "start": self.start, "end": self.end}
        if self.probability is not None:
            d["probability"] = self.probability
            d["low_confidence"] = self.probability < low_confidence
        return d


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
    words: list[Word] | None = None  # word times when asked for (timestamps="word"); [] when alignment failed
    logprobs: list[TokenLogprob] = field(default_factory=list)  # every transcript token, in order
    error_code: str | None = None  # machine-readable kind of `error` (e.g. "audio_too_short")
    confidence: float | None = None  # exp(mean log-probability of every generated token); None: nothing generated
    warnings: list[str] = field(default_factory=list)  # e.g. why the words are missing (the text is still good)

    def to_dict(self, low_confidence: float = LOW_CONFIDENCE) -> dict:
        """The JSON record; `words` only when they were asked for, each marked `low_confidence`
        when its probability is below `low_confidence`; `warnings` only when there are some."""
        d = asdict(self)
        for key in ("error", "error_code", "confidence"):
            if d[key] is None:
                d.pop(key)
        if self.words is None:
            d.pop("words")
        else:
            d["words"] = [w.to_dict(low_confidence) for w in self.words]
        if not self.warnings:
            d.pop("warnings")
        d.pop("logprobs")  # large; written only where asked for (OpenAI's include[]=logprobs)
        for s in d["segments"]:
            s.pop("tokens")
            for key in ("avg_logprob", "no_speech_prob"):
                if s[key] is None:  # not computed (not from the model): absent, never a placeholder
                    s.pop(key)
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
