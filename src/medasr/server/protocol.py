"""The server's wire protocol as typed models (as vLLM's protocol.py): request bodies, response
bodies and errors of the OpenAI-compatible HTTP API. Requests are validated through these
models; a validation error becomes OpenAI's 400 error naming the field."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

TEMPERATURE_MAX = 2.0


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore")


# ---------------------------------------------------------------- errors


class ErrorBody(_Model):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class ErrorResponse(_Model):
    error: ErrorBody


def first_error(err: ValidationError) -> tuple[str, str | None]:
    """(message, param) of the first problem, for OpenAI's error shape."""
    problem = err.errors()[0]
    loc = [str(x) for x in problem.get("loc", ()) if not isinstance(x, int)]
    param = ".".join(loc) or None
    message = problem.get("msg", "invalid request")
    return (f"{param}: {message}" if param else message), param


# ---------------------------------------------------------------- transcriptions


class TranscriptionRequest(_Model):
    """The form fields of `POST /v1/audio/transcriptions` (the file is read separately)."""

    model: str = ""
    language: str | None = None
    prompt: str | None = None
    response_format: Literal["json", "text", "srt", "vtt", "verbose_json"] = "json"
    temperature: float = Field(0.0, ge=0.0, le=TEMPERATURE_MAX)
    seed: int | None = None  # vLLM's extra field: sampling seed when temperature > 0
    timestamp_granularities: list[Literal["segment", "word"]] = Field(default_factory=lambda: ["segment"])
    include: list[Literal["logprobs"]] = Field(default_factory=list)
    stream: bool = False
    max_completion_tokens: int | None = Field(None, ge=1)  # vLLM's: generated tokens in all, at most

    @field_validator("stream", mode="before")
    @classmethod
    def _flag(cls, v: Any) -> Any:
        if isinstance(v, str):
            text = v.strip().lower()
            if text in ("true", "1", "yes", "on"):
                return True
            if text in ("false", "0", "no", "off", ""):
                return False
        return v

    @field_validator("temperature", mode="before")
    @classmethod
    def _empty_is_default(cls, v: Any) -> Any:
        return 0.0 if v in ("", None) else v

    @field_validator("max_completion_tokens", mode="before")
    @classmethod
    def _empty_is_none(cls, v: Any) -> Any:
        return None if v == "" else v


class TokenLogprob(_Model):
    token: str
    logprob: float
    bytes: list[int]


class DurationUsage(_Model):
    type: Literal["duration"] = "duration"
    seconds: float


class TokenUsage(_Model):
    type: Literal["tokens"] = "tokens"
    input_tokens: int
    output_tokens: int
    total_tokens: int


class TranscriptionResponse(_Model):
    """`response_format=json`."""

    text: str
    usage: DurationUsage
    logprobs: list[TokenLogprob] | None = None


class TranscriptionWord(_Model):
    """OpenAI's word ({word, start, end}); medasr adds the word's probability (mean probability of
    the tokens that spell it) and `low_confidence` (below the server's --low-confidence) when known."""

    word: str
    start: float
    end: float
    probability: float | None = None
    low_confidence: bool | None = None


class TranscriptionSegment(_Model):
    id: int
    seek: int
    start: float
    end: float
    text: str
    tokens: list[int]
    temperature: float
    compression_ratio: float
    avg_logprob: float | None = None
    no_speech_prob: float | None = None


class VerboseTranscription(_Model):
    """`response_format=verbose_json`: segments when timestamp_granularities has "segment" (the
    default), words when it has "word" (as OpenAI: ["word"] alone gives no segments). medasr's
    `warnings` say why words are missing (the text is still the transcript)."""

    task: Literal["transcribe"] = "transcribe"
    language: str
    duration: float
    text: str
    segments: list[TranscriptionSegment] | None = None
    words: list[TranscriptionWord] | None = None
    warnings: list[str] | None = None
    usage: DurationUsage
    logprobs: list[TokenLogprob] | None = None


class TextDelta(_Model):
    type: Literal["transcript.text.delta"] = "transcript.text.delta"
    delta: str
    logprobs: list[TokenLogprob] | None = None


class TextDone(_Model):
    type: Literal["transcript.text.done"] = "transcript.text.done"
    text: str
    usage: TokenUsage
    logprobs: list[TokenLogprob] | None = None


# ---------------------------------------------------------------- chat completions


class ChatMessage(_Model):
    role: str
    content: str | list[dict[str, Any]] | None = None


class ChatCompletionRequest(_Model):
    """`POST /v1/chat/completions` with one audio part (vLLM's ASR style)."""

    model: str = ""
    messages: list[ChatMessage] = Field(min_length=1)
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    temperature: float | None = Field(None, ge=0.0, le=TEMPERATURE_MAX)
    seed: int | None = None
    stream: bool = False
    language: str | None = None  # vLLM's extra field

    @property
    def token_limit(self) -> int | None:
        limits = [x for x in (self.max_tokens, self.max_completion_tokens) if x is not None]
        return min(limits) if limits else None


class ChatUsage(_Model):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class AssistantMessage(_Model):
    role: Literal["assistant"] = "assistant"
    content: str


class ChatChoice(_Model):
    index: int = 0
    message: AssistantMessage
    finish_reason: Literal["stop", "length"]


class ChatCompletion(_Model):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[ChatChoice]
    usage: ChatUsage


class ChunkDelta(_Model):
    role: Literal["assistant"] | None = None
    content: str | None = None


class ChunkChoice(_Model):
    index: int = 0
    delta: ChunkDelta
    finish_reason: Literal["stop", "length"] | None = None


class ChatCompletionChunk(_Model):
    id: str
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    created: int
    model: str
    choices: list[ChunkChoice]


# ---------------------------------------------------------------- models


class ModelCard(_Model):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "medasr"


class ModelList(_Model):
    object: Literal["list"] = "list"
    data: list[ModelCard]
