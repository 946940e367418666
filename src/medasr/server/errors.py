"""OpenAI-shaped errors: `{"error": {"message", "type", "param", "code"}}` with a 4xx/5xx status."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect

# OpenAI's error types by status; clients switch on the status, people read the type.
_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    404: "not_found_error",
    405: "invalid_request_error",
    408: "timeout",
    413: "invalid_request_error",
    415: "invalid_request_error",
    429: "rate_limit_error",
    503: "service_unavailable",
    504: "timeout",
}


BODY_READ = "medasr.body_read"  # scope flag: the handler has read (or given up on) the request body
DRAIN_FACTOR = 4  # read and drop an unread body up to this many times the upload cap


class ApiError(Exception):
    def __init__(
        self,
        status: int,
        message: str,
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ):
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param
        self.code = code
        self.headers = headers or {}

    def body(self) -> dict:
        kind = _TYPES.get(self.status, "server_error" if self.status >= 500 else "invalid_request_error")
        return {"error": {"message": self.message, "type": kind, "param": self.param, "code": self.code}}

    def response(self) -> JSONResponse:
        return JSONResponse(self.body(), status_code=self.status, headers=self.headers)


async def drain(request: Request) -> None:
    """Read and drop a body nobody read before answering (401, 415, 429, 503, 404).

    Closing a connection with unread data makes the kernel send a reset, which can destroy the
    answer before the client reads it; so a refused upload is read to its end first (bounded).
    """
    if request.scope.get(BODY_READ) or request.method in ("GET", "HEAD", "OPTIONS"):
        return
    request.scope[BODY_READ] = True
    limit = request.app.state.config.max_upload_bytes * DRAIN_FACTOR
    size = 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                break
    except (ClientDisconnect, RuntimeError):  # the client left, or the stream was already consumed
        pass


def install_handlers(app: FastAPI) -> None:
    """Every error the app can raise answers in OpenAI's shape, never as a bare traceback."""

    @app.exception_handler(ApiError)
    async def _api(request: Request, err: ApiError):
        await drain(request)
        return err.response()

    @app.exception_handler(HTTPException)
    async def _http(request: Request, err: HTTPException):
        await drain(request)
        return ApiError(err.status_code, str(err.detail), headers=dict(err.headers or {})).response()

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, err: RequestValidationError):
        first = err.errors()[0] if err.errors() else {}
        param = ".".join(str(x) for x in first.get("loc", ())[1:]) or None
        return ApiError(400, first.get("msg", "invalid request"), param=param).response()

    @app.exception_handler(Exception)
    async def _crash(_: Request, err: Exception):
        return ApiError(500, f"internal error: {type(err).__name__}", code="internal_error").response()
