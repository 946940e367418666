"""Reading what clients send: capped bodies, form fields, chat messages and their audio.

Nothing a client sends can name a file on the server: audio arrives as upload bytes, base64,
a data URL, or an http(s) URL fetched by `urls.fetch` with its address checks.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass

from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect, Request

from medasr.audio.decode import SAMPLE_RATE, decode_bytes
from medasr.audio.ffmpeg import packet_seconds
from medasr.errors import AudioError
from medasr.model.prompt import normalize_language
from medasr.server import timeouts, urls
from medasr.server.config import ServerConfig
from medasr.server.errors import BODY_READ, DRAIN_FACTOR, ApiError

FORM_OVERHEAD = 256 * 1024  # the non-file fields of a form (prompt, language, ...)
DECLARED_MARGIN = 1.02  # counted durations are estimates for some codecs (Ogg Vorbis: ~1 %)


async def read_body(request: Request, limit: int, cap_mb: float) -> bytes:
    """The whole body, or 413 once it passes `limit` bytes (declared or actually sent)."""
    request.scope[BODY_READ] = True
    declared = request.headers.get("content-length", "")
    too_big = declared.isdigit() and int(declared) > limit
    chunks: list[bytes] = []
    size = 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            too_big = too_big or size > limit
            if too_big:
                chunks.clear()
                if size > limit * DRAIN_FACTOR:
                    break  # give up reading; the server closes the connection after answering
            else:
                chunks.append(chunk)
    except ClientDisconnect:
        if (limit_s := timeouts.timed_out(request.scope)) is not None:  # cut off by server.timeouts
            raise ApiError(408, f"the request body did not arrive within {limit_s:g} s", code="request_timeout") from None
        raise ApiError(400, "the client disconnected while sending the body") from None
    if too_big:
        raise ApiError(413, f"upload larger than this server's limit of {cap_mb:g} MB", code="request_too_large")
    return b"".join(chunks)


def language_param(value: str | None, default: str) -> str | None:
    try:
        return normalize_language(value if value not in (None, "") else default)
    except ValueError as err:
        raise ApiError(400, str(err), param="language", code="unsupported_language") from None


async def decode(data: bytes, label: str, config: ServerConfig, param: str = "file"):
    """Bytes -> 16 kHz samples off the event loop; 400 for bad audio, 413 past the duration cap."""
    if len(data) > config.max_upload_bytes:
        raise ApiError(413, f"audio larger than {config.max_upload_mb:g} MB", param=param, code="file_too_large")
    try:
        samples = await run_in_threadpool(_decode_capped, data, label, config.max_audio_s)
    except AudioError as err:
        raise ApiError(400, str(err), param=param, code="invalid_audio") from None
    except _TooLong as err:
        raise ApiError(
            413, f"audio is {err.seconds:.0f} s long; this server accepts at most {config.max_audio_s:g} s",
            param=param, code="audio_too_long",
        ) from None  # fmt: skip
    return samples


class _TooLong(Exception):
    def __init__(self, seconds: float):
        self.seconds = seconds


def _decode_capped(data: bytes, label: str, max_s: float):
    # A few MB of compressed silence can decode to hours of samples: count the packets first
    # (exact, nothing decoded; never a header's claim, which an MP3 without a length header or
    # joined recordings get wrong both ways). The margin covers estimated packet durations (Ogg).
    declared = _declared_seconds(data)
    if declared is not None and declared > max_s * DECLARED_MARGIN + 1.0:
        raise _TooLong(declared)
    samples = decode_bytes(data, label)
    if len(samples) / SAMPLE_RATE > max_s:
        raise _TooLong(len(samples) / SAMPLE_RATE)
    return samples


def _declared_seconds(data: bytes) -> float | None:
    """The audio's length from its packets, or None (then decoding decides)."""
    return packet_seconds(data)


# ---------------------------------------------------------------- chat messages


@dataclass
class ChatAudio:
    url: str | None = None  # http(s) or data: URL
    data: bytes | None = None  # input_audio, already base64-decoded


def parse_messages(messages: object) -> tuple[ChatAudio, str | None]:
    """(the one audio part, context from system messages and text parts)."""
    if not isinstance(messages, list) or not messages:
        raise ApiError(400, "messages must be a non-empty list", param="messages")
    audios: list[ChatAudio] = []
    context: list[str] = []
    for i, msg in enumerate(messages):
        where = f"messages[{i}]"
        if not isinstance(msg, dict) or not isinstance(msg.get("role"), str):
            raise ApiError(400, f"{where} must be an object with a role", param=where)
        if msg["role"] == "assistant":
            continue
        content = msg.get("content")
        parts = [{"type": "text", "text": content}] if isinstance(content, str) else content
        if not isinstance(parts, list):
            raise ApiError(400, f"{where}.content must be a string or a list of parts", param=f"{where}.content")
        for j, part in enumerate(parts):
            audio, text = _part(part, f"{where}.content[{j}]")
            if audio:
                audios.append(audio)
            if text and text.strip():
                context.append(text.strip())
    if len(audios) != 1:
        raise ApiError(400, f"send exactly one audio part (audio_url or input_audio); got {len(audios)}", param="messages")
    return audios[0], "\n".join(context) or None


def _part(part: object, where: str) -> tuple[ChatAudio | None, str | None]:
    if not isinstance(part, dict):
        raise ApiError(400, f"{where} must be an object", param=where)
    kind = part.get("type")
    if kind == "text":
        text = part.get("text")
        if not isinstance(text, str):
            raise ApiError(400, f"{where}.text must be a string", param=where)
        return None, text
    if kind == "audio_url":
        ref = part.get("audio_url")
        url = ref.get("url") if isinstance(ref, dict) else ref
        if not isinstance(url, str) or not url:
            raise ApiError(400, f"{where}.audio_url.url must be a URL string", param=where)
        return ChatAudio(url=url), None
    if kind == "input_audio":
        ref = part.get("input_audio")
        data = ref.get("data") if isinstance(ref, dict) else None
        if not isinstance(data, str) or not data:
            raise ApiError(400, f"{where}.input_audio.data must be base64 audio", param=where)
        return ChatAudio(data=_b64(data, where)), None
    raise ApiError(400, f"{where}: unsupported content type {kind!r} (use text, audio_url or input_audio)", param=where)


def _b64(payload: str, where: str) -> bytes:
    try:
        return base64.b64decode(payload.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise ApiError(400, f"{where}: invalid base64 audio data", param=where, code="invalid_audio") from None


async def chat_audio_bytes(audio: ChatAudio, config: ServerConfig) -> bytes:
    if audio.data is not None:
        return audio.data
    url = audio.url or ""
    if url.startswith("data:"):
        header, _, payload = url.partition(",")
        if ";base64" not in header or not payload:
            raise ApiError(400, "a data URL must read data:audio/...;base64,<data>", param="audio_url", code="invalid_url")
        return _b64(payload, "audio_url")
    try:
        return await run_in_threadpool(urls.fetch, url, config.max_upload_bytes, config.url_timeout_s, config.allow_private_urls)
    except urls.UrlTooLarge as err:
        raise ApiError(413, str(err), param="audio_url", code=err.code) from None
    except urls.UrlError as err:
        raise ApiError(400, str(err), param="audio_url", code=err.code) from None
