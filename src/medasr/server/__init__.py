"""`medasr serve`: an OpenAI-compatible transcription server with dynamic batching.

    from medasr.server import ServerConfig, create_app
    app = create_app(ServerConfig(model="demo"))   # any ASGI server can run it

Needs the `fastapi`, `uvicorn`, `python-multipart` and `prometheus_client` packages.
"""

from medasr.server.app import create_app
from medasr.server.config import ServerConfig

__all__ = ["ServerConfig", "create_app"]
