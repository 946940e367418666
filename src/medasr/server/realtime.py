"""`GET /v1/realtime?intent=transcription`: OpenAI's Realtime transcription protocol on a WebSocket.

Each connection is one `medasr.pipeline.session.LiveSession` on the server's shared scheduler:
its partial and final decodes share batches with every other stream and upload (live work goes
first and has rows kept for it), and its finals come from the offline path. This module only
speaks the wire protocol (`realtime_protocol`): it checks the API key (the `Authorization`
header, or the `openai-insecure-api-key.KEY` subprotocol browsers use), turns the client's
session settings into `LiveOptions`, base64 PCM into 16 kHz samples (`medasr.audio.pcm`), and
the session's events into OpenAI's.

Faults: a malformed or unknown event, bad base64, an unsupported format or rate, a model this
server does not serve or an append over the upload limit gets an `error` event, and the
connection stays usable. A client that disconnects has its decodes cancelled and its audio
freed at once. A session ends after `realtime_max_session_s`, or `realtime_idle_timeout_s`
without a client event (what is open is committed and its final sent first). Beyond
`realtime_max_sessions` connections a new one is refused with an error and closed, before it
costs anything. A client that sends audio faster than its finals are decoded is read more
slowly (at most MAX_PENDING_FINALS utterances wait for their finals), so one greedy stream
cannot queue unbounded work.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import hmac
import json
import logging
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace

from pydantic import ValidationError
from starlette.websockets import WebSocket, WebSocketDisconnect

from medasr.audio.pcm import RATES, PcmDecoder
from medasr.defaults import MIN_AUDIO_S
from medasr.model.prompt import normalize_language
from medasr.pipeline import events as ev
from medasr.pipeline.session import LiveOptions, LiveSession
from medasr.server import realtime_protocol as rt
from medasr.server.config import ServerConfig
from medasr.server.protocol import first_error

log = logging.getLogger(__name__)

DEFAULT_RATE = 24000
KEY_SUBPROTOCOL = "openai-insecure-api-key."
MAX_PENDING_FINALS = 8  # committed utterances waiting for their finals before the client is read more slowly
FINISH_WAIT_S = 30.0  # at the end of a session, how long the finals of what was open may take
CLOSE_NORMAL, CLOSE_POLICY, CLOSE_TRY_LATER = 1000, 1008, 1013

# Sessions' audio work (speech detection, planning finals) runs on a few threads of its own,
# off the event loop and apart from the request pool, so that no more threads than these run
# torch beside the decoder. Each session awaits one call before the next: its order holds.
_LIVE = ThreadPoolExecutor(4, thread_name_prefix="medasr-live")


async def run_in_threadpool(fn, *args):
    return await asyncio.get_running_loop().run_in_executor(_LIVE, fn, *args)


class Refused(Exception):
    """A client event this server will not carry out: answered with an `error` event."""

    def __init__(self, message: str, code: str, param: str | None = None):
        super().__init__(message)
        self.message, self.code, self.param = message, code, param


class Hub:
    """The server's live sessions: how many are open (bounded by `realtime_max_sessions`)."""

    def __init__(self, config: ServerConfig, gauge=None):
        self.config = config
        self.open = 0
        self._gauge = gauge

    def admit(self) -> bool:
        if self.open >= self.config.realtime_max_sessions:
            return False
        self.open += 1
        self._note()
        return True

    def release(self) -> None:
        self.open -= 1
        self._note()

    def _note(self) -> None:
        if self._gauge is not None:
            self._gauge.set(self.open)


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
            raise Refused(f"this server runs transcription sessions only: session.type must be 'transcription', not {s.type!r}",
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
                raise Refused(f"unsupported input_audio_format {s.input_audio_format!r}: send pcm16 (16-bit PCM, 24 kHz, mono)",
                              "unsupported_audio_format", "session.input_audio_format")  # fmt: skip
            new.rate = DEFAULT_RATE
        _transcription(new, s.input_audio_transcription, "session.input_audio_transcription", config)
        if "turn_detection" in s.model_fields_set:
            _turn_detection(new, s.turn_detection, "session.turn_detection")
        include = s.include
    if include is not None:
        unknown = [x for x in include if x != rt.LOGPROBS]
        if unknown:
            raise Refused(f"unsupported include value {unknown[0]!r}: the only one is {rt.LOGPROBS!r}", "invalid_value", "session.include")
        new.logprobs = rt.LOGPROBS in include
    return new


def _rate(fmt: rt.AudioFormat, where: str) -> int:
    if fmt.type != "audio/pcm":
        raise Refused(f"unsupported audio format {fmt.type!r}: send audio/pcm (16-bit little-endian mono)",
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
            raise Refused(f"the model {t.model!r} does not exist here; this server serves {', '.join(config.model_names)}",
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
        raise Refused(f"unsupported turn detection {td.type!r}: use server_vad, or null to commit yourself",
                      "invalid_value", f"{where}.type")  # fmt: skip
    new.turn_detection = True
    new.threshold = td.threshold if td.threshold is not None else new.threshold
    new.prefix_padding_ms = td.prefix_padding_ms if td.prefix_padding_ms is not None else new.prefix_padding_ms
    new.silence_duration_ms = td.silence_duration_ms if td.silence_duration_ms is not None else new.silence_duration_ms


# ---------------------------------------------------------------- admission


def offered_key(websocket: WebSocket) -> str | None:
    scheme, _, token = websocket.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    for proto in websocket.scope.get("subprotocols") or []:
        if proto.startswith(KEY_SUBPROTOCOL):
            return proto[len(KEY_SUBPROTOCOL) :]
    return None


def key_ok(websocket: WebSocket, key: str | None) -> bool:
    """As the HTTP routes check it: constant-time comparison of the offered key."""
    if not key:
        return True
    offered = offered_key(websocket)
    return offered is not None and hmac.compare_digest(offered.encode(), key.encode())


def subprotocol(websocket: WebSocket) -> str | None:
    """The subprotocol to answer with: a browser that offers any fails the connection unless one
    is chosen; prefer `realtime`, never echo a key when something else was offered."""
    offered = websocket.scope.get("subprotocols") or []
    if "realtime" in offered:
        return "realtime"
    plain = [p for p in offered if not p.startswith(KEY_SUBPROTOCOL)]
    return (plain or offered or [None])[0]


async def endpoint(websocket: WebSocket) -> None:
    app = websocket.app
    config: ServerConfig = app.state.config
    batcher = app.state.batcher
    hub: Hub = app.state.realtime
    await websocket.accept(subprotocol=subprotocol(websocket))
    intent = websocket.query_params.get("intent")
    if not key_ok(websocket, config.api_key):
        refusal = ("invalid or missing API key (send Authorization: Bearer KEY, or the subprotocol openai-insecure-api-key.KEY)",
                   "invalid_api_key", "authentication_error", CLOSE_POLICY)  # fmt: skip
    elif intent not in (None, "transcription"):
        refusal = (f"this server runs transcription sessions only: connect with ?intent=transcription, not {intent!r}",
                   "invalid_intent", "invalid_request_error", CLOSE_POLICY)  # fmt: skip
    elif not batcher.ready:
        refusal = (batcher.load_error or "the model is still loading; try again shortly", "model_not_ready",
                   "server_error", CLOSE_TRY_LATER)  # fmt: skip
    elif not hub.admit():
        refusal = (f"too many live sessions: this server runs at most {config.realtime_max_sessions} at once; try again later",
                   "session_limit_reached", "rate_limit_error", CLOSE_TRY_LATER)  # fmt: skip
    else:
        refusal = None
    if refusal is not None:
        message, code, kind, close_code = refusal
        with contextlib.suppress(Exception):  # the client may be gone already
            await websocket.send_text(json.dumps(rt.error_event(message, code, kind=kind).wire()))
            await websocket.close(close_code, reason=code)
        return
    try:
        await Connection(websocket, config, batcher.scheduler).run()
    finally:
        hub.release()


# ---------------------------------------------------------------- one connection

_CLOSE = object()  # tells the sender to stop


class Connection:
    def __init__(self, websocket: WebSocket, config: ServerConfig, scheduler):
        self.ws = websocket
        self.config = config
        self.id = "sess_" + uuid.uuid4().hex[:24]
        self.deadline = time.monotonic() + config.realtime_max_session_s
        self.expires_at = int(time.time() + config.realtime_max_session_s)
        self.settings = Settings(model=config.model_id, language=None)
        self.pcm = PcmDecoder(self.settings.rate)
        self.loop = asyncio.get_running_loop()
        self.out: asyncio.Queue = asyncio.Queue()
        self.scheduler = scheduler
        self.session: LiveSession | None = None

    # ------------------------------------------------------------------ lifecycle
    async def run(self) -> None:
        # built off the event loop: its speech detector may have to load
        self.session = await run_in_threadpool(LiveSession, self.scheduler, self.settings.options(self.config), self._emit)
        sender = asyncio.create_task(self._send_loop())
        try:
            self.send(rt.SessionCreated(session=self.settings.info(self.config, self.id, self.expires_at)))
            ended = await self._receive_loop()
            if ended is not None:  # the server ends it: finals of what is open first, then say why
                await run_in_threadpool(self.session.finish)
                waited = time.monotonic() + FINISH_WAIT_S
                while self.session.pending_finals and time.monotonic() < waited:
                    await asyncio.sleep(0.05)
                self.send(rt.error_event(*ended, kind="invalid_request_error"))
                self.out.put_nowait(_CLOSE)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.shield(sender), FINISH_WAIT_S)
                with contextlib.suppress(Exception):
                    await self.ws.close(CLOSE_NORMAL, reason=ended[1])
        finally:
            self.session.close()  # cancels its decodes, frees its audio
            sender.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await sender

    async def _receive_loop(self) -> tuple[str, str] | None:
        """Handle client events until the client leaves (None) or the server ends the session
        ((message, code))."""
        idle = self.config.realtime_idle_timeout_s
        while True:
            left = self.deadline - time.monotonic()
            if left <= 0:
                return self._expired()
            try:
                message = await asyncio.wait_for(self.ws.receive(), timeout=min(idle, left))
            except TimeoutError:
                if time.monotonic() >= self.deadline:
                    return self._expired()
                return (f"the session was idle for {idle:g} s and has ended", "idle_timeout")
            except (WebSocketDisconnect, RuntimeError):
                return None
            if message["type"] == "websocket.disconnect":
                return None
            text = message.get("text")
            if text is None:
                try:
                    text = (message.get("bytes") or b"").decode("utf-8")
                except UnicodeDecodeError:
                    self.send(rt.error_event("events are JSON text; this message is not UTF-8", "invalid_json"))
                    continue
            await self._handle(text)

    def _expired(self) -> tuple[str, str]:
        return (f"the session reached its maximum duration of {self.config.realtime_max_session_s:g} s", "session_expired")

    # ------------------------------------------------------------------ client events
    async def _handle(self, text: str) -> None:
        client_id = None
        try:
            try:
                data = json.loads(text)
            except ValueError as err:
                raise Refused(f"malformed JSON: {err}", "invalid_json") from None
            if not isinstance(data, dict):
                raise Refused("an event must be a JSON object", "invalid_json")
            client_id = data.get("event_id") if isinstance(data.get("event_id"), str) else None
            kind = rt.CLIENT_EVENTS.get(data.get("type"))
            if kind is None:
                raise Refused(f"unknown event type {data.get('type')!r}: this server accepts {', '.join(rt.CLIENT_EVENTS)}",
                              "unknown_event_type", "type")  # fmt: skip
            try:
                event = kind.model_validate(data)
            except ValidationError as err:
                message, param = first_error(err)
                raise Refused(message, "invalid_value", param) from None
            await self._dispatch(event)
        except Refused as err:
            self.send(rt.error_event(err.message, err.code, err.param, client_id))

    async def _dispatch(self, event) -> None:
        if isinstance(event, rt.InputAudioBufferAppend):
            await self._append(event.audio)
        elif isinstance(event, rt.InputAudioBufferCommit):
            await self._commit()
        elif isinstance(event, rt.InputAudioBufferClear):
            self.pcm.flush()
            await run_in_threadpool(self.session.clear)
        else:
            await self._update(event)

    async def _append(self, audio: str) -> None:
        limit = self.config.max_upload_bytes
        if len(audio) > -(-limit // 3) * 4:
            raise Refused(f"an append may carry at most {self.config.max_upload_mb:g} MB of audio; send it in smaller chunks",
                          "audio_too_large", "audio")  # fmt: skip
        try:
            data = base64.b64decode(audio, validate=True)
        except (binascii.Error, ValueError):
            raise Refused("audio is not valid base64", "invalid_audio", "audio") from None
        samples = self.pcm(data)
        if len(samples):
            await run_in_threadpool(self.session.append, samples)
        while self.session.pending_finals > MAX_PENDING_FINALS and time.monotonic() < self.deadline:
            await asyncio.sleep(0.05)  # read this client more slowly until its finals catch up

    async def _commit(self) -> None:
        tail = self.pcm.flush()
        if len(tail):
            await run_in_threadpool(self.session.append, tail)
        if self.session.pending_s < MIN_AUDIO_S:
            raise Refused(f"nothing to commit: at least {MIN_AUDIO_S * 1000:.0f} ms of uncommitted speech is needed",
                          "input_audio_buffer_commit_empty")  # fmt: skip
        await run_in_threadpool(self.session.commit)

    async def _update(self, event: rt.SessionUpdate | rt.TranscriptionSessionUpdate) -> None:
        new = updated(self.settings, event, self.config)
        if new.rate != self.pcm.rate:
            tail = self.pcm.flush()
            if len(tail):
                await run_in_threadpool(self.session.append, tail)
            self.pcm = PcmDecoder(new.rate)
        self.settings = new
        await run_in_threadpool(self.session.configure, new.options(self.config))
        if isinstance(event, rt.SessionUpdate):
            self.send(rt.SessionUpdated(session=new.info(self.config, self.id, self.expires_at)))
        else:
            self.send(rt.TranscriptionSessionUpdated(session=new.beta_info(self.config, self.id, self.expires_at)))

    # ------------------------------------------------------------------ server events
    def send(self, event: rt._ServerEvent) -> None:
        self.out.put_nowait(event)

    def _emit(self, event: ev.Event) -> None:
        """The session's events, from the handler's or the scheduler's thread, in order."""
        with contextlib.suppress(RuntimeError):  # the loop is gone (shutting down)
            self.loop.call_soon_threadsafe(self.out.put_nowait, event)

    async def _send_loop(self) -> None:
        while True:
            item = await self.out.get()
            if item is _CLOSE:
                return
            wire = item if isinstance(item, rt._ServerEvent) else self._translate(item)
            try:
                await self.ws.send_text(json.dumps(wire.wire(), ensure_ascii=False))
            except Exception:  # the client is gone: the receive loop sees it too
                return

    def _translate(self, e: ev.Event) -> rt._ServerEvent:
        if isinstance(e, ev.SpeechStarted):
            return rt.SpeechStarted(audio_start_ms=round(e.start * 1000), item_id=e.item_id)
        if isinstance(e, ev.SpeechStopped):
            return rt.SpeechStopped(audio_end_ms=round(e.end * 1000), item_id=e.item_id)
        if isinstance(e, ev.Committed):
            return rt.Committed(item_id=e.item_id, previous_item_id=e.previous_item_id)
        if isinstance(e, ev.Cleared):
            return rt.Cleared()
        if isinstance(e, ev.Delta):
            return rt.TranscriptionDelta(item_id=e.item_id, delta=e.text)
        if isinstance(e, ev.Failed):
            return rt.TranscriptionFailed(item_id=e.item_id, error=rt.ErrorDetail(type="server_error", code=e.code, message=e.message))
        t = e.transcript
        if t.error:
            return rt.TranscriptionFailed(item_id=e.item_id, error=rt.ErrorDetail(type="invalid_request_error",
                                                                                  code=t.error_code, message=t.error))  # fmt: skip
        logprobs = [rt.Logprob(token=x.token, logprob=x.logprob, bytes=x.bytes) for x in t.logprobs] if self.settings.logprobs else None
        return rt.TranscriptionCompleted(item_id=e.item_id, transcript=t.text, usage=rt.DurationUsage(seconds=round(e.end - e.start, 3)),
                                         logprobs=logprobs)  # fmt: skip

