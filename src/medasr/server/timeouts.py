"""Read timeouts: a client has `read_timeout_s` to send a request's headers, then as long again
to send its body; past either it gets 408 and its connection is closed, so slow or stalled
clients cannot hold connections (or the batcher's admission of their request) for ever.

Two layers, one per part of the request:

- `ReadDeadline`, ASGI middleware: while a request's body is arriving, each `receive()` waits at
  most until the body's deadline: the start of the request plus `read_timeout_s`, plus one
  second per `MIN_RATE` bytes received, so that a large upload over a slow link that keeps
  moving is not cut off while a trickle is. Past the deadline the app is told that the client
  disconnected (every body reader handles that already) and `timed_out(scope)` says why, so
  `inputs.read_body` answers 408; if the app answers nothing, the middleware does. Either way
  the answer carries `Connection: close`. Once the body is complete, `receive()` is passed
  through untouched (streamed answers wait on it for the client to leave).
- `protocol(timeout_s)`, a uvicorn HTTP protocol (uvicorn has no limit on headers): from a
  connection's accept, or the first byte of its next request, uvicorn must have handed the
  request to the app within `timeout_s`; else the client gets 408 and the connection is
  closed. A WebSocket handshake is such a request; after the upgrade the timer no longer
  applies.
"""

from __future__ import annotations

import asyncio
import json

MIN_RATE = 64 * 1024  # bytes a second that extend a body's deadline by one second each
TIMED_OUT = "medasr.read_timed_out"  # scope key: the body did not arrive within this many seconds
LINGER_S = 2.0  # after a 408 for late headers, input is read and dropped this long before closing


def timed_out(scope) -> float | None:
    """The read timeout (seconds) when this request's body did not arrive in time, else None."""
    return scope.get(TIMED_OUT)


def error_body(message: str) -> bytes:
    # The shape of server.errors.ApiError's body (not imported: this module stays free of FastAPI)
    return json.dumps({"error": {"message": message, "type": "timeout", "param": None, "code": "request_timeout"}}, separators=(",", ":")).encode()


class ReadDeadline:
    """ASGI middleware: see the module doc. `metrics` (optional) gets the `reading` gauge and
    `read_timeouts` counter of `server.metrics.Metrics`."""

    def __init__(self, app, timeout_s: float, metrics=None, min_rate: float = MIN_RATE):
        self.app = app
        self.timeout_s = timeout_s
        self.metrics = metrics
        self.min_rate = min_rate

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or not _has_body(scope):
            return await self.app(scope, receive, send)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout_s
        state = {"reading": True, "expired": False, "answered": False}
        if self.metrics:
            self.metrics.reading.inc()

        def done_reading() -> None:
            if state["reading"]:
                state["reading"] = False
                if self.metrics:
                    self.metrics.reading.dec()

        async def timed_receive():
            nonlocal deadline
            if not state["reading"]:
                return await receive() if not state["expired"] else {"type": "http.disconnect"}
            try:
                message = await asyncio.wait_for(receive(), max(deadline - loop.time(), 0.0))
            except TimeoutError:
                state["expired"] = True
                scope[TIMED_OUT] = self.timeout_s
                done_reading()
                if self.metrics:
                    self.metrics.read_timeouts.inc()
                return {"type": "http.disconnect"}
            if message["type"] == "http.request":
                deadline += len(message.get("body", b"")) / self.min_rate
                if not message.get("more_body", False):
                    done_reading()
            else:
                done_reading()
            return message

        async def send_closing(message):
            if message["type"] == "http.response.start":
                state["answered"] = True
                if state["expired"]:  # the rest of the body may still trickle in: do not wait for it
                    headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"connection"]
                    message = {**message, "headers": [*headers, (b"connection", b"close")]}
            await send(message)

        try:
            await self.app(scope, timed_receive, send_closing)
        finally:
            done_reading()
        if state["expired"] and not state["answered"]:
            await send_408(send, f"the request body did not arrive within {self.timeout_s:g} s")


async def send_408(send, message: str) -> None:
    body = error_body(message)
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), (b"connection", b"close")]
    await send({"type": "http.response.start", "status": 408, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})


def _has_body(scope) -> bool:
    headers = dict(scope.get("headers") or [])
    length = headers.get(b"content-length", b"").strip()
    return (length.isdigit() and int(length) > 0) or b"chunked" in headers.get(b"transfer-encoding", b"").lower()


def protocol(timeout_s: float, base: type | None = None) -> type:
    """uvicorn's HTTP protocol (`base`, default: what uvicorn picks) with a header timeout."""
    if base is None:
        from uvicorn.protocols.http.auto import AutoHTTPProtocol as base

    class HeaderTimeoutProtocol(base):
        """Also a per-connection wrapper of the app: its call is the moment the headers are done."""

        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self._timer: asyncio.TimerHandle | None = None
            self._in_request = False
            self._lingering = False
            app = self.app

            async def app_of_this_connection(scope, receive, send):
                self._stop_timer()
                self._in_request = True
                try:
                    await app(scope, receive, send)
                finally:
                    self._in_request = False

            self.app = app_of_this_connection

        def connection_made(self, transport) -> None:
            super().connection_made(transport)
            self._start_timer()

        def data_received(self, data: bytes) -> None:
            if self._lingering:
                return  # answered 408: what still trickles in is dropped
            if self._timer is None and not self._in_request:  # the first bytes of the next request
                self._start_timer()
            super().data_received(data)

        def connection_lost(self, exc) -> None:
            self._stop_timer()
            super().connection_lost(exc)

        def _start_timer(self) -> None:
            self._timer = self.loop.call_later(timeout_s, self._headers_timed_out)

        def _stop_timer(self) -> None:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None

        def _headers_timed_out(self) -> None:
            self._timer = None
            transport = self.transport
            if self._in_request or transport.is_closing() or transport.get_protocol() is not self:
                return  # answering, closed, or upgraded to a WebSocket
            body = error_body(f"the request headers did not arrive within {timeout_s:g} s")
            transport.write(
                b"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\nconnection: close\r\n"
                + f"content-length: {len(body)}\r\n\r\n".encode() + body
            )
            # A lingering close: closing with unread bytes from the client would send a reset,
            # which can destroy the answer before the client reads it. Half-close, drop input, close.
            self._lingering = True
            if transport.can_write_eof():
                transport.write_eof()
            self.loop.call_later(LINGER_S, transport.close)

    return HeaderTimeoutProtocol
