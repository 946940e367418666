"""The server's settings, one typed record shared by the CLI, the app and the tests."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import PurePath

from medasr.defaults import DEFAULT_VAD, LOW_CONFIDENCE, MAX_CONTEXT_TOKENS, MAX_PIECE_S, VAD_METHODS, default_aligner


@dataclass
class ServerConfig:
    model: str
    served_model_name: str | list[str] | None = None  # ids served and listed (default: --model and its short name)
    device: str = "auto"
    dtype: str = "auto"
    quantize: str | None = None  # "int8": CPU int8 linear layers (medasr.model.quantize)
    api_key: str | None = None  # guards /v1/*; /health, /ready, /metrics and the page stay open
    language: str = "English"  # default when a request names none ("auto": the model detects it)
    max_batch_size: int = 16
    compile: bool = False  # CUDA: the decode step compiled into a CUDA graph
    live_rows: int = 2  # of max_batch_size, rows only live streams' decodes may take (at most max_batch_size - 1)
    max_wait_ms: float = 10.0  # how long the first piece of a batch waits for company
    max_queue: int = 256  # requests admitted and not yet answered; beyond that: 429
    request_timeout_s: float = 600.0  # per-request deadline from arrival; beyond that: 504
    read_timeout_s: float = 30.0  # to send the request headers, then the body; beyond that: 408 (server.timeouts)
    max_upload_mb: float = 25.0  # OpenAI's limit
    max_audio_s: float = 1200.0  # qwen-asr's own per-call maximum
    max_piece_s: float = MAX_PIECE_S
    vad: str = DEFAULT_VAD  # speech detection on every upload: silero, energy or none (off)
    max_new_tokens: int | None = None  # None: grows with each batch's longest piece
    allow_private_urls: bool = False
    url_timeout_s: float = 30.0
    realtime_max_sessions: int = 16  # live WebSocket sessions at once; beyond that: refused
    realtime_max_session_s: float = 3600.0  # a live session ends after this long (OpenAI: 60 min)
    realtime_idle_timeout_s: float = 120.0  # ... or after this long without a client event
    realtime_send_timeout_s: float = 10.0  # a client that takes no event for this long is not reading: closed
    realtime_send_queue: int = 256  # events waiting for a client; one more and it is closed as not reading
    max_context_tokens: int = MAX_CONTEXT_TOKENS  # longest prompt / context a request or session may carry
    aligner: str | None = None  # forced aligner for word timestamps, loaded at start-up; None: default_aligner(model) on first use
    low_confidence: float = LOW_CONFIDENCE  # words below this probability are marked `low_confidence`

    @property
    def aligner_name(self) -> str:
        return self.aligner or default_aligner(self.model)

    @property
    def model_names(self) -> list[str]:
        """The names this server answers to (vLLM's --served-model-name), the first one listed first."""
        if self.served_model_name:
            names = [self.served_model_name] if isinstance(self.served_model_name, str) else list(self.served_model_name)
        else:
            names = [self.model, PurePath(self.model.rstrip("/")).name or self.model]
        return list(dict.fromkeys(n for n in names if n))

    @property
    def model_id(self) -> str:
        return self.model_names[0]

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 1024 * 1024)

    @property
    def ws_max_message_bytes(self) -> int:
        """WebSocket frames the server reads at all: twice a maximal append in base64, so an
        append a little over the limit gets an `error` event, and only absurd ones a close."""
        return 2 * (self.max_upload_bytes * 4 // 3) + 65536

    def check(self) -> None:
        """Raise ValueError naming the first setting out of range."""
        if self.max_batch_size < 1:
            raise ValueError("--max-batch-size must be at least 1")
        if self.max_wait_ms < 0:
            raise ValueError("--max-wait-ms must not be negative")
        if self.max_queue < 1:
            raise ValueError("--max-queue must be at least 1")
        if self.max_upload_mb <= 0 or self.max_audio_s <= 0 or self.request_timeout_s <= 0 or self.read_timeout_s <= 0:
            raise ValueError("--max-upload-mb, --max-audio-s, --request-timeout-s and --read-timeout-s must be positive")
        if self.vad not in VAD_METHODS:
            raise ValueError(f"--vad must be one of {', '.join(VAD_METHODS)}")
        if self.live_rows < 0:
            raise ValueError("--live-rows must not be negative")
        if self.realtime_max_sessions < 0:
            raise ValueError("--realtime-max-sessions must not be negative")
        if self.realtime_max_session_s <= 0 or self.realtime_idle_timeout_s <= 0 or self.realtime_send_timeout_s <= 0:
            raise ValueError("--realtime-max-session-s, --realtime-idle-timeout-s and --realtime-send-timeout-s must be positive")
        if self.realtime_send_queue < 1:
            raise ValueError("--realtime-send-queue must be at least 1")
        if self.max_context_tokens < 0:
            raise ValueError("--max-context-tokens must not be negative")
        if not 0.0 <= self.low_confidence <= 1.0:
            raise ValueError("--low-confidence must be between 0 and 1")
        if self.max_new_tokens is not None and self.max_new_tokens < 1:
            raise ValueError("--max-new-tokens must be at least 1")
        from medasr.model.prompt import normalize_language

        normalize_language(self.language)  # raises ValueError naming the supported languages
