"""`GET /v1/realtime?intent=transcription` as clients see it: a real `medasr serve` on loopback,
a real WebSocket, the official `openai` client unmodified (and the `websockets` package where a
browser's handshake is needed). The demo model gives real words; the tiny model serves the
limits, where words do not matter."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import re
import time

import httpx2 as httpx
import numpy as np
import pytest
import soundfile as sf

from medasr.audio.pcm import to_pcm16
from medasr.server.launch import running_server

try:
    import openai
    import websockets
except ImportError as err:
    MISSING: str | None = err.name
else:
    MISSING = None

KEY = "rt-key-0123456789"
RATE = 16000
CHUNK = 1600  # 100 ms
# One torch thread per process: servers here run decodes, speech detection and the test's own
# work side by side, and on a busy 2-core machine two-thread decodes were ~18x slower.
ONE_THREAD = {"OMP_NUM_THREADS": "1"}


@pytest.fixture(autouse=True)
def _packages():
    if MISSING:
        pytest.fail(f"the realtime tests need the {MISSING!r} package: pip install -e '.[test]' (openai[realtime])")


@pytest.fixture(scope="module")
def consult(tmp_path_factory, speech_clips) -> np.ndarray:
    """Two sentences with pauses over faint noise, as a 16-bit WAV would hold them (16 kHz)."""
    from medasr.audio.decode import load_audio

    rng = np.random.default_rng(0)
    parts = [np.zeros(RATE // 2, np.float32)]
    for clip in (speech_clips[0], speech_clips[1]):
        parts += [load_audio(clip).samples, np.zeros(int(1.2 * RATE), np.float32)]
    signal = np.concatenate(parts) + rng.normal(0, 1e-3, sum(map(len, parts))).astype(np.float32)
    path = tmp_path_factory.mktemp("rt") / "consult.wav"
    sf.write(path, np.clip(signal, -1, 1), RATE, subtype="PCM_16")
    return load_audio(path).samples  # exactly the samples `medasr transcribe` reads from that file


@pytest.fixture(scope="module")
def server():
    args = ["--model", "demo", "--device", "cpu", "--api-key", KEY, "--served-model-name", "demo", "--max-upload-mb", "0.25",
            "--realtime-max-sessions", "4"]  # fmt: skip
    with running_server(args, env=ONE_THREAD) as base:
        yield base


@pytest.fixture(scope="module")
def offline():
    import torch

    from medasr.transcribe import load_model

    asr = load_model("demo", device="cpu")

    def transcribe(samples: np.ndarray) -> str:
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            return asr.transcribe((samples, RATE), language="en")[0].text
        finally:
            torch.set_num_threads(threads)

    return transcribe


def _client(base: str, key: str = KEY):
    return openai.AsyncOpenAI(base_url=base + "/v1", api_key=key, max_retries=0)


def _b64(samples: np.ndarray) -> str:
    return base64.b64encode(to_pcm16(samples)).decode()


async def _until(conn, stop, timeout: float = 60.0) -> list:
    """Events until `stop(event)` is true (that one included)."""
    out = []

    async def read():
        while True:
            e = await conn.recv()
            out.append(e)
            if stop(e):
                return

    await asyncio.wait_for(read(), timeout)
    return out


def run(coro):
    return asyncio.run(coro)


# ---------------------------------------------------------------- the happy path


def test_official_client_streams_a_wav_and_finals_equal_offline(server, consult, offline):
    async def main():
        async with _client(server).realtime.connect(extra_query={"intent": "transcription"}) as conn:
            first = await conn.recv()
            assert first.type == "session.created" and first.session.type == "transcription"
            await conn.session.update(session={"type": "transcription", "audio": {"input": {
                "format": {"type": "audio/pcm", "rate": RATE}, "transcription": {"model": "demo", "language": "en"},
                "turn_detection": {"type": "server_vad", "threshold": 0.5, "prefix_padding_ms": 300, "silence_duration_ms": 500},
            }}})  # fmt: skip
            events = []
            reader = asyncio.create_task(_collect(conn, events))
            for i in range(0, len(consult), CHUNK):  # twice real time: partial decodes happen as they would live
                await conn.input_audio_buffer.append(audio=_b64(consult[i : i + CHUNK]))
                await asyncio.sleep(0.05)
            await conn.input_audio_buffer.commit()  # anything still open (the tail is silence: an error says so)
            await _settled(events)
            reader.cancel()
            return first, events

    first, events = run(main())
    kinds = [e.type for e in events]
    assert kinds[0] == "session.updated"
    assert events[0].session.audio.input.format.rate == RATE and events[0].session.audio.input.turn_detection.silence_duration_ms == 500
    ids = [first.event_id] + [e.event_id for e in events]
    assert all(ids) and len(set(ids)) == len(ids)

    committed = [e for e in events if e.type == "input_audio_buffer.committed"]
    completed = [e for e in events if e.type.endswith("transcription.completed")]
    started = {e.item_id: e.audio_start_ms for e in events if e.type == "input_audio_buffer.speech_started"}
    stopped = {e.item_id: e.audio_end_ms for e in events if e.type == "input_audio_buffer.speech_stopped"}
    assert len(committed) == 2, kinds  # one utterance per sentence, closed by the pauses
    assert [e.item_id for e in completed] == [e.item_id for e in committed]  # one final each, in order
    assert committed[0].previous_item_id is None and committed[1].previous_item_id == committed[0].item_id
    assert any(e.type.endswith("transcription.delta") for e in events)
    for c in completed:
        a, b = started[c.item_id] * RATE // 1000, stopped[c.item_id] * RATE // 1000
        assert c.transcript == offline(consult[a:b])  # finals come from the offline path
        assert c.transcript.strip()
        assert c.usage.type == "duration" and c.usage.seconds == pytest.approx((b - a) / RATE, abs=1e-3)
        deltas = "".join(e.delta for e in events if e.type.endswith("transcription.delta") and e.item_id == c.item_id)
        said, final = deltas.split(), c.transcript.split()
        # append-only: when what was released agrees with the final, the rest of it follows
        assert said == final or said != final[: len(said)], (deltas, c.transcript)
    # the trailing commit found nothing open: an error event, not a broken connection
    assert kinds[-1] == "error" or kinds[-1].endswith("completed")


async def _collect(conn, events: list) -> None:
    with contextlib.suppress(Exception):
        async for e in conn:
            events.append(e)


async def _settled(events: list, timeout: float = 60.0) -> None:
    """Wait until every committed item has its final and the trailing commit was answered."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        committed = {e.item_id for e in events if e.type == "input_audio_buffer.committed"}
        done = {e.item_id for e in events if e.type.endswith(("transcription.completed", "transcription.failed"))}
        answered = any(e.type == "error" for e in events) or len(committed) > 2
        if committed and committed <= done and answered:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"not settled: {[e.type for e in events]}")


def test_beta_session_manual_commit_at_24khz(server, speech_clips):
    """The older beta shape, OpenAI's 24 kHz PCM and no turn detection: the client commits."""
    import soxr

    from medasr.audio.decode import load_audio

    clip = load_audio(speech_clips[1]).samples
    at24 = soxr.resample(clip, RATE, 24000, quality="HQ").astype(np.float32)

    async def main():
        async with _client(server).realtime.connect(extra_query={"intent": "transcription"}) as conn:
            await conn.recv()  # session.created
            await conn.send({"type": "transcription_session.update", "event_id": "u1", "session": {
                "input_audio_format": "pcm16", "input_audio_transcription": {"model": "demo", "language": "en"},
                "turn_detection": None, "include": ["item.input_audio_transcription.logprobs"],
            }})  # fmt: skip
            updated = await conn.recv()
            for i in range(0, len(at24), 4800):
                await conn.input_audio_buffer.append(audio=_b64(at24[i : i + 4800]))
            await conn.input_audio_buffer.commit()
            return updated, await _until(conn, lambda e: e.type.endswith("completed"))

    updated, events = run(main())
    assert updated.type == "transcription_session.updated"
    session = updated.session  # the GA client has no type for this beta event: plain JSON
    assert session["turn_detection"] is None and session["input_audio_format"] == "pcm16"
    kinds = [e.type for e in events]
    assert "input_audio_buffer.speech_started" not in kinds  # no server VAD
    assert kinds[0] == "input_audio_buffer.committed" and kinds[-1].endswith("completed")
    done = events[-1]
    assert done.transcript.strip()
    assert done.usage.seconds == pytest.approx(len(clip) / RATE, abs=0.02)
    assert done.logprobs and all(x.logprob <= 0 for x in done.logprobs)


# ---------------------------------------------------------------- bad input


def test_bad_events_get_errors_and_the_connection_stays_usable(server, speech_clips, offline):
    from medasr.audio.decode import load_audio

    clip = load_audio(speech_clips[0]).samples
    big = base64.b64encode(b"\0" * 300_000).decode()  # over --max-upload-mb 0.25
    bad = [
        ("not json {", "invalid_json", None),
        ('["a list"]', "invalid_json", None),
        ({"type": "response.create", "event_id": "e1"}, "unknown_event_type", "type"),
        ({"type": "input_audio_buffer.append", "event_id": "e2", "audio": "***not base64***"}, "invalid_audio", "audio"),
        ({"type": "input_audio_buffer.append", "event_id": "e3"}, "invalid_value", "audio"),
        ({"type": "input_audio_buffer.append", "event_id": "e4", "audio": big}, "audio_too_large", "audio"),
        ({"type": "input_audio_buffer.commit", "event_id": "e5"}, "input_audio_buffer_commit_empty", None),
        (_update({"format": {"type": "audio/pcmu"}}), "unsupported_audio_format", "session.audio.input.format.type"),
        (_update({"format": {"type": "audio/pcm", "rate": 12345}}), "unsupported_audio_format", "session.audio.input.format.rate"),
        (_update({"transcription": {"model": "gpt-4o-transcribe"}}), "model_not_found", "session.audio.input.transcription.model"),
        (_update({"transcription": {"language": "klingon"}}), "unsupported_language", "session.audio.input.transcription.language"),
        (_update({"turn_detection": {"type": "semantic_vad"}}), "invalid_value", "session.audio.input.turn_detection.type"),
        (_update({"turn_detection": {"type": "server_vad", "threshold": 3}}), "invalid_value", None),
        ({"type": "session.update", "session": {"type": "realtime"}}, "invalid_value", "session.type"),
        ({"type": "transcription_session.update", "session": {"input_audio_format": "g711_ulaw"}}, "unsupported_audio_format", None),
    ]

    async def main():
        async with _client(server).realtime.connect(extra_query={"intent": "transcription"}) as conn:
            await conn.recv()
            answers = []
            for event, _, _ in bad:
                await conn.send_raw(event if isinstance(event, str) else json.dumps(event))
                answers.append(await asyncio.wait_for(conn.recv(), 30))
            # still usable: manual turns at 16 kHz, one clip, one commit
            await conn.session.update(session=_update({"format": {"type": "audio/pcm", "rate": RATE}, "turn_detection": None})["session"])
            assert (await conn.recv()).type == "session.updated"
            for i in range(0, len(clip), CHUNK):
                await conn.input_audio_buffer.append(audio=_b64(clip[i : i + CHUNK]))
            await conn.input_audio_buffer.commit()
            return answers, await _until(conn, lambda e: e.type.endswith("completed"))

    answers, events = run(main())
    for (event, code, param), answer in zip(bad, answers):
        assert answer.type == "error", (event, answer)
        assert answer.error.code == code, (event, answer.error)
        if param:
            assert answer.error.param == param
        assert answer.error.message
        if isinstance(event, dict) and "event_id" in event:
            assert answer.error.event_id == event["event_id"]
    assert events[-1].transcript == offline(clip)  # the whole clip, committed by the client


def _update(audio_input: dict) -> dict:
    return {"type": "session.update", "session": {"type": "transcription", "audio": {"input": audio_input}}}


def test_api_key_header_or_browser_subprotocol(server):
    async def main():
        async with _client(server, key="wrong").realtime.connect(extra_query={"intent": "transcription"}) as conn:
            refused = await conn.recv()
            with pytest.raises(websockets.exceptions.ConnectionClosed) as closed:
                await conn.recv()
        url = server.replace("http", "ws") + "/v1/realtime?intent=transcription"
        async with websockets.connect(url, subprotocols=["realtime", "openai-insecure-api-key." + KEY]) as ws:
            created = json.loads(await ws.recv())
            chosen = ws.subprotocol
        return refused, closed.value, created, chosen

    refused, closed, created, chosen = run(main())
    assert refused.type == "error" and refused.error.code == "invalid_api_key"
    assert closed.rcvd.code == 1008
    assert created["type"] == "session.created"
    assert chosen == "realtime"  # the key is never echoed back


# ---------------------------------------------------------------- limits and faults


@pytest.fixture(scope="module")
def limited(tiny_model):
    args = ["--model", str(tiny_model["transformers"]), "--device", "cpu", "--max-new-tokens", "4",
            "--realtime-max-sessions", "1", "--realtime-idle-timeout-s", "1.5", "--realtime-max-session-s", "4"]  # fmt: skip
    with running_server(args, env=ONE_THREAD) as base:
        yield base


def _gauge(base: str) -> float:
    text = httpx.get(base + "/metrics", timeout=10).text
    return float(re.search(r"^medasr_realtime_sessions (\S+)$", text, re.M).group(1))


def _wait_gauge(base: str, value: float, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while _gauge(base) != value:
        assert time.monotonic() < deadline, f"medasr_realtime_sessions stayed at {_gauge(base)}"
        time.sleep(0.1)


def test_session_limit_disconnect_idle_and_maximum_duration(limited, speech_clips):
    from medasr.audio.decode import load_audio

    speech = np.concatenate([load_audio(speech_clips[3]).samples] * 2)  # ~8 s of speech

    async def main():
        first = await _client(limited).realtime.connect(extra_query={"intent": "transcription"}).enter()
        assert (await first.recv()).type == "session.created"
        await first.session.update(session=_update({"format": {"type": "audio/pcm", "rate": RATE}})["session"])

        async def talk():  # the one session speaks on, in real time: an utterance is open
            for i in range(0, len(speech), CHUNK):
                await first.input_audio_buffer.append(audio=_b64(speech[i : i + CHUNK]))
                await asyncio.sleep(0.1)

        talker = asyncio.create_task(talk())
        kinds = [e.type for e in await _until(first, lambda e: e.type == "input_audio_buffer.speech_started", timeout=20)]
        assert "input_audio_buffer.speech_started" in kinds

        # a second one is refused at once, with a reason, while uploads are still served
        upload = asyncio.create_task(asyncio.to_thread(
            httpx.post, limited + "/v1/audio/transcriptions", files={"file": ("a.wav", speech_clips[0].read_bytes())}, timeout=60
        ))  # fmt: skip
        async with _client(limited).realtime.connect(extra_query={"intent": "transcription"}) as second:
            refused = await second.recv()
            with pytest.raises(websockets.exceptions.ConnectionClosed) as closed:
                await second.recv()
        assert _gauge(limited) == 1  # the first is still there

        # the first client vanishes mid-utterance: its session is freed at once
        talker.cancel()
        await first.close()
        await asyncio.to_thread(_wait_gauge, limited, 0)
        upload = await upload

        # a new session goes idle: it is ended with a reason
        async with _client(limited).realtime.connect(extra_query={"intent": "transcription"}) as idle:
            assert (await idle.recv()).type == "session.created"
            idle_end = await asyncio.wait_for(idle.recv(), 10)
        await asyncio.to_thread(_wait_gauge, limited, 0)

        # one that keeps talking (silence) is ended at its maximum duration
        async with _client(limited).realtime.connect(extra_query={"intent": "transcription"}) as busy:
            assert (await busy.recv()).type == "session.created"
            silence = _b64(np.zeros(4800, np.float32))
            events = []
            reader = asyncio.create_task(_collect(busy, events))
            started = time.monotonic()
            while not events and time.monotonic() - started < 15:
                with contextlib.suppress(Exception):
                    await busy.input_audio_buffer.append(audio=silence)
                await asyncio.sleep(0.2)
            await asyncio.wait_for(reader, 10)
        return refused, closed.value, upload, idle_end, events, time.monotonic() - started

    refused, closed, upload, idle_end, events, lasted = run(main())
    assert refused.type == "error" and refused.error.code == "session_limit_reached"
    assert "at most 1" in refused.error.message and closed.rcvd.code == 1013
    assert upload.status_code == 200
    assert idle_end.type == "error" and idle_end.error.code == "idle_timeout"
    assert [e.type for e in events] == ["error"] and events[0].error.code == "session_expired"
    assert lasted < 12


# ---------------------------------------------------------------- medasr stream


def test_cli_stream_locally_and_against_the_server(server, consult, offline, tmp_path):
    """`medasr stream`: a file locally (JSONL events) and raw PCM from stdin to the server (text
    lines) give the same finals, at the same times, and each equals offline transcription."""
    import subprocess
    import sys

    wav = tmp_path / "consult.wav"
    sf.write(wav, consult, RATE, subtype="PCM_16")
    cmd = [sys.executable, "-m", "medasr", "stream", "--speed", "0", "--language", "en"]
    env = {**os.environ, **ONE_THREAD}
    local = subprocess.run([*cmd, "--model", "demo", "--device", "cpu", "--format", "jsonl", str(wav)],
                           capture_output=True, text=True, timeout=300, check=True, env=env)  # fmt: skip
    remote = subprocess.run([*cmd, "--url", server + "/v1", "--api-key", KEY, "--rate", str(RATE), "-"],
                            input=to_pcm16(consult), capture_output=True, timeout=300, check=True, env=env)  # fmt: skip
    events = [json.loads(line) for line in local.stdout.splitlines()]
    finals = [e for e in events if e["type"] == "completed"]
    assert len(finals) == 2 and [e["item_id"] for e in finals] == [e["item_id"] for e in events if e["type"] == "committed"]
    for e in finals:
        assert e["transcript"]["text"] == offline(consult[round(e["start"] * RATE) : round(e["end"] * RATE)])
    from medasr.cli._live_display import clock

    lines = remote.stdout.decode().splitlines()
    assert lines == [f"[{clock(e['start'])} - {clock(e['end'])}] {e['transcript']['text']}" for e in finals]


def test_cli_stream_errors(server, tmp_path):
    import subprocess
    import sys

    cmd = [sys.executable, "-m", "medasr", "stream"]
    missing = subprocess.run([*cmd, str(tmp_path / "nope.wav")], capture_output=True, text=True, timeout=60, check=False)
    assert missing.returncode == 2 and "no such file" in missing.stderr
    (tmp_path / "a.raw").write_bytes(b"\0\0" * 1600)
    with open(tmp_path / "a.raw", "rb") as pcm:
        refused = subprocess.run([*cmd, "--url", server + "/v1", "--api-key", "wrong", "-"], stdin=pcm,
                                 capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
    assert refused.returncode == 2 and "invalid_api_key" in refused.stderr and "Traceback" not in refused.stderr
