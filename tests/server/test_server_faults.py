"""A real `medasr serve` (tiny model, loopback) against slow clients and joined recordings:
clients that send their headers or body one byte a second are cut off with 408 after the
(short, configured) read timeout while a normal request is answered; a joined MP3 is transcribed
over its whole length."""

from __future__ import annotations

import json
import select
import socket
import threading
import time

import pytest
from conftest import server_metric

from medasr.server.launch import running_server

TIMEOUT_S = 3
SLOW = 50  # clients: half trickle their headers, half their body


@pytest.fixture(scope="module")
def server(tiny_model):
    try:
        import fastapi  # noqa: F401  (the server's own packages, needed by the child process)
    except ImportError as err:
        pytest.fail(f"the server tests need the {err.name!r} package: pip install -e '.[test]'")
    args = ["--model", str(tiny_model["transformers"]), "--device", "cpu", "--max-new-tokens", "4", "--vad", "energy",
            "--read-timeout-s", str(TIMEOUT_S)]  # fmt: skip
    with running_server(args) as base:
        yield base


def _trickle(port: int, what: str, outcome: dict, i: int) -> None:
    """Send a request one byte a second; note what the server answered and how much we had sent."""
    if what == "headers":
        request = b"POST /v1/audio/transcriptions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: multipart/form-data; boundary=b\r\n"
    else:
        head = b"POST /v1/audio/transcriptions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: multipart/form-data; boundary=b\r\n"
        request = head + b"Content-Length: 5000\r\n\r\n--b\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.wav\"\r\n\r\n"
    with socket.create_connection(("127.0.0.1", port)) as s:
        if what == "body":
            s.sendall(request[: request.index(b"\r\n\r\n") + 4])  # headers at once, then the body slowly
            request = request[request.index(b"\r\n\r\n") + 4 :]
        answer, sent, closed = b"", 0, False
        while sent < len(request) and not closed:
            try:
                s.send(request[sent : sent + 1])
                sent += 1
            except OSError:
                break
            while select.select([s], [], [], 1.0)[0]:  # a second between bytes, reading meanwhile
                try:
                    chunk = s.recv(65536)
                except ConnectionResetError:  # our next byte met the closed socket
                    chunk = b""
                if not chunk:
                    closed = True
                    break
                answer += chunk
        outcome[i] = (what, answer, sent, len(request), closed)


def test_slow_clients_are_cut_off_while_a_normal_request_is_answered(server, speech_clips):
    import openai

    port = int(server.rsplit(":", 1)[1])
    outcome: dict = {}
    threads = [threading.Thread(target=_trickle, args=(port, "headers" if i % 2 else "body", outcome, i)) for i in range(SLOW)]
    for t in threads:
        t.start()
    # all slow bodies are being read (their requests admitted), and meanwhile a normal client is served
    while server_metric(server, "medasr_reading_requests") < SLOW // 2:
        assert not outcome, "a slow client was cut off before all of them had started"
        time.sleep(0.05)
    client = openai.OpenAI(base_url=server + "/v1", api_key="none", max_retries=0, timeout=120)
    with speech_clips[0].open("rb") as f:
        answered = client.audio.transcriptions.create(model="", file=f)
    assert isinstance(answered.text, str)
    for t in threads:
        t.join(60)
    assert len(outcome) == SLOW
    for what, answer, sent, total, closed in outcome.values():
        assert sent < total and closed, (what, sent, total)  # cut off long before it was done, connection closed
        status, _, body = answer.partition(b"\r\n\r\n")
        assert status.startswith(b"HTTP/1.1 408"), answer[:200]
        error = json.loads(body)["error"]
        assert error["code"] == "request_timeout" and f"{what} did not arrive within {TIMEOUT_S} s" in error["message"]
    # the slots are free again: nothing is being read, every slow body was counted as a timeout
    assert server_metric(server, "medasr_reading_requests") == 0
    assert server_metric(server, "medasr_read_timeouts_total") == SLOW // 2
    with speech_clips[1].open("rb") as f:
        assert isinstance(client.audio.transcriptions.create(model="", file=f).text, str)


def test_joined_mp3_is_transcribed_over_its_whole_length(server, mp3s):
    import openai

    client = openai.OpenAI(base_url=server + "/v1", api_key="none", max_retries=0, timeout=300)
    r = client.audio.transcriptions.create(model="", file=("joined.mp3", mp3s["joined"].read_bytes()), response_format="verbose_json")
    assert r.duration == pytest.approx(33.07, abs=0.06)
    assert r.segments and max(s.end for s in r.segments) > 30.0  # the second recording is heard
