"""Serving benchmark: closed-loop clients against any OpenAI-compatible transcription server.

For each concurrency C, C clients share one list of requests (clip i % clips for request i);
each sends its next request as soon as its last one is answered, so exactly C are in flight
until the list runs out. Per level: the seed's table (total, success, failure, runtime,
samples/s = total / runtime), latency percentiles over the successes, time to first text when
streaming (the first non-empty text chunk: for vLLM's token stream that is its TTFT), and
RTFx = audio seconds answered / runtime.

Endpoints:
- transcriptions: multipart POST /v1/audio/transcriptions (OpenAI, medasr, vLLM); streamed
  answers may be OpenAI transcript events or chat-style chunks (vLLM); both are read.
- chat: POST /v1/chat/completions with an `audio_url` data URL (vLLM's Qwen3-ASR style); the
  answer's `language X<asr_text>` prefix is removed before scoring.
Everything is bounded: a fixed number of requests per level, each with a deadline.
Request bodies are built before the clocks start, so the client costs little inside them.
"""

from __future__ import annotations

import asyncio
import base64
import json
import mimetypes
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from medasr.bench.results import accuracy_table, environment, percentiles, rate
from medasr.bench.workload import Clip, Workload, cycle
from medasr.errors import UserError

ENDPOINTS = {"transcriptions": "/v1/audio/transcriptions", "chat": "/v1/chat/completions"}
DETAIL_CHARS = 300  # of the first error message kept per kind


@dataclass
class ServeConfig:
    url: str
    endpoint: str = "transcriptions"
    concurrency: Sequence[int] = (1, 8, 32, 128)
    requests: int | None = None  # per level (default: one per clip)
    stream: bool = False
    model: str | None = None  # default: the first id /v1/models lists
    api_key: str | None = None
    timeout_s: float = 600.0  # per request
    warmup: int = 2  # requests sent one by one before the first level, not counted

    @property
    def base(self) -> str:
        return self.url.rstrip("/").removesuffix("/v1")


@dataclass
class Outcome:
    clip: int
    ok: bool
    latency: float
    ttft: float | None = None
    text: str | None = None
    error: str | None = None  # a short kind: "HTTP 429", "ReadTimeout", ...
    detail: str | None = None


class Client:
    """Sends one clip to one endpoint and reads the answer (plain or streamed)."""

    def __init__(self, cfg: ServeConfig, model: str, clips: list[Clip]):
        self.cfg, self.model = cfg, model
        self.path = ENDPOINTS[cfg.endpoint]
        self.bodies = [self._body(c) for c in clips]

    def _body(self, clip: Clip) -> dict:
        audio = clip.payload()
        mime = mimetypes.guess_type(clip.name)[0] or "audio/wav"
        if self.cfg.endpoint == "transcriptions":
            form = {"model": self.model, "response_format": "json"}
            if self.cfg.stream:
                form["stream"] = "true"
            return {"files": {"file": (clip.name, audio, mime)}, "data": form}
        url = f"data:{mime};base64," + base64.b64encode(audio).decode()
        message = {"role": "user", "content": [{"type": "audio_url", "audio_url": {"url": url}}]}
        payload = {"model": self.model, "messages": [message], "stream": self.cfg.stream, "temperature": 0.0}
        return {"content": json.dumps(payload).encode(), "headers": {"content-type": "application/json"}}

    async def send(self, http, index: int) -> Outcome:
        t0 = time.perf_counter()
        try:
            if self.cfg.stream:
                return await self._streamed(http, index, t0)
            r = await http.post(self.path, **self.bodies[index])
            if r.status_code != 200:
                return _failed(index, t0, f"HTTP {r.status_code}", r.text)
            return Outcome(index, True, time.perf_counter() - t0, text=self._text(r.json()))
        except Exception as err:
            return _failed(index, t0, type(err).__name__, str(err))

    async def _streamed(self, http, index: int, t0: float) -> Outcome:
        parts: list[str] = []
        final, ttft, ended = None, None, False
        async with http.stream("POST", self.path, **self.bodies[index]) as r:
            if r.status_code != 200:
                return _failed(index, t0, f"HTTP {r.status_code}", (await r.aread()).decode(errors="replace"))
            async for line in r.aiter_lines():
                if not line.startswith("data:"):
                    continue
                data = line[5:].strip()
                if data == "[DONE]":
                    ended = True
                    break
                event = json.loads(data)
                if "error" in event:
                    return _failed(index, t0, "stream error", json.dumps(event["error"]))
                if event.get("type") == "transcript.text.done":
                    final, ended = event.get("text", ""), True
                    continue
                piece = event.get("delta") if event.get("type") == "transcript.text.delta" else _chunk_text(event)
                if piece:
                    ttft = ttft if ttft is not None else time.perf_counter() - t0
                    parts.append(piece)
        if not ended:  # neither a done event nor [DONE]: the answer may be cut
            return _failed(index, t0, "stream ended early", "".join(parts))
        text = final if final is not None else "".join(parts)
        return Outcome(index, True, time.perf_counter() - t0, ttft, _strip_prefix(text))

    def _text(self, answer: dict) -> str:
        if self.cfg.endpoint == "transcriptions":
            return answer["text"]
        return _strip_prefix(answer["choices"][0]["message"]["content"] or "")


def _chunk_text(event: dict) -> str | None:
    choices = event.get("choices") or [{}]
    return (choices[0].get("delta") or {}).get("content")


def _strip_prefix(text: str) -> str:
    from medasr.data import split_answer_prefix

    return split_answer_prefix(text)[0].strip()


def _failed(index: int, t0: float, kind: str, detail: str) -> Outcome:
    return Outcome(index, False, time.perf_counter() - t0, error=kind, detail=detail[:DETAIL_CHARS])


# ---------------------------------------------------------------------------------------------- levels


def _http(cfg: ServeConfig, connections: int):
    import httpx2 as httpx  # the HTTP client openai and huggingface_hub depend on

    headers = {"Authorization": f"Bearer {cfg.api_key}"} if cfg.api_key else {}
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    timeout = httpx.Timeout(cfg.timeout_s, connect=min(30.0, cfg.timeout_s))
    return httpx.AsyncClient(base_url=cfg.base, headers=headers, limits=limits, timeout=timeout)


async def _level(
    client: Client, cfg: ServeConfig, clips: list[Clip], concurrency: int, n: int
) -> tuple[float, list[Outcome]]:
    todo = cycle(clips, n)
    outcomes: list[Outcome] = []

    async def worker(http) -> None:
        for i, _ in todo:  # a shared iterator: each request is taken by exactly one worker
            outcomes.append(await client.send(http, i % len(clips)))

    async with _http(cfg, concurrency) as http:
        t0 = time.perf_counter()
        await asyncio.gather(*(worker(http) for _ in range(min(concurrency, n))))
        return time.perf_counter() - t0, outcomes


async def discover_model(cfg: ServeConfig) -> str:
    """The model id to send: --model, else the first one /v1/models lists."""
    import httpx2 as httpx

    async with _http(cfg, 1) as http:
        try:
            r = await http.get("/v1/models", timeout=30)
        except (httpx.HTTPError, OSError) as err:
            raise UserError(f"cannot reach {cfg.base}: {type(err).__name__}: {err}") from None
    if r.status_code == 401:
        raise UserError(f"{cfg.base} refused the API key (HTTP 401): pass --api-key")
    if cfg.model:
        return cfg.model
    try:
        return r.json()["data"][0]["id"]
    except (ValueError, KeyError, IndexError, TypeError):
        raise UserError(
            f"{cfg.base}/v1/models answered HTTP {r.status_code} without a model id: pass --model"
        ) from None


def summarise(concurrency: int, wall: float, outcomes: list[Outcome], clips: list[Clip], stream: bool) -> dict:
    ok = [o for o in outcomes if o.ok]
    audio = sum(clips[o.clip].duration for o in ok)
    errors = Counter(o.error for o in outcomes if not o.ok)
    details = {}
    for o in outcomes:
        if not o.ok:
            details.setdefault(o.error, o.detail)
    return {
        "concurrency": concurrency,
        "clients": min(concurrency, len(outcomes)),
        "total": len(outcomes),
        "success": len(ok),
        "failure": len(outcomes) - len(ok),
        "runtime_s": round(wall, 4),
        "samples_per_s": rate(len(outcomes), wall),
        "audio_s": round(audio, 3),
        "rtfx": rate(audio, wall),
        "latency_s": percentiles([o.latency for o in ok]),
        "ttft_s": percentiles([o.ttft for o in ok if o.ttft is not None]) if stream else None,
        "errors": dict(errors),
        "error_examples": details,
    }


async def _run(cfg: ServeConfig, workload: Workload, accuracy: str | None, log) -> dict:
    if cfg.endpoint not in ENDPOINTS:
        raise UserError(f"unknown endpoint {cfg.endpoint!r}: use transcriptions or chat")
    if not cfg.concurrency or min(cfg.concurrency) < 1:
        raise UserError("--concurrency needs positive integers, e.g. 1,8,32,128")
    clips = workload.clips
    model = await discover_model(cfg)
    client = Client(cfg, model, clips)
    n = cfg.requests or len(clips)
    warnings = []
    if cfg.warmup:
        _, warm = await _level(client, cfg, clips, 1, cfg.warmup)
        if not any(o.ok for o in warm):
            warnings.append(f"every warm-up request failed ({warm[0].error}: {warm[0].detail})")
    levels = []
    for c in cfg.concurrency:
        log(f"bench serve: concurrency {c}, {n} requests")
        wall, outcomes = await _level(client, cfg, clips, c, n)
        level = summarise(c, wall, outcomes, clips, cfg.stream)
        if accuracy and workload.has_references:
            hyps = [o.text if o.ok else None for o in outcomes]
            level["accuracy"] = accuracy_table([clips[o.clip].text for o in outcomes], hyps, accuracy)
        levels.append(level)
        if c > n:
            warnings.append(f"concurrency {c} had only {n} requests: at most {n} in flight")
    if accuracy and not workload.has_references:
        warnings.append("no accuracy: the clips have no reference texts")
    return {
        "benchmark": "serve",
        "url": cfg.base,
        "endpoint": cfg.endpoint,
        "stream": cfg.stream,
        "model": model,
        "requests_per_level": n,
        "timeout_s": cfg.timeout_s,
        "warmup_requests": cfg.warmup,
        "workload": workload.summary(),
        "levels": levels,
        "warnings": warnings,
        "environment": environment(),
    }


def run(cfg: ServeConfig, workload: Workload, accuracy: str | None = None, log=None) -> dict:
    """Every concurrency level in turn; accuracy: a normaliser name to add WER per level."""
    return asyncio.run(_run(cfg, workload, accuracy, log or (lambda msg: None)))
