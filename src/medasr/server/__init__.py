"""`medasr serve`: an OpenAI-compatible transcription server with dynamic batching.

    from medasr.server import ServerConfig, create_app
    app = create_app(ServerConfig(model="demo"))   # any ASGI server can run it

Needs the `fastapi`, `uvicorn`, `python-multipart` and `prometheus_client` packages; they are
imported on first use, so `medasr.server.launch` and `urls` work without them.
"""

from __future__ import annotations

__all__ = ["ServerConfig", "create_app"]


def __getattr__(name: str):
    if name == "create_app":
        from medasr.server.app import create_app

        return create_app
    if name == "ServerConfig":
        from medasr.server.config import ServerConfig

        return ServerConfig
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
