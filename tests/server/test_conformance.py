"""Nothing from nothing, real scores, limits and model names: the server as OpenAI's and vLLM's
own transcription tests would drive it (a real `medasr serve` on loopback, the official
`openai` client), with the bundled demo model, which left to itself invents a clinical finding
from silence; and the same rules through the Python API and the CLI."""

from __future__ import annotations

import functools
import http.server
import io
import json
import math
import subprocess
import sys
import threading

import numpy as np
import pytest
import soundfile as sf

from medasr.server.launch import running_server

try:
    import openai
except ImportError as err:
    MISSING: str | None = err.name
else:
    MISSING = None

SR = 16000
NAMES = ["medasr-demo", "scribe"]


@pytest.fixture(autouse=True)
def _packages():
    if MISSING:
        pytest.fail(f"these tests need the {MISSING!r} package: pip install -e '.[test]'")


def wav_bytes(samples: np.ndarray) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, samples.astype(np.float32), SR, format="WAV", subtype="PCM_16")
    return buf.getvalue()


@pytest.fixture(scope="module")
def clips(speech_clips, tmp_path_factory) -> dict:
    """Inputs without speech, tiny ones, and speech after a long silence, as files and bytes."""
    from medasr.audio.decode import load_audio

    rng = np.random.default_rng(5)
    speech = load_audio(speech_clips[1]).samples
    out = {
        "silence": np.zeros(5 * SR, np.float32),
        "noise": (rng.standard_normal(30 * SR) * 0.03).astype(np.float32),  # 30 s of white noise, -30 dBFS
        "tiny": np.zeros(int(0.05 * SR), np.float32),
        "late": np.concatenate([np.zeros(20 * SR, np.float32), speech]),  # speech after 20 s of silence
        "speech": speech,
    }
    d = tmp_path_factory.mktemp("conformance")
    files = {}
    for name, samples in out.items():
        files[name] = d / f"{name}.wav"
        files[name].write_bytes(wav_bytes(samples))
    return {"samples": out, "files": files}


@pytest.fixture(scope="module")
def asr():
    from medasr.transcribe import load_model

    return load_model("demo", device="cpu")


@pytest.fixture(scope="module")
def server():
    args = ["--model", "demo", "--device", "cpu", "--served-model-name", *NAMES, "--allow-private-urls"]
    with running_server(args) as base:
        yield base


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=server + "/v1", api_key="unused", max_retries=0, timeout=120)


@pytest.fixture(scope="module")
def audio_host(clips):
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(clips["files"]["silence"].parent))
    handler.log_message = lambda *a: None
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


def upload(client, path, **kw):
    with open(path, "rb") as f:
        return client.audio.transcriptions.create(model=NAMES[0], file=f, **kw)


def chat(client, url: str, **kw):
    return client.chat.completions.create(
        model=NAMES[0], messages=[{"role": "user", "content": [{"type": "audio_url", "audio_url": {"url": url}}]}], **kw
    )


def data_url(path) -> str:
    import base64

    return "data:audio/wav;base64," + base64.b64encode(path.read_bytes()).decode()


# ---------------------------------------------------------------- nothing from nothing


def test_the_demo_model_alone_invents_text_from_silence(asr, clips):
    # why the gate matters: with speech detection off, the model answers silence with a sentence
    ungated = asr.transcribe((clips["samples"]["silence"], SR), vad="none")[0]
    assert ungated.text


@pytest.mark.parametrize("name", ["silence", "noise"])
def test_no_speech_gives_no_text_through_every_path(asr, client, clips, audio_host, name):
    path = clips["files"][name]
    t = asr.transcribe(str(path))[0]
    assert (t.text, t.segments, t.confidence) == ("", [], None)  # nothing was generated
    assert asr.transcribe((clips["samples"][name], SR), vad="energy")[0].text == ""
    assert upload(client, path).text == ""
    verbose = upload(client, path, response_format="verbose_json")
    assert (verbose.text, verbose.segments) == ("", [])
    assert chat(client, data_url(path)).choices[0].message.content == "language None<asr_text>"
    assert chat(client, f"{audio_host}/{path.name}").choices[0].message.content == "language None<asr_text>"
    streamed = "".join(c.choices[0].delta.content or "" for c in chat(client, data_url(path), stream=True))
    assert streamed == "language None<asr_text>"


def test_speech_after_long_silence_is_sent_unchanged(asr, client, clips):
    path = clips["files"]["late"]
    gated = asr.transcribe(str(path))[0]
    assert gated.text and gated.text == asr.transcribe(str(path), vad="none")[0].text  # the gate only decides
    assert upload(client, path).text == gated.text


def test_audio_shorter_than_100_ms_is_refused(asr, client, clips, tmp_path):
    path = clips["files"]["tiny"]
    with pytest.raises(openai.BadRequestError) as err:
        upload(client, path)
    assert err.value.body["code"] == "audio_too_short" and err.value.body["param"] == "file"
    with pytest.raises(openai.BadRequestError) as err:
        chat(client, data_url(path))
    assert err.value.body["code"] == "audio_too_short"
    kept = asr.transcribe([str(path), str(clips["files"]["speech"])], errors="keep")
    assert kept[0].error_code == "audio_too_short" and "ms long" in kept[0].error and kept[1].text
    cli = subprocess.run([sys.executable, "-m", "medasr", "transcribe", "--model", "demo", "--format", "jsonl", str(path),
                          str(clips["files"]["silence"])], capture_output=True, text=True, check=False)  # fmt: skip
    assert cli.returncode == 1 and "tiny.wav" in cli.stderr and "ms long" in cli.stderr
    records = {r["source"].rsplit("/", 1)[-1]: r for r in map(json.loads, cli.stdout.splitlines())}
    assert records["tiny.wav"]["error_code"] == "audio_too_short" and records["tiny.wav"]["text"] == ""
    assert records["silence.wav"]["text"] == "" and "error" not in records["silence.wav"]


# ---------------------------------------------------------------- scores


def test_verbose_json_scores_are_computed(asr, client, clips):
    path = clips["files"]["speech"]
    verbose = upload(client, path, response_format="verbose_json")
    (seg,) = verbose.segments
    lib = asr.transcribe(str(path))[0]
    assert seg.avg_logprob == pytest.approx(lib.segments[0].avg_logprob) and seg.avg_logprob < 0
    assert 0.0 <= seg.no_speech_prob <= 1.0 and seg.no_speech_prob == pytest.approx(lib.segments[0].no_speech_prob)
    assert seg.compression_ratio > 0 and seg.tokens and all(isinstance(x, int) for x in seg.tokens)
    assert seg.tokens == lib.segments[0].tokens and seg.temperature == 0.0
    assert 0.0 < lib.confidence <= 1.0 and lib.to_dict()["confidence"] == lib.confidence


def test_include_logprobs(client, clips):
    path = clips["files"]["speech"]
    plain = upload(client, path)
    scored = upload(client, path, include=["logprobs"])
    assert scored.text == plain.text and getattr(plain, "logprobs", None) is None
    assert scored.logprobs and all(x.logprob <= 0.0 and x.bytes == list(x.token.encode()) for x in scored.logprobs)
    assert "".join(x.token for x in scored.logprobs).strip() == scored.text
    mean = sum(x.logprob for x in scored.logprobs) / len(scored.logprobs)
    assert math.isfinite(mean)
    events = list(upload(client, path, include=["logprobs"], stream=True))
    assert events[0].logprobs and events[-1].type == "transcript.text.done" and events[-1].logprobs
    with pytest.raises(openai.BadRequestError) as err:
        upload(client, path, include=["logprobs"], response_format="srt")
    assert err.value.body["param"] == "include"


# ---------------------------------------------------------------- limits


def test_chat_token_limits_stop_generation(client, clips):
    url = data_url(clips["files"]["speech"])
    full = chat(client, url)
    assert full.choices[0].finish_reason == "stop" and full.usage.completion_tokens > 3
    for limit in ({"max_tokens": 3}, {"max_completion_tokens": 3}):
        short = chat(client, url, **limit)
        assert short.choices[0].finish_reason == "length" and short.usage.completion_tokens == 3
        assert full.choices[0].message.content.startswith(short.choices[0].message.content)
        assert len(short.choices[0].message.content) < len(full.choices[0].message.content)
    chunks = list(chat(client, url, max_tokens=3, stream=True))
    assert chunks[-1].choices[0].finish_reason == "length"
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == chat(client, url, max_tokens=3).choices[0].message.content


def test_transcription_token_limit_stops_generation(client, clips):
    """vLLM honours `max_completion_tokens` on /v1/audio/transcriptions too (a form field: the
    official client sends it in extra_body)."""
    path = clips["files"]["speech"]
    full = upload(client, path, include=["logprobs"])
    assert len(full.logprobs) > 3
    short = upload(client, path, include=["logprobs"], extra_body={"max_completion_tokens": 3})
    assert len(short.logprobs) == 3 and [x.token for x in short.logprobs] == [x.token for x in full.logprobs[:3]]
    assert full.text.startswith(short.text) and len(short.text) < len(full.text)
    streamed = list(upload(client, path, stream=True, extra_body={"max_completion_tokens": 3}))
    assert streamed[-1].type == "transcript.text.done" and streamed[-1].text == short.text
    with pytest.raises(openai.BadRequestError) as err:
        upload(client, path, extra_body={"max_completion_tokens": 0})
    assert err.value.body["param"] == "max_completion_tokens"


def test_temperature_samples_seeded_and_is_checked(client, clips):
    path = clips["files"]["speech"]
    greedy = upload(client, path, temperature=0).text
    sampled = {upload(client, path, temperature=1.5, extra_body={"seed": s}).text for s in range(6)}
    assert len(sampled) > 1 or greedy not in sampled  # sampling changes the answer
    again = upload(client, path, temperature=1.5, extra_body={"seed": 3}).text
    assert again == upload(client, path, temperature=1.5, extra_body={"seed": 3}).text
    for bad in (-0.1, 2.5):
        with pytest.raises(openai.BadRequestError) as err:
            upload(client, path, temperature=bad)
        assert err.value.body["param"] == "temperature"
        with pytest.raises(openai.BadRequestError):
            chat(client, data_url(path), temperature=bad)
    with pytest.raises(openai.BadRequestError) as err:
        chat(client, data_url(path), max_tokens=0)
    assert err.value.body["param"] == "max_tokens"


# ---------------------------------------------------------------- model names


def test_served_model_names(server, client, clips):
    import httpx2 as httpx

    assert [m.id for m in client.models.list().data] == NAMES
    path = clips["files"]["speech"]
    with open(path, "rb") as f:
        other = client.audio.transcriptions.create(model=NAMES[1], file=f).text
    assert other == upload(client, path).text
    with pytest.raises(openai.NotFoundError) as err, open(path, "rb") as f:
        client.audio.transcriptions.create(model="whisper-9-does-not-exist", file=f)
    assert err.value.body["code"] == "model_not_found" and err.value.body["type"] == "not_found_error"
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="gpt-nothing", messages=[{"role": "user", "content": [
            {"type": "audio_url", "audio_url": {"url": data_url(path)}}]}])  # fmt: skip
    with open(path, "rb") as f:  # an empty model field is the default model
        r = httpx.post(server + "/v1/audio/transcriptions", files={"file": ("a.wav", f.read())}, data={"model": ""}, timeout=120)
    assert r.status_code == 200 and r.json()["text"] == other
