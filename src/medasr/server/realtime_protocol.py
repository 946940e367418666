"""OpenAI's Realtime transcription protocol as typed models: the client events the official
`openai` client sends (GA `session.update`, the older beta `transcription_session.update`,
`input_audio_buffer.*`) and every server event this server sends. Client events are validated
through these models; a validation error becomes an `error` event naming the field, and the
connection stays open.

Every client event is checked before it is parsed (`parse_client_event`): its nesting depth and
its count of JSON values are bounded by a scan of its structure, so no event can exhaust the
parser's recursion or build millions of objects; then any JSON value, any Unicode (a lone
surrogate anywhere) and any field of the wrong kind becomes a `BadEvent` the server answers with
an `error` event.

Server events are built from these models and written with `wire()`: None means "absent"
(optional extras such as `logprobs` are left out), except in the fields a model lists in
`_nulls`, where null carries meaning (`previous_item_id` of a first item, `turn_detection`
turned off) and is written, as OpenAI does.
"""

from __future__ import annotations

import json
import re
import uuid
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from medasr.server.protocol import first_error

LOGPROBS = "item.input_audio_transcription.logprobs"  # the only `include` value


def event_id() -> str:
    return "event_" + uuid.uuid4().hex[:24]


class _In(BaseModel):
    """Client-side shapes: unknown fields are ignored (clients send options this server has no use for)."""

    model_config = ConfigDict(extra="ignore")


# ---------------------------------------------------------------- client: session settings


class AudioFormat(_In):
    type: str = "audio/pcm"  # audio/pcm (16-bit little-endian mono); audio/pcmu and audio/pcma are refused
    rate: int | None = None  # 24000 as OpenAI; 16000 and 48000 too


class Transcription(_In):
    model: str | None = None
    language: str | None = None
    prompt: str | None = None


class TurnDetection(_In):
    type: str = "server_vad"  # server_vad; semantic_vad is refused
    threshold: float | None = Field(None, gt=0.0, lt=1.0)
    prefix_padding_ms: int | None = Field(None, ge=0, le=10_000)
    silence_duration_ms: int | None = Field(None, ge=0, le=10_000)


class AudioInput(_In):
    """`session.audio.input`. A field left out keeps its value; `turn_detection: null` turns it off."""

    format: AudioFormat | None = None
    transcription: Transcription | None = None
    turn_detection: TurnDetection | None = None
    noise_reduction: dict[str, Any] | None = None


class AudioConfig(_In):
    input: AudioInput | None = None


class SessionConfig(_In):
    """The GA session object of `session.update`."""

    type: str = "transcription"
    audio: AudioConfig | None = None
    include: list[str] | None = None


class BetaSessionConfig(_In):
    """The session object of the older beta `transcription_session.update`."""

    input_audio_format: str | None = None  # pcm16 (24 kHz); g711_ulaw and g711_alaw are refused
    input_audio_transcription: Transcription | None = None
    turn_detection: TurnDetection | None = None
    include: list[str] | None = None


# ---------------------------------------------------------------- client events


class _ClientEvent(_In):
    event_id: str | None = None


class SessionUpdate(_ClientEvent):
    type: Literal["session.update"]
    session: SessionConfig


class TranscriptionSessionUpdate(_ClientEvent):
    type: Literal["transcription_session.update"]
    session: BetaSessionConfig


class InputAudioBufferAppend(_ClientEvent):
    type: Literal["input_audio_buffer.append"]
    audio: str  # base64 of the PCM bytes


class InputAudioBufferCommit(_ClientEvent):
    type: Literal["input_audio_buffer.commit"]


class InputAudioBufferClear(_ClientEvent):
    type: Literal["input_audio_buffer.clear"]


CLIENT_EVENTS: dict[str, type[_ClientEvent]] = {
    "session.update": SessionUpdate,
    "transcription_session.update": TranscriptionSessionUpdate,
    "input_audio_buffer.append": InputAudioBufferAppend,
    "input_audio_buffer.commit": InputAudioBufferCommit,
    "input_audio_buffer.clear": InputAudioBufferClear,
}


# ---------------------------------------------------------------- client: parsing and checking

MAX_EVENT_DEPTH = 16  # the deepest event this protocol has is 5 levels
MAX_EVENT_VALUES = 1_000  # JSON strings, brackets, commas and colons: an append has ~10, a session.update ~60
# A JSON string (escapes skipped whole) or a structural character, scanned in C: an append's
# megabytes of base64 are one match.
_JSON_TOKEN = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"|[\[\]{},:]')


class BadEvent(Exception):
    """A client event that cannot be used: answered with an `error` event, the session goes on."""

    def __init__(self, message: str, code: str, param: str | None = None, client_event_id: str | None = None):
        super().__init__(message)
        self.message, self.code, self.param, self.client_event_id = message, code, param, client_event_id


def parse_client_event(text: str) -> _ClientEvent:
    """The typed client event in `text`, or BadEvent saying what is wrong with it."""
    depth = 0
    for values, m in enumerate(_JSON_TOKEN.finditer(text), 1):  # bounded before json.loads sees it
        c = m.group()
        if c in "[{":
            depth += 1
        elif c in "]}":
            depth -= 1
        if depth > MAX_EVENT_DEPTH or values > MAX_EVENT_VALUES:
            raise BadEvent(f"an event may nest at most {MAX_EVENT_DEPTH} levels deep and hold at most "
                           f"{MAX_EVENT_VALUES:,} JSON values", "invalid_json")  # fmt: skip
    try:
        data = json.loads(text)
    except (ValueError, RecursionError) as err:
        raise BadEvent(f"malformed JSON: {err}", "invalid_json") from None
    if not isinstance(data, dict):
        raise BadEvent(f"an event must be a JSON object, not {type(data).__name__}", "invalid_json")
    where = _lone_surrogate(data, "")
    if where is not None:
        raise BadEvent(f"{where or 'the event'}: text is not valid Unicode (a lone surrogate)", "invalid_value", where or None)
    client_id = data.get("event_id") if isinstance(data.get("event_id"), str) else None
    name = data.get("type")
    if not isinstance(name, str):
        raise BadEvent(f"type must be a string naming the event, one of {', '.join(CLIENT_EVENTS)}", "invalid_value",
                       "type", client_id)  # fmt: skip
    kind = CLIENT_EVENTS.get(name)
    if kind is None:
        raise BadEvent(f"unknown event type {name[:64]!r}: this server accepts {', '.join(CLIENT_EVENTS)}", "unknown_event_type",
                       "type", client_id)  # fmt: skip
    try:
        return kind.model_validate(data)
    except ValidationError as err:
        message, param = first_error(err)
        raise BadEvent(message, "invalid_value", param, client_id) from None


def _lone_surrogate(value: Any, where: str) -> str | None:
    """The path of the first string (or key) holding a lone surrogate, which UTF-8 cannot carry."""
    if isinstance(value, str):
        if not value.isascii():  # ASCII (an append's base64) needs no check
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                return where
        return None
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, item in items:
        path = f"{where}.{key}" if where else str(key)
        if isinstance(key, str) and _lone_surrogate(key, path) is not None:
            return path
        found = _lone_surrogate(item, path)
        if found is not None:
            return found
    return None


# ---------------------------------------------------------------- server: the session as it is


class _Out(BaseModel):
    model_config = ConfigDict(extra="forbid")
    _nulls: ClassVar[frozenset[str]] = frozenset()  # fields written even when None

    def wire(self) -> dict:
        out = {}
        for name in type(self).model_fields:
            value = getattr(self, name)
            if value is not None or name in self._nulls:
                out[name] = _wire(value)
        return out


def _wire(value):
    if isinstance(value, _Out):
        return value.wire()
    if isinstance(value, list):
        return [_wire(v) for v in value]
    return value


class FormatInfo(_Out):
    type: Literal["audio/pcm"] = "audio/pcm"
    rate: int


class TranscriptionInfo(_Out):
    model: str
    language: str | None = None
    prompt: str | None = None


class TurnDetectionInfo(_Out):
    type: Literal["server_vad"] = "server_vad"
    threshold: float
    prefix_padding_ms: int
    silence_duration_ms: int


class AudioInputInfo(_Out):
    _nulls = frozenset({"turn_detection", "noise_reduction"})
    format: FormatInfo
    transcription: TranscriptionInfo
    turn_detection: TurnDetectionInfo | None
    noise_reduction: None = None  # not offered: always off


class AudioInfo(_Out):
    input: AudioInputInfo


class SessionInfo(_Out):
    """The GA transcription session object of `session.created` / `session.updated`."""

    type: Literal["transcription"] = "transcription"
    object: Literal["realtime.transcription_session"] = "realtime.transcription_session"
    id: str
    expires_at: int  # unix time when the server ends the session (its maximum duration)
    audio: AudioInfo
    include: list[str]


class BetaSessionInfo(_Out):
    """The beta transcription session object of `transcription_session.updated`."""

    object: Literal["realtime.transcription_session"] = "realtime.transcription_session"
    id: str
    expires_at: int
    _nulls = frozenset({"turn_detection"})
    input_audio_format: Literal["pcm16"] = "pcm16"
    input_audio_transcription: TranscriptionInfo
    turn_detection: TurnDetectionInfo | None
    include: list[str]


# ---------------------------------------------------------------- server events


class _ServerEvent(_Out):
    event_id: str = Field(default_factory=event_id)

    def wire(self) -> dict:
        body = super().wire()
        return {"type": body.pop("type"), **body}  # type first, for people reading the stream


class SessionCreated(_ServerEvent):
    type: Literal["session.created"] = "session.created"
    session: SessionInfo


class SessionUpdated(_ServerEvent):
    type: Literal["session.updated"] = "session.updated"
    session: SessionInfo


class TranscriptionSessionUpdated(_ServerEvent):
    type: Literal["transcription_session.updated"] = "transcription_session.updated"
    session: BetaSessionInfo


class SpeechStarted(_ServerEvent):
    type: Literal["input_audio_buffer.speech_started"] = "input_audio_buffer.speech_started"
    audio_start_ms: int
    item_id: str


class SpeechStopped(_ServerEvent):
    type: Literal["input_audio_buffer.speech_stopped"] = "input_audio_buffer.speech_stopped"
    audio_end_ms: int
    item_id: str


class Committed(_ServerEvent):
    _nulls = frozenset({"previous_item_id"})
    type: Literal["input_audio_buffer.committed"] = "input_audio_buffer.committed"
    item_id: str
    previous_item_id: str | None


class Cleared(_ServerEvent):
    type: Literal["input_audio_buffer.cleared"] = "input_audio_buffer.cleared"


class Logprob(_Out):
    token: str
    logprob: float
    bytes: list[int]


class TranscriptionDelta(_ServerEvent):
    type: Literal["conversation.item.input_audio_transcription.delta"] = "conversation.item.input_audio_transcription.delta"
    item_id: str
    content_index: int = 0
    delta: str


class DurationUsage(_Out):
    type: Literal["duration"] = "duration"
    seconds: float


class TranscriptionCompleted(_ServerEvent):
    type: Literal["conversation.item.input_audio_transcription.completed"] = "conversation.item.input_audio_transcription.completed"
    item_id: str
    content_index: int = 0
    transcript: str
    usage: DurationUsage
    logprobs: list[Logprob] | None = None


class ErrorDetail(_Out):
    _nulls = frozenset({"code", "param", "event_id"})
    type: str
    code: str | None = None
    message: str
    param: str | None = None
    event_id: str | None = None  # the client event that caused it


class TranscriptionFailed(_ServerEvent):
    type: Literal["conversation.item.input_audio_transcription.failed"] = "conversation.item.input_audio_transcription.failed"
    item_id: str
    content_index: int = 0
    error: ErrorDetail


class ErrorEvent(_ServerEvent):
    type: Literal["error"] = "error"
    error: ErrorDetail


def error_event(message: str, code: str, param: str | None = None, client_event_id: str | None = None,
                kind: str = "invalid_request_error") -> ErrorEvent:  # fmt: skip
    return ErrorEvent(error=ErrorDetail(type=kind, code=code, message=message, param=param, event_id=client_event_id))
