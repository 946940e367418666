"""`medasr serve` as a client sees it: a real server process on loopback with the tiny model,
driven by the official `openai` client (and raw HTTP where the client cannot misbehave)."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import functools
import http.server
import io
import itertools
import json
import threading

import httpx2 as httpx  # the HTTP client huggingface_hub and openai depend on
import numpy as np
import pytest
import soundfile as sf

from medasr.server.launch import running_server

try:
    import fastapi  # noqa: F401  (the server's own packages, needed by the child process)
    import openai
except ImportError as err:  # fail each test with the reason, instead of stopping the whole run
    MISSING: str | None = err.name
else:
    MISSING = None

KEY = "test-key-0123456789"
MAX_NEW_TOKENS = 8


@pytest.fixture(autouse=True)
def _server_packages():
    if MISSING:
        pytest.fail(f"the server tests need the {MISSING!r} package: pip install -e '.[test]'")


@pytest.fixture(scope="module")
def model_dir(tiny_model) -> str:
    return str(tiny_model["transformers"])


@pytest.fixture(scope="module")
def server(model_dir):
    args = [
        "--model", model_dir, "--device", "cpu", "--api-key", KEY, "--served-model-name", "medasr-tiny",
        "--max-new-tokens", str(MAX_NEW_TOKENS), "--max-batch-size", "8", "--max-wait-ms", "50",
        "--max-queue", "64", "--max-upload-mb", "1", "--max-audio-s", "100",
    ]  # fmt: skip
    with running_server(args) as base:
        yield base


@pytest.fixture(scope="module")
def open_server(model_dir):
    """No API key, private URLs allowed (as for a server inside a trusted network)."""
    args = ["--model", model_dir, "--device", "cpu", "--max-new-tokens", str(MAX_NEW_TOKENS), "--allow-private-urls"]
    with running_server(args) as base:
        yield base


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=server + "/v1", api_key=KEY, max_retries=0, timeout=120)


@pytest.fixture(scope="module")
def direct(model_dir):
    """The library's own answer for a clip, to check the server against."""
    from medasr.transcribe import load_model

    asr = load_model(model_dir, device="cpu")
    return lambda path, **kw: asr.transcribe(str(path), max_new_tokens=MAX_NEW_TOKENS, **kw)[0].text


@pytest.fixture(scope="module")
def clip(speech_clips):
    return speech_clips[1]


@pytest.fixture(scope="module")
def audio_host(speech_clips):
    """A plain HTTP file server on 127.0.0.1 with the speech clips (a 'private' URL)."""
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(speech_clips[0].parent))
    handler.log_message = lambda *a: None
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


def data_url(path) -> str:
    return "data:audio/wav;base64," + base64.b64encode(path.read_bytes()).decode()


def transcribe(client, path, **kw):
    with open(path, "rb") as f:
        return client.audio.transcriptions.create(model="medasr-tiny", file=f, **kw)


# ---------------------------------------------------------------- the API


def test_health_ready_and_models(server, client):
    assert httpx.get(server + "/health").json() == {"status": "ok"}  # no key needed
    assert httpx.get(server + "/ready").status_code == 200
    assert [m.id for m in client.models.list().data] == ["medasr-tiny"]


def test_every_response_format(client, clip, direct):
    expected = direct(clip)
    assert expected  # the tiny model always says something
    assert transcribe(client, clip).text == expected
    assert transcribe(client, clip, response_format="text").strip() == expected
    verbose = transcribe(client, clip, response_format="verbose_json")
    assert verbose.text == expected and verbose.language == "english"
    assert verbose.duration == pytest.approx(sf.info(str(clip)).duration, abs=0.01)
    (seg,) = verbose.segments
    assert (seg.start, seg.text) == (0.0, expected) and seg.end == pytest.approx(verbose.duration)
    # readable cues (medasr.output.subtitles): the text may span several cues of up to 2 lines
    srt = transcribe(client, clip, response_format="srt")
    assert srt.startswith("1\n00:00:00,000 --> 00:00:0") and _cue_text(srt) == " ".join(expected.split())
    vtt = transcribe(client, clip, response_format="vtt")
    escaped = " ".join(expected.split()).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    assert vtt.startswith("WEBVTT\n\n00:00:00.000 --> ") and _cue_text(vtt) == escaped


def _cue_text(doc: str) -> str:
    """The words of all cues of an srt or vtt document, in order."""
    lines = [x for x in doc.splitlines() if x and x != "WEBVTT" and " --> " not in x and not x.isdigit()]
    return " ".join(" ".join(lines).split())


def test_prompt_and_language_reach_the_model(client, clip, direct):
    context = "metoprolol, atorvastatin"
    assert transcribe(client, clip, prompt=context).text == direct(clip, context=context)
    assert transcribe(client, clip, language="de").text == direct(clip, language="German")
    sampled = transcribe(client, clip, temperature=0.7, extra_body={"seed": 7}).text
    assert sampled == direct(clip, temperature=0.7, seed=7)  # sampled, seeded per request
    assert sampled == transcribe(client, clip, temperature=0.7, extra_body={"seed": 7}).text


def test_streaming_events(client, clip, direct):
    events = list(transcribe(client, clip, stream=True))
    assert [e.type for e in events] == ["transcript.text.delta", "transcript.text.done"]
    assert events[0].delta == events[1].text == direct(clip)
    assert events[1].usage.output_tokens == MAX_NEW_TOKENS


def test_long_audio_is_split_with_timestamps(client, shared_audio):
    verbose = transcribe(client, shared_audio / "multilingual.mp3", response_format="verbose_json")
    assert verbose.duration == pytest.approx(59.9, abs=0.1)
    segs = verbose.segments
    assert len(segs) >= 2
    assert all(0 <= s.start < s.end <= verbose.duration + 0.01 and s.end - s.start <= 30.0 for s in segs)
    assert all(a.end <= b.start for a, b in itertools.pairwise(segs))
    assert verbose.text == " ".join(s.text for s in segs)
    srt = transcribe(client, shared_audio / "multilingual.mp3", response_format="srt")
    starts = [line.split(" --> ")[0] for line in srt.splitlines() if " --> " in line]
    assert len(starts) >= len(segs)  # readable cues: at least one per segment, none across two
    assert {_stamp(s.start) for s in segs} <= set(starts)


def _stamp(seconds: float) -> str:
    ms = round(seconds * 1000)
    return f"{ms // 3_600_000:02d}:{ms // 60_000 % 60:02d}:{ms // 1000 % 60:02d},{ms % 1000:03d}"


# ---------------------------------------------------------------- chat completions (vLLM style)


def test_chat_completion_with_audio_url(client, clip, direct):
    answer = client.chat.completions.create(
        model="medasr-tiny",
        messages=[{"role": "user", "content": [{"type": "audio_url", "audio_url": {"url": data_url(clip)}}]}],
    )
    assert answer.object == "chat.completion" and answer.model == "medasr-tiny"
    assert answer.choices[0].message.content == "language English<asr_text>" + direct(clip)
    assert answer.usage.completion_tokens == MAX_NEW_TOKENS


def test_chat_completion_with_input_audio_and_context(client, clip, direct):
    answer = client.chat.completions.create(
        model="medasr-tiny",
        messages=[
            {"role": "system", "content": "metoprolol"},
            {"role": "user", "content": [
                {"type": "text", "text": "atorvastatin"},
                {"type": "input_audio", "input_audio": {"data": base64.b64encode(clip.read_bytes()).decode(), "format": "wav"}},
            ]},
        ],
    )  # fmt: skip
    assert answer.choices[0].message.content == "language English<asr_text>" + direct(clip, context="metoprolol\natorvastatin")


def test_chat_completion_streams(client, clip, direct):
    chunks = list(client.chat.completions.create(
        model="medasr-tiny", stream=True,
        messages=[{"role": "user", "content": [{"type": "audio_url", "audio_url": {"url": data_url(clip)}}]}],
    ))  # fmt: skip
    text = "".join(c.choices[0].delta.content or "" for c in chunks)
    assert text == "language English<asr_text>" + direct(clip)
    assert chunks[-1].choices[0].finish_reason in ("stop", "length")


def test_the_seed_request_unchanged(open_server, clip, direct):
    # The deployment seed's curl body, byte for byte, with its external URL swapped for a data URL.
    body = """{
    "messages": [
    {"role": "user", "content": [
        {"type": "audio_url",
        "audio_url":
        {"url": "URL"}}
    ]}
    ]
}""".replace("URL", data_url(clip))
    r = httpx.post(open_server + "/v1/chat/completions", headers={"Content-Type": "application/json"}, content=body, timeout=60)
    assert r.status_code == 200, r.text
    assert r.json()["choices"][0]["message"]["content"] == "language English<asr_text>" + direct(clip)


def test_loopback_urls_are_refused_unless_allowed(server, open_server, audio_host, clip, direct):
    message = {
        "messages": [{"role": "user", "content": [{"type": "audio_url", "audio_url": {"url": f"{audio_host}/{clip.name}"}}]}]
    }
    refused = httpx.post(server + "/v1/chat/completions", json=message, headers={"Authorization": f"Bearer {KEY}"}, timeout=60)
    assert refused.status_code == 400
    assert refused.json()["error"]["code"] == "url_not_allowed"
    allowed = httpx.post(open_server + "/v1/chat/completions", json=message, timeout=60)
    assert allowed.status_code == 200, allowed.text
    assert allowed.json()["choices"][0]["message"]["content"].endswith(direct(clip))


# ---------------------------------------------------------------- bad input


def _silence_flac(seconds: float) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, np.zeros(int(seconds * 16000), np.float32), 16000, format="FLAC")
    return buf.getvalue()


def _error(excinfo) -> tuple[int, dict]:
    return excinfo.value.status_code, excinfo.value.body


@pytest.mark.parametrize(
    "name,content,fields,status,param",
    [
        ("empty.wav", b"", {}, 400, "file"),
        ("corrupt.wav", b"RIFF\x00\x00\x00\x00WAVEfmt garbage" * 40, {}, 400, "file"),
        ("text.mp3", b"this is not audio", {}, 400, "file"),
        ("big.wav", b"\0" * (3 * 1024 * 1024), {}, 413, None),
        ("long.flac", None, {}, 413, "file"),
        ("ok.wav", None, {"response_format": "docx"}, 400, "response_format"),
        ("ok.wav", None, {"language": "klingon"}, 400, "language"),
        ("ok.wav", None, {"temperature": "hot"}, 400, "temperature"),
    ],
)
def test_bad_uploads_get_openai_errors(client, clip, name, content, fields, status, param):
    if content is None:
        content = _silence_flac(120) if name == "long.flac" else clip.read_bytes()
    with pytest.raises(openai.APIStatusError) as excinfo:
        client.audio.transcriptions.create(model="medasr-tiny", file=(name, content), **fields)
    code, body = _error(excinfo)
    assert code == status
    assert set(body) >= {"message", "type", "param", "code"} and body["message"]
    assert body["param"] == param


def test_malformed_requests(server, clip):
    auth = {"Authorization": f"Bearer {KEY}"}
    url = server + "/v1/audio/transcriptions"

    def chat(parts=None, **kw):
        if parts is not None:
            kw["json"] = {"messages": [{"role": "user", "content": parts}]}
        return httpx.post(server + "/v1/chat/completions", headers=auth, **kw)

    cases = [
        (httpx.post(url, json={"file": "x"}, headers=auth), 415),  # not multipart
        (httpx.post(url, content=clip.read_bytes(), headers={**auth, "Content-Type": "audio/wav"}), 415),
        (httpx.post(url, data={"model": "m"}, files={"other": ("a.wav", b"x")}, headers=auth), 400),  # no file
        (httpx.post(url, content=b"--x\r\nbroken", headers={**auth, "Content-Type": "multipart/form-data; boundary=x"}), 400),
        (httpx.post(url, files={"file": ("a.wav", clip.read_bytes())}), 401),  # no key
        (httpx.post(url, files={"file": ("a.wav", clip.read_bytes())}, headers={"Authorization": "Bearer wrong"}), 401),
        (chat(content=b"{not json"), 400),
        (chat(json=[1, 2]), 400),
        (chat(json={"messages": []}), 400),
        (chat("no audio here"), 400),
        (chat([{"type": "audio_url", "audio_url": {"url": "file:///etc/passwd"}}]), 400),  # no server files
        (chat([{"type": "audio_url", "audio_url": {"url": "/etc/passwd"}}]), 400),
        (chat([{"type": "input_audio", "input_audio": {"data": "@@not base64@@"}}]), 400),
        (chat([{"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}]), 400),
        (httpx.get(server + "/v1/nothing-here", headers=auth), 404),
    ]
    for response, status in cases:
        assert response.status_code == status, response.text
        assert set(response.json()["error"]) == {"message", "type", "param", "code"}


def test_oversized_bodies_are_refused_even_without_a_length(server):
    def chunks():
        for _ in range(48):
            yield b"\0" * 65536  # 3 MB, chunked: no Content-Length to go by

    r = httpx.post(
        server + "/v1/audio/transcriptions",
        content=chunks(),
        headers={"Authorization": f"Bearer {KEY}", "Content-Type": "multipart/form-data; boundary=x"},
    )
    assert r.status_code == 413


def test_the_server_survives_bad_input(server, client, clip, direct):
    # runs after the bad-input tests: still alive and still right
    assert httpx.get(server + "/health").status_code == 200
    assert transcribe(client, clip).text == direct(clip)


# ---------------------------------------------------------------- load


def test_200_concurrent_requests_are_answered_and_batched(server, clip, direct):
    audio = clip.read_bytes()
    expected = direct(clip)

    async def one(aclient):
        try:
            t = await aclient.audio.transcriptions.create(model="medasr-tiny", file=("c.wav", audio))
            return 200, t.text
        except openai.RateLimitError as err:
            assert int(err.response.headers["retry-after"]) >= 1
            return 429, None

    async def all_of_them():
        async with openai.AsyncOpenAI(base_url=server + "/v1", api_key=KEY, max_retries=0, timeout=300) as aclient:
            return await asyncio.gather(*(one(aclient) for _ in range(200)))

    before = _metrics(server)
    answers = asyncio.run(all_of_them())
    assert len(answers) == 200
    assert {s for s, _ in answers} <= {200, 429}
    ok = [text for s, text in answers if s == 200]
    assert ok and all(text == expected for text in ok)  # batched answers equal the sequential one
    after = _metrics(server)
    served = after.get('medasr_requests_total{endpoint="/v1/audio/transcriptions",status="200"}', 0)
    assert served - before.get('medasr_requests_total{endpoint="/v1/audio/transcriptions",status="200"}', 0) == len(ok)
    batches = after["medasr_batch_size_count"] - before["medasr_batch_size_count"]
    singles = after['medasr_batch_size_bucket{le="1.0"}'] - before['medasr_batch_size_bucket{le="1.0"}']
    assert batches - singles > 0, "no batch held more than one request"
    assert after["medasr_queue_depth"] == 0


def _metrics(base: str) -> dict[str, float]:
    out = {}
    for line in httpx.get(base + "/metrics").text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            out[name] = float(value)
    return out


def test_cli_help_lists_the_options():
    from medasr.cli import build_parser

    with contextlib.redirect_stdout(io.StringIO()) as out, pytest.raises(SystemExit):
        build_parser().parse_args(["serve", "--help"])
    for option in ("--max-batch-size", "--max-wait-ms", "--max-queue", "--api-key", "--allow-private-urls", "--max-audio-s"):
        assert option in out.getvalue()


def test_json_error_body_is_openai_shaped(server):
    r = httpx.get(server + "/v1/models")
    assert r.status_code == 401
    assert json.loads(r.text)["error"]["type"] == "authentication_error"


def test_cli_python_api_and_server_give_the_same_verbose_json(server, model_dir, shared_audio, tmp_path):
    """One pipeline: the same long recording gives the same segments, texts, tokens and scores
    (to float noise: what else shares a batch shifts the last digits) through all three: the
    server decodes the upload whole, the CLI and the library stream the file from disk."""
    import subprocess
    import sys

    from medasr.audio.decode import load_audio
    from medasr.output.formats import verbose_json
    from medasr.transcribe import load_model

    # 45 s of real speech with pauses: several pieces. Lossless (FLAC), so that decoding it whole
    # (libsndfile) and streaming it (FFmpeg) give the very same samples (for MP3 they differ by
    # ~1e-6, which this random model's large weights amplify into its last decimals); under the
    # test server's 1 MB upload limit
    path = tmp_path / "multilingual.flac"
    sf.write(path, load_audio(shared_audio / "multilingual.mp3").samples[: 45 * 16000], 16000, subtype="PCM_16")
    with open(path, "rb") as f:
        r = httpx.post(server + "/v1/audio/transcriptions", headers={"Authorization": f"Bearer {KEY}"},
                       files={"file": (path.name, f.read())}, data={"response_format": "verbose_json"}, timeout=120)  # fmt: skip
    assert r.status_code == 200, r.text
    cli = subprocess.run([sys.executable, "-m", "medasr", "transcribe", "--model", model_dir, "--format", "verbose_json",
                          "--max-new-tokens", str(MAX_NEW_TOKENS), str(path)], capture_output=True, text=True, check=True)  # fmt: skip
    lib = verbose_json(load_model(model_dir, device="cpu").transcribe(str(path), max_new_tokens=MAX_NEW_TOKENS)[0])
    bodies = [r.json(), json.loads(cli.stdout), lib]
    scores = ("avg_logprob", "no_speech_prob")
    plain = [{**b, "segments": [{k: v for k, v in s.items() if k not in scores} for s in b["segments"]]} for b in bodies]
    assert plain[0] == plain[1] == plain[2] and len(plain[0]["segments"]) >= 2
    for a, b, c in zip(*(b["segments"] for b in bodies)):
        for key in scores:
            assert a[key] == pytest.approx(b[key], abs=1e-4) and b[key] == pytest.approx(c[key], abs=1e-4)
