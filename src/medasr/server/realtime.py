"""`GET /v1/realtime?intent=transcription`: OpenAI's Realtime transcription protocol on a WebSocket.

Each connection is one `medasr.pipeline.session.LiveSession` on the server's shared scheduler:
its partial and final decodes share batches with every other stream and upload (live work goes
first and has rows kept for it), and its finals come from the offline path. This module only
speaks the wire protocol (`realtime_protocol`): it checks the API key (the `Authorization`
header, or the `openai-insecure-api-key.KEY` subprotocol browsers use), turns the client's
session settings into `LiveOptions`, base64 PCM into 16 kHz samples (`medasr.audio.pcm`), and
the session's events into OpenAI's.

Faults (docs/limits.md lists every limit): an event that is not valid JSON, nests too deep,
holds too many values, carries a lone surrogate or a field of the wrong kind, an unknown event,
bad base64, an unsupported format or rate, a model this server does not serve, a prompt over
the context limit or an append over the upload limit gets an `error` event, and the connection
stays usable; no exception leaves an event's handling. A client that disconnects has its
decodes cancelled and its audio freed at once. A session ends after `realtime_max_session_s`,
or `realtime_idle_timeout_s` without a client event (what is open is committed and its final
sent first). Beyond `realtime_max_sessions` connections a new one is refused with an error and
closed, before it costs anything. A client that does not read (its send queue full, or an
event not taken within `realtime_send_timeout_s`) is cut off and its slot, audio and decodes
freed. Audio is read in parts, each only while fewer than MAX_PENDING_FINALS utterances wait
for their finals, so one greedy append cannot queue unbounded work; and each session's decodes
are its own flow in the scheduler's fair queue, so its backlog does not delay the others.
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

from starlette.websockets import WebSocket, WebSocketDisconnect

from medasr.audio.pcm import PcmDecoder
from medasr.audio.vad import SpeechProbabilities
from medasr.defaults import MIN_AUDIO_S, SAMPLE_RATE
from medasr.errors import BadContext
from medasr.pipeline import events as ev
from medasr.pipeline.session import LiveSession
from medasr.server import realtime_protocol as rt
from medasr.server.config import ServerConfig
from medasr.server.realtime_settings import Refused, Settings, updated

log = logging.getLogger(__name__)

KEY_SUBPROTOCOL = "openai-insecure-api-key."
MAX_PENDING_FINALS = 8  # utterances waiting for their finals, at most: beyond, the client is not read until they catch up
CLOSES_PER_PART = 2  # utterances one part of an append can close: one by silence, one at the piece limit
FINISH_WAIT_S = 30.0  # at the end of a session, how long the finals of what was open may take
CLOSE_NORMAL, CLOSE_POLICY, CLOSE_TRY_LATER = 1000, 1008, 1013
ABORT = "medasr.abort"  # scope key: drops the connection's TCP link at once (set by the app's middleware)

# Sessions' audio work (speech detection, planning finals) runs on a few threads of its own,
# off the event loop and apart from the request pool, so that no more threads than these run
# torch beside the decoder. Each session awaits one call before the next: its order holds.
_LIVE = ThreadPoolExecutor(4, thread_name_prefix="medasr-live")


async def run_in_threadpool(fn, *args):
    return await asyncio.get_running_loop().run_in_executor(_LIVE, fn, *args)


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
        refusal = (f"this server runs transcription sessions only: connect with ?intent=transcription, not {intent[:64]!r}",
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
    """One client's session. Three bounds keep it from costing the others: its events to send
    wait in a queue of `realtime_send_queue` and each must be taken within
    `realtime_send_timeout_s` (else the client is not reading: it is cut off and freed); its
    audio is read in parts, each only once fewer than MAX_PENDING_FINALS of its finals wait; and
    its decodes are its own flow in the scheduler's fair queue."""

    def __init__(self, websocket: WebSocket, config: ServerConfig, scheduler):
        self.ws = websocket
        self.config = config
        self.id = "sess_" + uuid.uuid4().hex[:24]
        self.deadline = time.monotonic() + config.realtime_max_session_s
        self.expires_at = int(time.time() + config.realtime_max_session_s)
        self.settings = Settings(model=config.model_id, language=None)
        self.pcm = PcmDecoder(self.settings.rate)
        self.loop = asyncio.get_running_loop()
        self.out: asyncio.Queue = asyncio.Queue(config.realtime_send_queue)
        self.scheduler = scheduler
        self.session: LiveSession | None = None
        self.stalled: str | None = None  # why the client counts as not reading (then it is cut off)
        self._stall_event = asyncio.Event()

    # ------------------------------------------------------------------ lifecycle
    async def run(self) -> None:
        # built off the event loop: its speech detector may have to load
        self.session = await run_in_threadpool(LiveSession, self.scheduler, self.settings.options(self.config), self._emit)
        sender = asyncio.create_task(self._send_loop())
        try:
            self.send(rt.SessionCreated(session=self.settings.info(self.config, self.id, self.expires_at)))
            ended = await self._receive_loop()
            if ended is not None and not self.stalled:  # the server ends it: finals of what is open first, then say why
                await run_in_threadpool(self.session.finish)
                waited = time.monotonic() + FINISH_WAIT_S
                while self.session.pending_finals and time.monotonic() < waited and not self.stalled:
                    await asyncio.sleep(0.05)
                self.send(rt.error_event(*ended, kind="invalid_request_error"))
                self._put(_CLOSE)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.shield(sender), FINISH_WAIT_S)
                if not self.stalled:  # a close frame waits for the client to read: bounded too
                    try:
                        await asyncio.wait_for(self.ws.close(CLOSE_NORMAL, reason=ended[1]), self.config.realtime_send_timeout_s)
                    except TimeoutError:
                        self._stall("the close frame was not taken")
                    except Exception:  # the client is gone already
                        pass
        finally:
            self.session.close()  # cancels its decodes, frees its audio
            sender.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await sender
            if self.stalled:
                _cut_off(self.ws)

    async def _receive_loop(self) -> tuple[str, str] | None:
        """Handle client events until the client leaves or stops reading (None) or the server
        ends the session ((message, code)). The idle and session timers count what the client
        sends, whatever it reads."""
        idle = self.config.realtime_idle_timeout_s
        stalled = asyncio.ensure_future(self._stall_event.wait())
        try:
            while not self.stalled:
                left = self.deadline - time.monotonic()
                if left <= 0:
                    return self._expired()
                receiving = asyncio.ensure_future(self.ws.receive())
                done, _ = await asyncio.wait({receiving, stalled}, timeout=min(idle, left), return_when=asyncio.FIRST_COMPLETED)
                if receiving not in done:
                    receiving.cancel()
                    with contextlib.suppress(asyncio.CancelledError, Exception):
                        await receiving
                    if self.stalled:
                        return None
                    if time.monotonic() >= self.deadline:
                        return self._expired()
                    return (f"the session was idle for {idle:g} s and has ended", "idle_timeout")
                try:
                    message = receiving.result()
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
            return None
        finally:
            stalled.cancel()

    def _expired(self) -> tuple[str, str]:
        return (f"the session reached its maximum duration of {self.config.realtime_max_session_s:g} s", "session_expired")

    # ------------------------------------------------------------------ client events
    async def _handle(self, text: str) -> None:
        """Carry out one client event; whatever is wrong with it becomes an `error` event and the
        session goes on (no exception leaves this method)."""
        client_id = None
        try:
            event = rt.parse_client_event(text)
            client_id = event.event_id
            await self._dispatch(event)
        except rt.BadEvent as err:
            self.send(rt.error_event(err.message, err.code, err.param, err.client_event_id))
        except Refused as err:
            self.send(rt.error_event(err.message, err.code, err.param, client_id))
        except Exception:  # a fault of this server: said to the client, logged, the session goes on
            log.exception("realtime session %s: an event failed", self.id)
            self.send(rt.error_event("the server failed to carry out this event; the session goes on", "internal_error",
                                     client_event_id=client_id, kind="server_error"))  # fmt: skip

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
        part = self._part_samples()
        for start in range(0, len(samples), part):  # a large append is read in parts, ...
            if not await self._room_for_finals(CLOSES_PER_PART):  # ... each once its finals have room
                return  # the session is ending: the rest of this audio is not needed
            await run_in_threadpool(self.session.append, samples[start : start + part])

    def _part_samples(self) -> int:
        """Audio read at once: no longer than the silence that ends an utterance (at least one
        speech-detection window), so a part closes at most one utterance by silence and at most
        one at the piece limit."""
        window = SpeechProbabilities.window
        silence = int(self.settings.silence_duration_ms * SAMPLE_RATE / 1000)
        return max(window, min(silence, SAMPLE_RATE) // window * window)

    async def _room_for_finals(self, closes: int) -> bool:
        """Wait (reading nothing more from this client) until `closes` more utterances can wait
        for their finals without passing MAX_PENDING_FINALS; False when the session ends meanwhile."""
        while self.session.pending_finals > MAX_PENDING_FINALS - closes:
            if self.stalled or time.monotonic() >= self.deadline:
                return False
            await asyncio.sleep(0.02)
        return True

    async def _commit(self) -> None:
        if not await self._room_for_finals(CLOSES_PER_PART + 1):
            return
        tail = self.pcm.flush()
        if len(tail):
            await run_in_threadpool(self.session.append, tail)
        if self.session.pending_s < MIN_AUDIO_S:
            raise Refused(f"nothing to commit: at least {MIN_AUDIO_S * 1000:.0f} ms of uncommitted speech is needed",
                          "input_audio_buffer_commit_empty")  # fmt: skip
        await run_in_threadpool(self.session.commit)

    async def _update(self, event: rt.SessionUpdate | rt.TranscriptionSessionUpdate) -> None:
        new = updated(self.settings, event, self.config)
        options = new.options(self.config)
        try:  # the one context rule (the engine's), before anything changes
            await run_in_threadpool(self.scheduler.engine.check_context, options.context)
        except BadContext as err:
            beta = isinstance(event, rt.TranscriptionSessionUpdate)
            raise Refused(str(err), err.code, f"session.{'input_audio_transcription' if beta else 'audio.input.transcription'}.prompt") from None
        if new.rate != self.pcm.rate:
            tail = self.pcm.flush()
            if len(tail):
                await run_in_threadpool(self.session.append, tail)
            self.pcm = PcmDecoder(new.rate)
        self.settings = new
        await run_in_threadpool(self.session.configure, options)
        if isinstance(event, rt.SessionUpdate):
            self.send(rt.SessionUpdated(session=new.info(self.config, self.id, self.expires_at)))
        else:
            self.send(rt.TranscriptionSessionUpdated(session=new.beta_info(self.config, self.id, self.expires_at)))

    # ------------------------------------------------------------------ server events
    def send(self, event: rt._ServerEvent) -> None:
        self._put(event)

    def _put(self, item) -> None:
        """Queue an item for the sender; a full queue means the client is not reading."""
        if self.stalled:
            return
        try:
            self.out.put_nowait(item)
        except asyncio.QueueFull:
            self._stall(f"{self.out.maxsize} events were waiting for it")

    def _stall(self, why: str) -> None:
        if not self.stalled:
            self.stalled = why
            self._stall_event.set()
            log.warning("realtime session %s: the client is not reading (%s): closed", self.id, why)

    def _emit(self, event: ev.Event) -> None:
        """The session's events, from the handler's or the scheduler's thread, in order."""
        with contextlib.suppress(RuntimeError):  # the loop is gone (shutting down)
            self.loop.call_soon_threadsafe(self._put, event)

    async def _send_loop(self) -> None:
        timeout = self.config.realtime_send_timeout_s
        while True:
            item = await self.out.get()
            if item is _CLOSE:
                return
            wire = item if isinstance(item, rt._ServerEvent) else self._translate(item)
            text = json.dumps(wire.wire(), ensure_ascii=False)
            if not text.isascii():
                try:
                    text.encode("utf-8")
                except UnicodeEncodeError:  # text UTF-8 cannot carry: escaped instead of failing the send
                    text = json.dumps(wire.wire())
            try:
                await asyncio.wait_for(self.ws.send_text(text), timeout)
            except TimeoutError:
                self._stall(f"an event was not taken within {timeout:g} s")
                return
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


def _cut_off(websocket: WebSocket) -> None:
    """Drop a client that stopped reading at once: a graceful close would keep its unsent bytes,
    and its TCP connection, until it reads (the app's outermost middleware puts the abort in the
    scope; without it the connection closes when the client next reads or leaves)."""
    abort = websocket.scope.get(ABORT)
    if abort is not None:
        abort()
