"""The OpenAI-compatible routes: transcriptions, chat completions (vLLM's ASR style), models."""

from __future__ import annotations

import asyncio
import hmac
import json
import time
import uuid
from collections.abc import AsyncIterator

from fastapi import APIRouter, Depends, Request
from fastapi.responses import (
    JSONResponse,
    PlainTextResponse,
    Response,
    StreamingResponse,
)
from starlette.concurrency import run_in_threadpool

from medasr.engine import Request as EngineRequest
from medasr.engine import Result
from medasr.formats import srt, vtt
from medasr.prompt import answer_prefix, audio_token_count
from medasr.server import inputs
from medasr.server.batcher import Batcher, Job, NotReady, QueueFull
from medasr.server.config import ServerConfig
from medasr.server.errors import ApiError
from medasr.server.longform import Split, merge, piece_text, split, verbose

RESPONSE_FORMATS = ("json", "text", "srt", "vtt", "verbose_json")
POLL_S = 0.25  # how often a waiting handler checks whether its client is still there


def require_key(request: Request) -> None:
    key = request.app.state.config.api_key
    if not key:
        return
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), key.encode()):
        raise ApiError(401, "invalid or missing API key (send Authorization: Bearer KEY)", code="invalid_api_key",
                       headers={"WWW-Authenticate": "Bearer"})  # fmt: skip


router = APIRouter(prefix="/v1", dependencies=[Depends(require_key)])


def _state(request: Request) -> tuple[ServerConfig, Batcher]:
    return request.app.state.config, request.app.state.batcher


def _refusal(err: NotReady | QueueFull) -> ApiError:
    if isinstance(err, NotReady):
        return ApiError(503, str(err), code="model_not_ready", headers={"Retry-After": "5"})
    return ApiError(429, str(err), code="queue_full", headers={"Retry-After": str(err.retry_after_s)})


def _admit(batcher: Batcher) -> float:
    """Refuse early, before reading and decoding, when the answer would be 503 or 429 anyway.
    Returns the arrival time, from which the request's deadline counts."""
    try:
        batcher.check_admission()
    except (NotReady, QueueFull) as err:
        raise _refusal(err) from None
    return time.monotonic()


async def _start(request: Request, arrived: float, samples, context: str | None, language: str | None) -> tuple[Split, Job]:
    config, batcher = _state(request)
    parts = await run_in_threadpool(split, samples, config.max_piece_s, config.vad)
    pieces = [EngineRequest(x, context, language) for x in parts.samples]
    try:
        job = batcher.submit(pieces, config.request_timeout_s - (time.monotonic() - arrived))
    except (NotReady, QueueFull) as err:
        raise _refusal(err) from None
    return parts, job


async def _results(request: Request, job: Job) -> AsyncIterator[tuple[int, Result]]:
    """The job's results in piece order; 504 past the deadline; stops quietly if the client left."""
    batcher: Batcher = request.app.state.batcher
    done: dict[int, Result] = {}
    next_i = 0
    try:
        while next_i < len(job.pieces):
            left = job.deadline - time.monotonic()
            if left <= 0:
                raise ApiError(504, "the request did not finish within the server's deadline", code="timeout")
            try:
                index, res = await asyncio.wait_for(job.results.get(), timeout=min(left, POLL_S))
            except TimeoutError:
                if await request.is_disconnected():
                    return  # finish() below drops its pieces that have not started
                continue
            if isinstance(res, Exception):
                raise ApiError(500, f"transcription failed: {type(res).__name__}: {res}", code="internal_error")
            done[index] = res
            while next_i in done:
                yield next_i, done.pop(next_i)
                next_i += 1
    finally:
        batcher.finish(job)


async def _all_results(request: Request, job: Job) -> list[Result]:
    out = [r async for _, r in _results(request, job)]
    if len(out) != len(job.pieces):
        raise ApiError(400, "client disconnected")  # nobody reads this
    return out


def _sse(obj: dict) -> bytes:
    return f"data: {json.dumps(obj, ensure_ascii=False)}\n\n".encode()


# ---------------------------------------------------------------- transcriptions


@router.post("/audio/transcriptions")
async def transcriptions(request: Request) -> Response:
    """OpenAI's transcription endpoint. With stream=true the answer is OpenAI's transcript
    events whatever the response_format (as OpenAI does); otherwise the format's document."""
    config, batcher = _state(request)
    if not request.headers.get("content-type", "").lower().startswith("multipart/form-data"):
        raise ApiError(415, "send a multipart/form-data body with the audio in a `file` field", code="unsupported_media_type")
    arrived = _admit(batcher)
    with batcher.arriving():  # from here the worker may wait for this request's pieces
        request._body = await inputs.read_body(request, config.max_upload_bytes + inputs.FORM_OVERHEAD, config.max_upload_mb)
        form = await request.form(max_files=1, max_fields=64, max_part_size=inputs.FORM_OVERHEAD)
        upload = form.get("file")
        if upload is None or isinstance(upload, str):
            raise ApiError(400, "the form has no `file` upload", param="file", code="missing_file")
        fmt = str(form.get("response_format") or "json")
        if fmt not in RESPONSE_FORMATS:
            raise ApiError(
                400, f"unknown response_format {fmt!r}; choose from {', '.join(RESPONSE_FORMATS)}", param="response_format"
            )
        if "word" in form.getlist("timestamp_granularities[]"):
            raise ApiError(400, "word timestamps are not supported; use segment", param="timestamp_granularities")
        try:
            temperature = float(form.get("temperature") or 0.0)  # accepted; decoding stays greedy
        except ValueError:
            raise ApiError(400, "temperature must be a number", param="temperature") from None
        if not 0.0 <= temperature <= 2.0:
            raise ApiError(400, "temperature must be between 0 and 2", param="temperature")
        language = inputs.language_param(form.get("language"), config.language)
        context = str(form.get("prompt") or "").strip() or None
        stream = inputs.flag(form.get("stream"), "stream")

        try:
            data = await upload.read()
        finally:
            await form.close()  # uploads over 1 MB are spooled to a temporary file
        samples = await inputs.decode(data, upload.filename or "upload", config)
        parts, job = await _start(request, arrived, samples, context, language)
    if stream:
        return StreamingResponse(_transcript_events(request, parts, job, language), media_type="text/event-stream")
    t = merge(parts, await _all_results(request, job), language)
    if fmt == "json":
        return JSONResponse({"text": t.text, "usage": {"type": "duration", "seconds": t.duration}})
    if fmt == "verbose_json":
        return JSONResponse(verbose(t))
    body = {"text": t.text + "\n", "srt": srt(t.segments), "vtt": vtt(t.segments)}[fmt]
    return PlainTextResponse(body)


async def _transcript_events(request: Request, parts: Split, job: Job, language: str | None) -> AsyncIterator[bytes]:
    """OpenAI's transcription stream: a delta per finished piece, in order, then done."""
    results: list[Result] = []
    said = False
    try:
        async for _, r in _results(request, job):
            results.append(r)
            text = piece_text(parts, r)
            if text:
                yield _sse({"type": "transcript.text.delta", "delta": (" " if said else "") + text})
                said = True
    except ApiError as err:  # headers are sent: the error goes in the stream, as OpenAI does
        yield _sse(err.body())
        return
    finally:  # also when the client leaves mid-stream and this generator is closed
        request.app.state.batcher.finish(job)
    if len(results) < len(job.pieces):
        return  # the client left
    usage = _usage(job, results)
    usage = {"type": "tokens", "input_tokens": usage["prompt_tokens"], "output_tokens": usage["completion_tokens"],
             "total_tokens": usage["total_tokens"]}  # fmt: skip
    yield _sse({"type": "transcript.text.done", "text": merge(parts, results, language).text, "usage": usage})


# ---------------------------------------------------------------- chat completions


@router.post("/chat/completions")
async def chat_completions(request: Request) -> Response:
    config, batcher = _state(request)
    arrived = _admit(batcher)
    with batcher.arriving():
        body = await inputs.read_body(request, config.max_upload_bytes * 4 // 3 + inputs.FORM_OVERHEAD, config.max_upload_mb)
        try:
            payload = json.loads(body)
        except (ValueError, UnicodeDecodeError) as err:
            raise ApiError(400, f"malformed JSON body: {err}", code="invalid_json") from None
        if not isinstance(payload, dict):
            raise ApiError(400, "the body must be a JSON object", code="invalid_json")
        audio, context = inputs.parse_messages(payload.get("messages"))
        language = inputs.language_param(payload.get("language"), config.language)
        stream = inputs.flag(payload.get("stream"), "stream")
        samples = await inputs.decode(await inputs.chat_audio_bytes(audio, config), "audio", config, "messages")
        parts, job = await _start(request, arrived, samples, context, language)
    meta = {"id": f"chatcmpl-{uuid.uuid4().hex}", "created": int(time.time()), "model": config.model_id}
    if stream:
        return StreamingResponse(_chat_chunks(request, parts, job, language, meta), media_type="text/event-stream")
    results = await _all_results(request, job)
    t = merge(parts, results, language)
    usage = _usage(job, results)
    # vLLM answers with the model's raw form: `language X<asr_text>TEXT`
    content = answer_prefix(t.language or "None") + t.text
    message = {"role": "assistant", "content": content}
    return JSONResponse({
        **meta, "object": "chat.completion",
        "choices": [{"index": 0, "message": message, "finish_reason": "length" if t.hit_token_cap else "stop"}],
        "usage": usage,
    })  # fmt: skip


def _usage(job: Job, results: list[Result]) -> dict:
    prompt = sum(audio_token_count(len(p.samples) // 160) for p in job.pieces)  # audio tokens only
    completion = sum(r.n_tokens for r in results)
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


async def _chat_chunks(request: Request, parts: Split, job: Job, language: str | None, meta: dict) -> AsyncIterator[bytes]:
    def chunk(delta: dict, finish: str | None = None) -> bytes:
        choice = {"index": 0, "delta": delta, "finish_reason": finish}
        return _sse({**meta, "object": "chat.completion.chunk", "choices": [choice]})

    yield chunk({"role": "assistant", "content": ""})
    said, capped = False, False
    try:
        async for i, r in _results(request, job):
            capped = capped or r.hit_token_cap
            text = piece_text(parts, r)
            if i == 0:  # the model's raw form starts `language X<asr_text>`
                yield chunk({"content": answer_prefix(language or r.language or "None")})
            if text:
                yield chunk({"content": (" " if said else "") + text})
                said = True
    except ApiError as err:
        yield _sse(err.body())
        return
    finally:
        request.app.state.batcher.finish(job)
    if not job.pieces:  # no speech found: the model would have said nothing either
        yield chunk({"content": answer_prefix(language or "None")})
    yield chunk({}, "length" if capped else "stop")
    yield b"data: [DONE]\n\n"


# ---------------------------------------------------------------- models


@router.get("/models")
async def models(request: Request) -> JSONResponse:
    config: ServerConfig = request.app.state.config
    created = int(request.app.state.started)
    card = {"id": config.model_id, "object": "model", "created": created, "owned_by": "medasr"}
    return JSONResponse({"object": "list", "data": [card]})
