"""A WebSocket client that writes and never reads (tests/server/test_realtime_faults.py and
bench_abuse.py): the realtime endpoint's hostile peer, over a bare socket."""

from __future__ import annotations

import base64
import os
import socket
from urllib.parse import urlparse

import numpy as np


class RawClient:
    """A WebSocket client over a bare socket: it writes frames and reads nothing after the
    handshake (a tiny receive buffer), as a stalled or hostile client does."""

    def __init__(self, base: str, headers: dict[str, str] | None = None):
        url = urlparse(base)
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        self.sock.settimeout(10)
        self.sock.connect((url.hostname, url.port))
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall((f"GET /v1/realtime?intent=transcription HTTP/1.1\r\nHost: {url.netloc}\r\nUpgrade: websocket\r\n"
                           f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
                           + "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items()) + "\r\n").encode())  # fmt: skip
        head = b""
        while not head.endswith(b"\r\n\r\n"):  # byte by byte: nothing after the headers is read
            head += self.sock.recv(1)
        assert head.startswith(b"HTTP/1.1 101"), head

    def send(self, text: str) -> bool:
        """Send one masked text frame; False once the server has cut the connection."""
        payload = text.encode("utf-8", "surrogatepass")
        n = len(payload)
        size = bytes([0x80 | n]) if n < 126 else bytes([0x80 | 126]) + n.to_bytes(2, "big") if n < 65536 else bytes([0x80 | 127]) + n.to_bytes(8, "big")
        mask = os.urandom(4)
        body = (np.frombuffer(payload, np.uint8) ^ np.resize(np.frombuffer(mask, np.uint8), n)).tobytes()
        try:
            self.sock.sendall(b"\x81" + size + mask + body)
            return True
        except OSError:  # reset, broken pipe, or a send that can no longer go out
            return False

    def close(self) -> None:
        self.sock.close()
