"""The server survives anyone: a real `medasr serve --model demo` on loopback with its limits set
small, driven as an attacker would: malformed events of every kind, prompts far over the context
limit, a raw socket that writes and never reads, one append of many minutes of speech. Each
case checks that the server answers (an `error` event, a 400, a close), stays usable for the
next client, frees what the bad client held and keeps its memory bounded. Loops are bounded in
events or bytes, never in time alone."""

from __future__ import annotations

import asyncio
import base64
import json
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import server_metric

from medasr.audio.decode import load_audio
from medasr.audio.pcm import to_pcm16
from medasr.server.launch import running_server

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
from _raw_ws import RawClient

try:
    import openai
    import websockets
except ImportError as err:
    MISSING: str | None = err.name
else:
    MISSING = None

RATE = 16000
SEND_TIMEOUT_S = 2
CONTEXT_TOKENS = 256
ONE_THREAD = {"OMP_NUM_THREADS": "1"}


@pytest.fixture(autouse=True)
def _packages():
    if MISSING:
        pytest.fail(f"these tests need the {MISSING!r} package: pip install -e '.[test]'")


@pytest.fixture(scope="module")
def server():
    args = ["--model", "demo", "--device", "cpu", "--served-model-name", "demo", "--max-upload-mb", "8",
            "--realtime-max-sessions", "2", "--realtime-idle-timeout-s", "30", "--realtime-send-timeout-s", str(SEND_TIMEOUT_S),
            "--realtime-send-queue", "64", "--max-context-tokens", str(CONTEXT_TOKENS)]  # fmt: skip
    with running_server(args, env=ONE_THREAD) as base:
        yield base


def _ws_url(base: str) -> str:
    return base.replace("http", "ws") + "/v1/realtime?intent=transcription"


def _wait_sessions(base: str, value: float, within_s: float) -> float:
    """Seconds until medasr_realtime_sessions reads `value` (fails after `within_s`)."""
    started = time.monotonic()
    while server_metric(base, "medasr_realtime_sessions") != value:
        assert time.monotonic() - started < within_s, f"medasr_realtime_sessions stayed at {server_metric(base, 'medasr_realtime_sessions')}"
        time.sleep(0.1)
    return time.monotonic() - started


def _update(transcription: dict | None = None, **audio_input) -> str:
    if transcription is not None:
        audio_input["transcription"] = transcription
    return json.dumps({"type": "session.update", "session": {"type": "transcription", "audio": {"input": audio_input}}})


async def _next(ws, timeout: float = 30) -> dict:
    return json.loads(await asyncio.wait_for(ws.recv(), timeout))


# ---------------------------------------------------------------- every malformed event answered

MALFORMED = [  # (frame, error code, param)
    ('{"type": ["x"]}', "invalid_value", "type"),
    ('{"type": {"a": 1}}', "invalid_value", "type"),
    ('{"type": null}', "invalid_value", "type"),
    ("[" * 100_000 + "]" * 100_000, "invalid_json", None),  # nested 100,000 deep
    ('{"a": [' + "1," * 5_000 + "1]}", "invalid_json", None),  # too many values
    ('{"type": "bogus", "event_id": "\\ud800"}', "invalid_value", "event_id"),  # a lone surrogate
    (_update({"prompt": "metoprolol SURROGATE twice daily"}).replace("SURROGATE", "\\udc80"), "invalid_value",
     "session.audio.input.transcription.prompt"),
    ("9" * 5_000, "invalid_json", None),  # an integer Python refuses to convert
    ('"just a string"', "invalid_json", None),
    ('{"type": "session.update", "session": NaN}', "invalid_value", "session"),
    ('{"type": "input_audio_buffer.append", "audio": 5}', "invalid_value", "audio"),
    ('{"type": "' + "x" * 100_000 + '"}', "unknown_event_type", "type"),
    (_update({"prompt": "atorvastatin " * 30_000}), "context_too_long", "session.audio.input.transcription.prompt"),
    (json.dumps({"type": "transcription_session.update", "session": {"input_audio_transcription": {"prompt": "ramipril " * 300}}}),
     "context_too_long", "session.input_audio_transcription.prompt"),
]  # fmt: skip


def test_every_malformed_event_gets_an_error_and_the_connection_goes_on(server, speech_clips):
    clip = load_audio(speech_clips[0]).samples
    rss = server_metric(server, "process_resident_memory_bytes")

    async def main():
        async with websockets.connect(_ws_url(server), max_size=None) as ws:
            assert (await _next(ws))["type"] == "session.created"
            answers = []
            for frame, _, _ in MALFORMED:
                await ws.send(frame)
                answers.append(await _next(ws))
            await ws.send(b"\xff\xfe not utf-8")  # a binary frame that is not text
            answers.append(await _next(ws))
            # the same connection still works: a prompt within the limit, manual turns, one clip
            await ws.send(_update({"prompt": "metoprolol, apixaban"}, format={"type": "audio/pcm", "rate": RATE}, turn_detection=None))
            updated = await _next(ws)
            await ws.send(json.dumps({"type": "input_audio_buffer.append", "audio": base64.b64encode(to_pcm16(clip)).decode()}))
            await ws.send(json.dumps({"type": "input_audio_buffer.commit"}))
            events = [await _next(ws, 120)]
            while not events[-1]["type"].endswith(("completed", "failed")):
                events.append(await _next(ws, 120))
            return answers, updated, events

    answers, updated, events = asyncio.run(main())
    for (frame, code, param), answer in zip(MALFORMED, answers):
        assert answer["type"] == "error", (frame[:80], answer)
        assert answer["error"]["code"] == code, (frame[:80], answer["error"])
        if param:
            assert answer["error"]["param"] == param, (frame[:80], answer["error"])
        assert len(answer["error"]["message"]) < 500  # no echo of a client's megabytes
    assert answers[-1]["error"]["code"] == "invalid_json"
    assert updated["type"] == "session.updated"
    assert updated["session"]["audio"]["input"]["transcription"]["prompt"] == "metoprolol, apixaban"
    assert events[-1]["type"] == "conversation.item.input_audio_transcription.completed" and events[-1]["transcript"]
    assert server_metric(server, "process_resident_memory_bytes") - rss < 200e6  # a 30,000-word prompt costs nothing


def test_a_prompt_over_the_context_limit_is_refused_on_every_route(server, speech_clips):
    client = openai.OpenAI(base_url=server + "/v1", api_key="none", max_retries=0, timeout=120)
    long = "apixaban " * 3_000  # ~3,000 tokens, over the limit of 256
    with open(speech_clips[0], "rb") as f, pytest.raises(openai.BadRequestError) as upload:
        client.audio.transcriptions.create(model="demo", file=f, prompt=long)
    audio = base64.b64encode(speech_clips[0].read_bytes()).decode()
    messages = [{"role": "system", "content": long},
                {"role": "user", "content": [{"type": "input_audio", "input_audio": {"data": audio, "format": "wav"}}]}]  # fmt: skip
    with pytest.raises(openai.BadRequestError) as chat:
        client.chat.completions.create(model="demo", messages=messages)
    for err, param in ((upload, "prompt"), (chat, "messages")):
        assert err.value.body["code"] == "context_too_long" and err.value.body["param"] == param
        assert f"limit of {CONTEXT_TOKENS} tokens" in err.value.body["message"]
    with open(speech_clips[0], "rb") as f:  # a prompt within the limit is served
        assert client.audio.transcriptions.create(model="demo", file=f, prompt="apixaban, metoprolol").text


# ---------------------------------------------------------------- clients that never read


def test_a_flooding_client_that_never_reads_is_cut_off_and_freed(server):
    """Malformed events as fast as it can write, never a read: the server's answers fill the
    send queue (or wait past the send timeout), the client is cut off, its slot freed, and the
    server's memory stays where it was."""
    _wait_sessions(server, 0, 30)
    rss = server_metric(server, "process_resident_memory_bytes")
    flood = RawClient(server)
    _wait_sessions(server, 1, 10)
    sent = 0
    while sent < 200_000 and flood.send('{"type": "bogus"}'):  # ~200 bytes of error each; bounded in events
        sent += 1
    _wait_sessions(server, 0, 10)  # freed by the server, before this client lets go
    flood.close()
    assert sent < 200_000, "the server never cut off a client that does not read"
    assert server_metric(server, "process_resident_memory_bytes") - rss < 100e6


def test_a_client_that_fills_its_socket_and_goes_quiet_is_closed_in_time(server):
    """The case that kept its slot for good: a burst of errors it never reads, then silence. The
    idle timer (30 s here) would be too late; the send timeout (2 s) is what closes it."""
    _wait_sessions(server, 0, 30)
    quiet = RawClient(server)
    _wait_sessions(server, 1, 10)
    for _ in range(30_000):  # ~6 MB of error events: more than the socket buffers hold
        if not quiet.send('{"type": "bogus"}'):
            break
    took = _wait_sessions(server, 0, SEND_TIMEOUT_S + 15)
    quiet.close()
    assert took < SEND_TIMEOUT_S + 15

    async def fresh():  # the slot is free for the next client
        async with websockets.connect(_ws_url(server)) as ws:
            return (await _next(ws))["type"]

    assert asyncio.run(fresh()) == "session.created"


# ---------------------------------------------------------------- one greedy append


def test_one_greedy_append_keeps_at_most_eight_finals_waiting(server, speech_clips):
    """Two minutes of speech in one append: it is read in parts, and never more than 8
    utterances wait for their finals; every utterance still gets its final, in order."""
    pause = np.zeros(int(0.8 * RATE), np.float32)
    sentences = [load_audio(c).samples for c in speech_clips]
    audio = np.concatenate([x for _ in range(40) for s in sentences[:3] for x in (s, pause)])[: 120 * RATE]

    async def main():
        async with websockets.connect(_ws_url(server), max_size=None) as ws:
            await _next(ws)
            await ws.send(_update(format={"type": "audio/pcm", "rate": RATE}, turn_detection={"type": "server_vad", "silence_duration_ms": 300}))
            assert (await _next(ws))["type"] == "session.updated"
            await ws.send(json.dumps({"type": "input_audio_buffer.append", "audio": base64.b64encode(to_pcm16(audio)).decode()}))
            committed, completed, waiting = [], [], []
            while not committed or len(completed) < len(committed) or len(committed) < 20:
                e = await _next(ws, 120)
                if e["type"] == "input_audio_buffer.committed":
                    committed.append(e["item_id"])
                elif e["type"] == "conversation.item.input_audio_transcription.completed":
                    completed.append(e["item_id"])
                waiting.append(len(committed) - len(completed))
            return committed, completed, waiting

    committed, completed, waiting = asyncio.run(main())
    assert len(committed) >= 20
    assert max(waiting) <= 8
    assert completed == committed[: len(completed)]
