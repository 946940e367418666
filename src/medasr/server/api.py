"""The OpenAI-compatible routes: transcriptions, chat completions (vLLM's ASR style), models."""

from __future__ import annotations

import asyncio
import hmac
import json
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import numpy as np
from fastapi import APIRouter, Depends, Request
from fastapi.responses import (
    JSONResponse,
    PlainTextResponse,
    Response,
    StreamingResponse,
)
from pydantic import BaseModel, ValidationError
from starlette.concurrency import run_in_threadpool

from medasr.errors import BadContext, ModelLoadError
from medasr.model.prompt import answer_prefix
from medasr.output.formats import srt, verbose_json, vtt
from medasr.pipeline.assembler import assemble
from medasr.pipeline.engine import Request as EngineRequest
from medasr.pipeline.engine import Result
from medasr.pipeline.segmenter import AudioTooShort, Plan, piece_samples, plan_samples, vad_options
from medasr.pipeline.words import plan_clips
from medasr.server import inputs, protocol
from medasr.server.batcher import Batcher, Job, NotReady, QueueFull
from medasr.server.config import ServerConfig
from medasr.server.errors import ApiError
from medasr.server.protocol import first_error

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


def _check_model(config: ServerConfig, name: str) -> None:
    """404 for a model this server does not serve (an empty name means the default, as vLLM)."""
    if name and name not in config.model_names:
        raise ApiError(404, f"the model {name!r} does not exist here; this server serves {', '.join(config.model_names)}",
                       param="model", code="model_not_found")  # fmt: skip


def _validate(model_cls, data: dict):
    try:
        return model_cls.model_validate(data)
    except ValidationError as err:
        message, param = first_error(err)
        raise ApiError(400, message, param=param) from None


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


async def _check_context(batcher: Batcher, context: str | None, param: str) -> None:
    """The engine's one context rule, before the audio is read or decoded: 400 when it is broken."""
    try:
        await run_in_threadpool(batcher.engine.check_context, context)
    except BadContext as err:
        raise ApiError(400, str(err), param=param, code=err.code) from None


@dataclass
class _Work:
    """One request's audio on its way through the pipeline."""

    plan: Plan
    job: Job
    language: str | None
    temperature: float


async def _start(request: Request, arrived: float, samples, label: str, param: str, context: str | None,
                 language: str | None, temperature: float = 0.0, seed: int | None = None,
                 max_new_tokens: int | None = None) -> _Work:  # fmt: skip
    """Plan the audio (speech detection, pieces) and queue its pieces."""
    config, batcher = _state(request)
    try:
        plan = await run_in_threadpool(plan_samples, samples, label, vad_options(config.vad, config.max_piece_s))
    except AudioTooShort as err:
        raise ApiError(400, str(err), param=param, code=err.code) from None
    budget = max_new_tokens or config.max_new_tokens
    pieces = [EngineRequest(x, context, language, budget, temperature, seed) for _, x in piece_samples(plan)]
    try:
        job = batcher.submit(pieces, config.request_timeout_s - (time.monotonic() - arrived))
    except (NotReady, QueueFull) as err:
        raise _refusal(err) from None
    return _Work(plan, job, language, temperature)


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
                    return  # finish() below drops its pieces
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


def _sse(obj: dict | BaseModel) -> bytes:
    if isinstance(obj, BaseModel):
        obj = obj.model_dump(exclude_none=True)
    return f"data: {json.dumps(obj, ensure_ascii=False)}\n\n".encode()


def _logprobs(items) -> list[protocol.TokenLogprob]:
    return [protocol.TokenLogprob(token=x.token, logprob=x.logprob, bytes=x.bytes) for x in items]


def _usage(results: list[Result]) -> protocol.ChatUsage:
    prompt = sum(r.prompt_tokens for r in results)
    completion = sum(r.n_tokens for r in results)
    return protocol.ChatUsage(prompt_tokens=prompt, completion_tokens=completion, total_tokens=prompt + completion)


# ---------------------------------------------------------------- transcriptions


def _form_fields(form) -> dict:
    """The form's fields for TranscriptionRequest: list fields accept `x[]` and `x` spellings."""
    fields = {k: v for k, v in form.multi_items() if isinstance(v, str) and not k.endswith("[]")}
    for name in ("timestamp_granularities", "include"):
        values = form.getlist(name + "[]") + form.getlist(name)
        if values:
            fields[name] = [v for v in values if isinstance(v, str)]
        else:
            fields.pop(name, None)
    return fields


@router.post("/audio/transcriptions")
async def transcriptions(request: Request) -> Response:
    """OpenAI's transcription endpoint. With stream=true the answer is OpenAI's transcript
    events whatever the response_format (as OpenAI does); otherwise the format's document."""
    config, batcher = _state(request)
    if not request.headers.get("content-type", "").lower().startswith("multipart/form-data"):
        raise ApiError(415, "send a multipart/form-data body with the audio in a `file` field", code="unsupported_media_type")
    arrived = _admit(batcher)
    with batcher.arriving():  # from here an idle scheduler may wait for this request's pieces
        request._body = await inputs.read_body(request, config.max_upload_bytes + inputs.FORM_OVERHEAD, config.max_upload_mb)
        form = await request.form(max_files=1, max_fields=64, max_part_size=inputs.FORM_OVERHEAD)
        try:
            upload = form.get("file")
            if upload is None or isinstance(upload, str):
                raise ApiError(400, "the form has no `file` upload", param="file", code="missing_file")
            req = _validate(protocol.TranscriptionRequest, _form_fields(form))
            _check_model(config, req.model)
            words = "word" in req.timestamp_granularities
            if words and (req.response_format != "verbose_json" or req.stream):
                raise ApiError(400, "timestamp_granularities[]=word needs response_format=verbose_json (and no stream)",
                               param="timestamp_granularities")  # fmt: skip
            if req.include and req.response_format not in ("json", "verbose_json") and not req.stream:
                raise ApiError(400, "include[]=logprobs needs response_format json or verbose_json", param="include")
            language = inputs.language_param(req.language, config.language)
            context = (req.prompt or "").strip() or None
            await _check_context(batcher, context, "prompt")
            data = await upload.read()
        finally:
            await form.close()  # uploads over 1 MB are spooled to a temporary file
        if words:
            await _aligner_ready(batcher)
        samples = await inputs.decode(data, upload.filename or "upload", config)
        limit = req.max_completion_tokens
        work = await _start(request, arrived, samples, "upload", "file", context, language, req.temperature, req.seed,
                            max_new_tokens=limit)  # fmt: skip
    if req.stream:
        return StreamingResponse(_transcript_events(request, work, bool(req.include), limit), media_type="text/event-stream")
    results, _ = limit_tokens(await _all_results(request, work.job), limit, batcher.engine)
    t = assemble(work.plan, results, language, req.temperature)
    if words:  # on the aligner's own thread; a transcript it cannot time keeps its text, with a warning
        t = await asyncio.wrap_future(batcher.words.submit(t, plan_clips(work.plan, t.segments)))
    if req.response_format == "json":
        body = protocol.TranscriptionResponse(
            text=t.text, usage=protocol.DurationUsage(seconds=t.duration), logprobs=_logprobs(t.logprobs) if req.include else None,
        )  # fmt: skip
        return JSONResponse(body.model_dump(exclude_none=True))
    if req.response_format == "verbose_json":
        body = protocol.VerboseTranscription.model_validate(verbose_json(t, req.timestamp_granularities, config.low_confidence))
        if req.include:
            body.logprobs = _logprobs(t.logprobs)
        return JSONResponse(body.model_dump(exclude_none=True))
    body = {"text": t.text + "\n", "srt": srt(t.segments), "vtt": vtt(t.segments)}[req.response_format]
    return PlainTextResponse(body)


async def _aligner_ready(batcher: Batcher) -> None:
    """Load the aligner if need be (first request asking for words), before any transcription;
    503 when it cannot be loaded (the reason is kept: later requests get it at once)."""
    try:
        await run_in_threadpool(batcher.words.load)
    except ModelLoadError as err:
        raise ApiError(503, f"word timestamps are unavailable: {err}", param="timestamp_granularities",
                       code="aligner_not_available") from None  # fmt: skip


async def _transcript_events(request: Request, work: _Work, with_logprobs: bool, limit: int | None) -> AsyncIterator[bytes]:
    """OpenAI's transcription stream: a delta per finished piece, in order, then done; at most
    `limit` generated tokens in all."""
    results: list[Result] = []
    said, left = False, limit
    try:
        async for _, r in _results(request, work.job):
            (r,), _ = limit_tokens([r], left, request.app.state.batcher.engine)  # past the limit: an empty piece
            if left is not None:
                left -= r.n_tokens
            results.append(r)
            text = r.text if work.plan.whole else " ".join(r.text.split())
            if text:
                lp = _logprobs(r.text_tokens) if with_logprobs else None
                yield _sse(protocol.TextDelta(delta=(" " if said else "") + text, logprobs=lp))
                said = True
    except ApiError as err:  # headers are sent: the error goes in the stream, as OpenAI does
        yield _sse(err.body())
        return
    finally:  # also when the client leaves mid-stream and this generator is closed
        request.app.state.batcher.finish(work.job)
    if len(results) < len(work.job.pieces):
        return  # the client left
    t = assemble(work.plan, results, work.language, work.temperature)
    u = _usage(results)
    usage = protocol.TokenUsage(input_tokens=u.prompt_tokens, output_tokens=u.completion_tokens, total_tokens=u.total_tokens)
    yield _sse(protocol.TextDone(text=t.text, usage=usage, logprobs=_logprobs(t.logprobs) if with_logprobs else None))


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
        if not isinstance(payload.get("messages"), list) or not payload["messages"]:
            raise ApiError(400, "messages must be a non-empty list", param="messages")
        req = _validate(protocol.ChatCompletionRequest, payload)
        _check_model(config, req.model)
        audio, context = inputs.parse_messages(payload["messages"])
        await _check_context(batcher, context, "messages")
        language = inputs.language_param(req.language, config.language)
        samples = await inputs.decode(await inputs.chat_audio_bytes(audio, config), "audio", config, "messages")
        limit = req.token_limit
        work = await _start(request, arrived, samples, "audio", "messages", context, language, req.temperature or 0.0,
                            req.seed, max_new_tokens=limit)  # fmt: skip
    meta = {"id": f"chatcmpl-{uuid.uuid4().hex}", "created": int(time.time()), "model": req.model or config.model_id}
    if req.stream:
        return StreamingResponse(_chat_chunks(request, work, meta, limit), media_type="text/event-stream")
    results = await _all_results(request, work.job)
    results, capped = limit_tokens(results, limit, batcher.engine)
    t = assemble(work.plan, results, language, work.temperature)
    # vLLM answers with the model's raw form: `language X<asr_text>TEXT`; without speech the
    # model was not asked, and `language None` is its own answer for no speech
    content = answer_prefix((t.language if work.plan.pieces else "") or "None") + t.text
    answer = protocol.ChatCompletion(
        **meta, choices=[protocol.ChatChoice(message=protocol.AssistantMessage(content=content),
                                             finish_reason="length" if capped else "stop")],
        usage=_usage(results),
    )  # fmt: skip
    return JSONResponse(answer.model_dump())


def limit_tokens(results: list[Result], limit: int | None, engine) -> tuple[list[Result], bool]:
    """Results cut to `limit` generated tokens in all (pieces run side by side, each with the
    whole budget); True when the limit stopped generation."""
    capped = any(r.hit_token_cap for r in results)
    if limit is None:
        return results, capped
    out, left = [], limit
    for r in results:
        if r.n_tokens <= left:
            out.append(r)
            left -= r.n_tokens
            continue
        ids = r.token_ids[:left]
        out.append(engine.result(EngineRequest(np.zeros(0, np.float32), language=r.language or None), ids,
                                 r.logprobs[:left], max(left, 1), r.prompt_tokens, r.no_speech_prob))  # fmt: skip
        capped, left = True, 0
    return out, capped


async def _chat_chunks(request: Request, work: _Work, meta: dict, limit: int | None) -> AsyncIterator[bytes]:
    batcher: Batcher = request.app.state.batcher

    def chunk(delta: protocol.ChunkDelta, finish: str | None = None) -> bytes:
        return _sse(protocol.ChatCompletionChunk(**meta, choices=[protocol.ChunkChoice(delta=delta, finish_reason=finish)]))

    yield chunk(protocol.ChunkDelta(role="assistant", content=""))
    said, capped, left = False, False, limit
    prefix_sent = False
    try:
        async for _, r in _results(request, work.job):
            if left is not None and left <= 0:
                continue
            (r,), cut = limit_tokens([r], left, batcher.engine)
            capped = capped or cut
            if left is not None:
                left -= r.n_tokens
            if not prefix_sent:  # the model's raw form starts `language X<asr_text>`
                yield chunk(protocol.ChunkDelta(content=answer_prefix(work.language or r.language or "None")))
                prefix_sent = True
            text = r.text if work.plan.whole else " ".join(r.text.split())
            if text:
                yield chunk(protocol.ChunkDelta(content=(" " if said else "") + text))
                said = True
    except ApiError as err:
        yield _sse(err.body())
        return
    finally:
        batcher.finish(work.job)
    if not prefix_sent:  # no speech found: `language None`, the model's own answer for no speech
        yield chunk(protocol.ChunkDelta(content=answer_prefix("None")))
    yield chunk(protocol.ChunkDelta(), "length" if capped else "stop")
    yield b"data: [DONE]\n\n"


# ---------------------------------------------------------------- models


@router.get("/models")
async def models(request: Request) -> JSONResponse:
    config: ServerConfig = request.app.state.config
    created = int(request.app.state.started)
    cards = [protocol.ModelCard(id=name, created=created) for name in config.model_names]
    return JSONResponse(protocol.ModelList(data=cards).model_dump())
