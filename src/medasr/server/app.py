"""The FastAPI application: routes, auth, limits, metrics and the lifecycle of the batch worker."""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response

from medasr.pipeline.engine import Engine
from medasr.server.api import router
from medasr.server.batcher import Batcher
from medasr.server.config import ServerConfig
from medasr.server.errors import ApiError, install_handlers
from medasr.server.metrics import Metrics
from medasr.server.page import PAGE
from medasr.server.realtime import ABORT, Hub
from medasr.server.realtime import endpoint as realtime_endpoint
from medasr.server.timeouts import ReadDeadline


def load_engine(config: ServerConfig) -> Engine:
    from medasr.model.checkpoint import load

    loaded = load(config.model, device=config.device, dtype=config.dtype, quantize=config.quantize)
    engine = Engine(loaded, batch_size=config.max_batch_size, max_context_tokens=config.max_context_tokens)
    engine.compile = config.compile
    return engine


class _CountRequests:
    """Pure ASGI middleware (no body buffering, no broken disconnects): count and time requests."""

    def __init__(self, app, metrics: Metrics):
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started = time.perf_counter()
        status = 500

        async def send_and_note(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_note)
        finally:
            route = scope.get("route")
            endpoint = getattr(route, "path", None) or "unmatched"  # route templates only: bounded labels
            self.metrics.requests.labels(endpoint, str(status)).inc()
            self.metrics.latency.labels(endpoint).observe(time.perf_counter() - started)


class _Abortable:
    """Pure ASGI middleware, outermost: gives each WebSocket scope a way to drop its TCP
    connection at once (`realtime.ABORT`). ASGI can only close gracefully, and a graceful close
    waits for a client that never reads: the server's `send` here is still the ASGI server's own
    (uvicorn's protocol, whose transport can abort); wherever it is not, nothing is added."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] == "websocket":
            transport = getattr(getattr(send, "__self__", None), "transport", None)
            if callable(getattr(transport, "abort", None)):
                scope[ABORT] = transport.abort
        await self.app(scope, receive, send)


def create_app(
    config: ServerConfig,
    engine_loader: Callable[[], Engine] | None = None,
    on_load_error: Callable[[str], None] | None = None,
    decoder_factory: Callable[[int], object] | None = None,
) -> FastAPI:
    """The app; the model loads in the worker thread at start-up (/ready says when it is done).
    engine_loader and decoder_factory replace the model and its decoder (stand-ins for tests)."""
    config.check()
    metrics = Metrics.create()

    def load() -> Engine:
        try:
            engine = (engine_loader or (lambda: load_engine(config)))()
            if config.aligner:  # given: loaded with the model (the default one waits for a request for words)
                batcher.words.load()
            return engine
        except Exception as err:
            if on_load_error:
                on_load_error(str(err))
            raise

    batcher = Batcher(config, metrics, load, decoder_factory)

    @asynccontextmanager
    async def lifespan(_: FastAPI):
        batcher.start()
        yield
        batcher.stop()

    # No /docs: Swagger UI loads from a CDN, and the API is OpenAI's, documented elsewhere.
    app = FastAPI(title="medasr", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.config = config
    app.state.batcher = batcher
    app.state.metrics = metrics
    app.state.started = time.time()
    app.state.realtime = Hub(config, metrics.realtime_sessions)
    install_handlers(app)
    app.include_router(router)
    app.add_middleware(ReadDeadline, timeout_s=config.read_timeout_s, metrics=metrics)  # inside the count: 408s are counted
    app.add_api_websocket_route("/v1/realtime", realtime_endpoint)  # OpenAI's Realtime transcription
    app.add_middleware(_CountRequests, metrics=metrics)
    app.add_middleware(_Abortable)

    @app.get("/health")
    async def health() -> JSONResponse:
        return JSONResponse({"status": "ok"})

    @app.get("/ready")
    async def ready() -> JSONResponse:
        if batcher.ready:
            return JSONResponse({"status": "ready", "model": config.model_id})
        message = batcher.load_error or "the model is still loading"
        raise ApiError(503, message, code="model_not_ready", headers={"Retry-After": "5"})

    @app.get("/metrics")
    async def prometheus() -> Response:
        body, content_type = metrics.render()
        return Response(body, media_type=content_type)

    @app.get("/", response_class=HTMLResponse)
    async def page(_: Request) -> HTMLResponse:
        return HTMLResponse(PAGE)

    return app
