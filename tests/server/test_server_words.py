"""Word timestamps from `medasr serve` as OpenAI's client asks for them: a real server on loopback
with the demo model and the demo aligner, driven by the official `openai` client. The demo
aligner is not accurate: these tests check the protocol and that the server's words are the
library's (one pipeline), never the times' accuracy."""

from __future__ import annotations

import subprocess
import sys

import pytest

from medasr.server.launch import running_server

try:
    import openai
except ImportError:  # fail each test with the reason
    openai = None

MAX_NEW_TOKENS = 48


@pytest.fixture(autouse=True)
def _client_package():
    if openai is None:
        pytest.fail("the server tests need the openai package: pip install -e '.[test]'")


@pytest.fixture(scope="module")
def server():
    args = ["--model", "demo", "--device", "cpu", "--aligner", "demo", "--max-new-tokens", str(MAX_NEW_TOKENS)]
    with running_server(args) as base:
        yield base


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=server + "/v1", api_key="none", max_retries=0, timeout=120)


@pytest.fixture(scope="module")
def clip(speech_clips):
    return speech_clips[3]


@pytest.fixture(scope="module")
def library(clip):
    from medasr.transcribe import load_model

    asr = load_model("demo", device="cpu")
    return asr.transcribe(str(clip), timestamps="word", aligner="demo", max_new_tokens=MAX_NEW_TOKENS)[0]


def upload(client, path, **kw):
    with open(path, "rb") as f:
        return client.audio.transcriptions.create(model="demo", file=f, **kw)


def test_word_granularity_gives_words_without_segments(client, clip, library):
    got = upload(client, clip, response_format="verbose_json", timestamp_granularities=["word"])
    assert got.text == library.text and got.words and getattr(got, "segments", None) is None
    assert [(w.word, w.start, w.end) for w in got.words] == [(w.word, w.start, w.end) for w in library.words]
    extra = got.model_dump()["words"]  # medasr's probability and review mark ride along
    assert [w.get("probability") for w in extra] == [w.probability for w in library.words]
    assert all(w["low_confidence"] == (w["probability"] < 0.5) for w in extra if "probability" in w)
    assert " ".join(w.word for w in got.words) == " ".join(got.text.split())


def test_segment_word_and_both(client, clip):
    segments = upload(client, clip, response_format="verbose_json", timestamp_granularities=["segment"])
    assert segments.segments and getattr(segments, "words", None) is None
    default = upload(client, clip, response_format="verbose_json")
    assert default.segments and getattr(default, "words", None) is None
    both = upload(client, clip, response_format="verbose_json", timestamp_granularities=["word", "segment"])
    assert both.segments and both.words and both.text == segments.text
    assert [s.model_dump() for s in both.segments] == [s.model_dump() for s in segments.segments]
    seg = both.segments[0]
    assert all(seg.start <= w.start <= w.end <= seg.end for w in both.words)


@pytest.mark.parametrize("fmt", ["json", "text", "srt", "vtt"])
def test_words_need_verbose_json(client, clip, fmt):
    with pytest.raises(openai.BadRequestError) as err:
        upload(client, clip, response_format=fmt, timestamp_granularities=["word"])
    assert err.value.status_code == 400 and err.value.body["param"] == "timestamp_granularities"


def test_alignment_failure_keeps_the_text(client, clip):
    # Polish: the model's language, not the aligner's: the text, no words, a warning; never a 500
    got = upload(client, clip, response_format="verbose_json", timestamp_granularities=["word"], language="pl")
    body = got.model_dump()
    assert got.text and body["words"] == [] and "Polish" in body["warnings"][0]


def test_the_demo_model_times_words_with_the_demo_aligner_by_default(speech_clips, tmp_path):
    """`medasr serve --model demo` without --aligner: the bundled demo aligner goes with the
    bundled model, loaded on the first request for words (no hub needed)."""
    env = {"HF_HOME": str(tmp_path), "HF_HUB_OFFLINE": "1"}
    with running_server(["--model", "demo", "--device", "cpu"], env=env) as base:
        client = openai.OpenAI(base_url=base + "/v1", api_key="none", max_retries=0, timeout=120)
        got = upload(client, speech_clips[0], response_format="verbose_json", timestamp_granularities=["word"])
        words = got.model_dump()["words"]
        assert words and all(w["end"] >= w["start"] >= 0 for w in words)
        assert " ".join(w["word"] for w in words).split() == got.text.split()


def test_default_aligner_loads_lazily(tiny_model, speech_clips, tmp_path):
    """Without --aligner the server starts without one; the first request for words tries the
    default (the hub's aligner for any model but the demo: not on this machine, no hub: 503 with
    the reason), other requests are served."""
    env = {"HF_HOME": str(tmp_path), "HF_HUB_OFFLINE": "1"}
    args = ["--model", str(tiny_model["transformers"]), "--served-model-name", "demo", "--device", "cpu", "--max-new-tokens", "8"]
    with running_server(args, env=env) as base:
        client = openai.OpenAI(base_url=base + "/v1", api_key="none", max_retries=0, timeout=120)
        for _ in range(2):  # the failure is kept: said again at once
            with pytest.raises(openai.APIStatusError) as err:
                upload(client, speech_clips[0], response_format="verbose_json", timestamp_granularities=["word"])
            assert err.value.status_code == 503 and err.value.body["code"] == "aligner_not_available"
            assert "Qwen3-ForcedAligner" in err.value.body["message"]
        assert upload(client, speech_clips[0], response_format="verbose_json").segments is not None


def test_a_bad_aligner_stops_the_server_at_start(tmp_path):
    from medasr.model.checkpoint import DEMO_DIR
    from medasr.server.launch import free_port

    broken = tmp_path / "broken-aligner"  # looks like an aligner, cannot load: the loader finds out
    broken.mkdir()
    (broken / "config.json").write_text('{"architectures": ["Qwen3ASRForTokenClassification"]}')
    (broken / "model.safetensors").write_bytes(b"not safetensors")
    for aligner, says in ((DEMO_DIR, "not a forced aligner"), (broken, f"the aligner {broken} failed to load: checkpoint {broken} is incomplete")):
        cmd = [sys.executable, "-m", "medasr", "serve", "--model", "demo", "--device", "cpu", "--port", str(free_port()),
               "--aligner", str(aligner)]  # fmt: skip
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
        assert proc.returncode == 2 and says in proc.stderr, proc.stderr[-2000:]
