"""Run `medasr serve` in a child process on a free loopback port (tests and benchmarks)."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def running_server(args: list[str], ready_timeout_s: float = 180.0, env: dict | None = None) -> Iterator[str]:
    """Start `medasr serve ARGS` on 127.0.0.1, wait until /ready answers 200, yield its base URL."""
    port = free_port()
    log = tempfile.NamedTemporaryFile("w+", prefix="medasr-serve-", suffix=".log", delete=False)  # noqa: SIM115 (lives as long as the server)
    cmd = [sys.executable, "-m", "medasr", "serve", "--host", "127.0.0.1", "--port", str(port), *args]
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})})
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + ready_timeout_s
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"medasr serve exited with {proc.returncode}:\n{_tail(log.name)}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"medasr serve was not ready after {ready_timeout_s:.0f} s:\n{_tail(log.name)}")
            try:
                with urllib.request.urlopen(base + "/ready", timeout=2) as r:
                    if r.status == 200:
                        break
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.2)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
        os.unlink(log.name)


def _tail(path: str, n: int = 4000) -> str:
    with open(path, errors="replace") as f:
        return f.read()[-n:]
