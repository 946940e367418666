"""A live session's settings as OpenAI's Realtime clients set them (`session.update`, the beta
`transcription_session.update`), checked field by field and turned into the pipeline's
`LiveOptions`; what the server cannot honour is `Refused`, naming the field."""

from __future__ import annotations

from dataclasses import dataclass, replace

from medasr.audio.pcm import RATES
from medasr.model.prompt import normalize_language
from medasr.pipeline.session import LiveOptions
from medasr.server import realtime_protocol as rt
from medasr.server.config import ServerConfig

DEFAULT_RATE = 24000


class Refused(Exception):
    """A client event this server will not carry out: answered with an `error` event."""

    def __init__(self, message: str, code: str, param: str | None = None):
        super().__init__(message)
        self.message, self.code, self.param = message, code, param


@dataclass
class Settings:
    """A session's settings as the client set them (and as session.created/updated report them)."""

    model: str
    language: str | None  # as the client gave it (None: the server's default)
    prompt: str | None = None
    rate: int = DEFAULT_RATE
    turn_detection: bool = True
    threshold: float = 0.5
    prefix_padding_ms: int = 300
    silence_duration_ms: int = 500
    logprobs: bool = False

    def options(self, config: ServerConfig) -> LiveOptions:
        return LiveOptions(
            turn_detection=self.turn_detection, threshold=self.threshold, prefix_padding_ms=self.prefix_padding_ms,
            silence_duration_ms=self.silence_duration_ms, max_piece_s=config.max_piece_s,
            language=normalize_language(self.language or config.language), context=(self.prompt or "").strip() or None,
            vad=config.vad, max_new_tokens=config.max_new_tokens,
        )  # fmt: skip

    def _turn(self) -> rt.TurnDetectionInfo | None:
        if not self.turn_detection:
            return None
        return rt.TurnDetectionInfo(threshold=self.threshold, prefix_padding_ms=self.prefix_padding_ms,
                                    silence_duration_ms=self.silence_duration_ms)  # fmt: skip

    def _transcription(self, config: ServerConfig) -> rt.TranscriptionInfo:
        return rt.TranscriptionInfo(model=self.model, language=self.language or config.language, prompt=self.prompt)

    def _include(self) -> list[str]:
        return [rt.LOGPROBS] if self.logprobs else []

    def info(self, config: ServerConfig, session_id: str, expires_at: int) -> rt.SessionInfo:
        audio = rt.AudioInputInfo(format=rt.FormatInfo(rate=self.rate), transcription=self._transcription(config),
                                  turn_detection=self._turn())  # fmt: skip
        return rt.SessionInfo(id=session_id, expires_at=expires_at, audio=rt.AudioInfo(input=audio), include=self._include())

    def beta_info(self, config: ServerConfig, session_id: str, expires_at: int) -> rt.BetaSessionInfo:
        return rt.BetaSessionInfo(id=session_id, expires_at=expires_at, input_audio_transcription=self._transcription(config),
                                  turn_detection=self._turn(), include=self._include())  # fmt: skip


# ---------------------------------------------------------------- session.update -> Settings


def updated(settings: Settings, event: rt.SessionUpdate | rt.TranscriptionSessionUpdate, config: ServerConfig) -> Settings:
    """The settings after a session update, or Refused naming the first field this server cannot honour
    (then nothing changes)."""
    new = replace(settings)
    if isinstance(event, rt.SessionUpdate):
        s = event.session
        if s.type != "transcription":
            raise Refused(f"this server runs transcription sessions only: session.type must be 'transcription', not {s.type[:64]!r}",
                          "invalid_value", "session.type")  # fmt: skip
        inp = s.audio.input if s.audio else None
        where = "session.audio.input"
        if inp is not None:
            if inp.format is not None:
                new.rate = _rate(inp.format, f"{where}.format")
            _transcription(new, inp.transcription, f"{where}.transcription", config)
            if "turn_detection" in inp.model_fields_set:
                _turn_detection(new, inp.turn_detection, f"{where}.turn_detection")
        include = s.include
    else:
        s = event.session
        if s.input_audio_format is not None:
            if s.input_audio_format != "pcm16":
                raise Refused(f"unsupported input_audio_format {s.input_audio_format[:64]!r}: send pcm16 (16-bit PCM, 24 kHz, mono)",
                              "unsupported_audio_format", "session.input_audio_format")  # fmt: skip
            new.rate = DEFAULT_RATE
        _transcription(new, s.input_audio_transcription, "session.input_audio_transcription", config)
        if "turn_detection" in s.model_fields_set:
            _turn_detection(new, s.turn_detection, "session.turn_detection")
        include = s.include
    if include is not None:
        unknown = [x for x in include if x != rt.LOGPROBS]
        if unknown:
            raise Refused(f"unsupported include value {unknown[0][:64]!r}: the only one is {rt.LOGPROBS!r}", "invalid_value", "session.include")
        new.logprobs = rt.LOGPROBS in include
    return new


def _rate(fmt: rt.AudioFormat, where: str) -> int:
    if fmt.type != "audio/pcm":
        raise Refused(f"unsupported audio format {fmt.type[:64]!r}: send audio/pcm (16-bit little-endian mono)",
                      "unsupported_audio_format", f"{where}.type")  # fmt: skip
    rate = fmt.rate or DEFAULT_RATE
    if rate not in RATES:
        raise Refused(f"unsupported sample rate {rate} Hz: use one of {', '.join(map(str, RATES))}",
                      "unsupported_audio_format", f"{where}.rate")  # fmt: skip
    return rate


def _transcription(new: Settings, t: rt.Transcription | None, where: str, config: ServerConfig) -> None:
    if t is None:
        return
    if t.model:
        if t.model not in config.model_names:
            raise Refused(f"the model {t.model[:64]!r} does not exist here; this server serves {', '.join(config.model_names)}",
                          "model_not_found", f"{where}.model")  # fmt: skip
        new.model = t.model
    if t.language is not None:
        try:
            normalize_language(t.language or config.language)
        except ValueError as err:
            raise Refused(str(err), "unsupported_language", f"{where}.language") from None
        new.language = t.language or None
    if t.prompt is not None:
        new.prompt = t.prompt or None


def _turn_detection(new: Settings, td: rt.TurnDetection | None, where: str) -> None:
    if td is None:
        new.turn_detection = False
        return
    if td.type != "server_vad":
        raise Refused(f"unsupported turn detection {td.type[:64]!r}: use server_vad, or null to commit yourself",
                      "invalid_value", f"{where}.type")  # fmt: skip
    new.turn_detection = True
    new.threshold = td.threshold if td.threshold is not None else new.threshold
    new.prefix_padding_ms = td.prefix_padding_ms if td.prefix_padding_ms is not None else new.prefix_padding_ms
    new.silence_duration_ms = td.silence_duration_ms if td.silence_duration_ms is not None else new.silence_duration_ms
