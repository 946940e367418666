"""`medasr bench`: both benchmarks end to end on the CPU with the tiny model (the serving one
against a live `medasr serve` on loopback), and the figures checked for internal consistency."""

from __future__ import annotations

import contextlib
import io
import json

import numpy as np
import pytest

from medasr.bench import offline, results, workload
from medasr.cli import main

MAX_NEW_TOKENS = 6
N_CLIPS = 5


def run_cli(capsys, *argv) -> dict:
    assert main(["bench", *argv]) == 0
    return json.loads(capsys.readouterr().out)


def approx(x):
    return pytest.approx(x, rel=2e-3, abs=2e-4)


def check_percentiles(p: dict) -> None:
    assert 0 <= p["p50"] <= p["p90"] <= p["p95"] <= p["p99"] <= p["max"]


@pytest.fixture(scope="module")
def model_dir(tiny_model) -> str:
    return str(tiny_model["transformers"])


OFFLINE_ARGS = ["--device", "cpu", "--synthetic", str(N_CLIPS), "--batch-size", "2", "--warmup", "1",
                "--max-new-tokens", str(MAX_NEW_TOKENS), "--accuracy"]  # fmt: skip


@pytest.fixture(scope="module")
def offline_result(model_dir, tmp_path_factory) -> tuple[dict, object]:
    """`medasr bench offline` with both baselines, run once for the module: (its JSON, output dir)."""
    out = tmp_path_factory.mktemp("offline")
    argv = ["bench", "offline", "--model", model_dir, *OFFLINE_ARGS, "--baseline", "static,one-by-one,pad-longest-32",
            "--output-dir", str(out)]  # fmt: skip
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        assert main(argv) == 0
    return json.loads(stdout.getvalue()), out


# ---------------------------------------------------------------------------------------------- workload


def test_synthetic_durations_look_like_librispeech():
    d = np.array(workload.durations(5000, "librispeech", seed=3))
    assert d.min() >= 2.0 and d.max() <= 35.0 and 6.5 < d.mean() < 7.8
    assert workload.durations(50, seed=3) == list(d[:50])  # seeded
    long = workload.durations(20, "long")
    assert min(long) >= 120 and max(long) <= 600


def test_synthetic_clips_have_exact_lengths_and_references():
    a = workload.synthetic(3, "speech", seed=1)
    b = workload.synthetic(3, "speech", seed=1)
    assert [c.source for c in a.clips] == [c.source for c in b.clips]
    from medasr.audio.decode import load_audio

    for clip in a.clips:
        assert load_audio(clip.source).duration == pytest.approx(clip.duration, abs=0.01)
        assert clip.text and clip.text.endswith(".")
    noise = workload.synthetic(2, "noise")
    assert not noise.has_references and noise.summary()["clips"] == 2


# ---------------------------------------------------------------------------------------------- offline


def test_offline_end_to_end(offline_result):
    r, out = offline_result
    assert r["random_weights"] is None and r["device"] == "cpu"
    assert [x["mode"] for x in r["runs"]] == ["medasr", "static", "one-by-one", "pad-longest-32"]
    audio = r["workload"]["audio_s"]
    for x in r["runs"]:
        assert x["success"] + x["failure"] == x["total"] == N_CLIPS and x["failure"] == 0
        assert x["audio_s"] == pytest.approx(audio, abs=0.01)
        assert 0 < x["model_s"] <= x["e2e_s"]
        assert x["rtfx_model"] == approx(x["audio_s"] / x["model_s"])
        assert x["rtfx_e2e"] == approx(x["audio_s"] / x["e2e_s"])
        assert x["samples_per_s"] == approx(x["total"] / x["e2e_s"])
        assert x["rtfx_model"] >= x["rtfx_e2e"]
        assert 0 < x["generated_tokens"] <= MAX_NEW_TOKENS * N_CLIPS and x["peak_rss_mb"] > 0
        assert x["accuracy"]["total"] == N_CLIPS and x["accuracy"]["success"] == N_CLIPS
    prefills = {x["mode"]: x["prefills"] for x in r["runs"]}
    assert prefills["one-by-one"] == N_CLIPS and prefills["pad-longest-32"] == 1
    # 3 sorted batches of 2, a batch split in two where its clips' lengths differ by more than
    # the decoder's PREFILL_SPREAD (padding one to the other would be computed for nothing)
    assert 3 <= prefills["static"] <= N_CLIPS
    assert 3 <= prefills["medasr"] <= N_CLIPS  # rows refilled one at a time as they finish
    for x in r["runs"]:
        assert x["model_calls"] == x["prefills"] + x["decode_steps"] and 0 < x["row_utilization"] <= 1
    # the same answers whatever the batching (the engine is batch invariant); CER, as the tiny
    # model's WER is 1.0 whatever it writes
    assert len({(x["accuracy"]["wer"], x["accuracy"]["cer"]) for x in r["runs"]}) == 1
    for mode, s in r["speedup_vs_baseline"].items():
        base = next(x for x in r["runs"] if x["mode"] == mode)
        assert s["rtfx_e2e"] == approx(r["runs"][0]["rtfx_e2e"] / base["rtfx_e2e"])
    assert json.loads((out / "offline.json").read_text())["runs"] == r["runs"]
    assert "| medasr | 5 | 5 | 0 |" in (out / "offline.md").read_text()


def test_random_weights_force_the_output_length():
    w = workload.synthetic(3, "noise", seed=2)
    cfg = offline.OfflineConfig(random_weights="tiny", device="cpu", batch_size=1, warmup=0, tokens_per_second=4.0)
    r = offline.run(cfg, w)
    assert r["random_weights"] == "tiny" and r["model"] is None
    assert any("RANDOM WEIGHTS" in line for line in r["warnings"])
    (x,) = r["runs"]
    assert x["prefills"] == 3 and r["vad"] == "none"  # noise holds no speech: the detector is off
    assert x["generated_tokens"] == sum(round(4.0 * c.duration) for c in w.clips)  # each clip its own length


def test_random_weight_model_has_the_official_vocabulary():
    import torch

    from medasr.bench import randomweights
    from medasr.model.prompt import audio_token_count
    from medasr.pipeline.engine import Engine

    loaded = randomweights.build("tiny", torch.device("cpu"), torch.float32)
    assert loaded.model.config.text_config.vocab_size == randomweights.VOCAB == len(loaded.processor.tokenizer)
    assert loaded.model.config.audio_token_id == 151676
    engine = Engine(loaded)
    ids = engine.prompt_ids(None, "English", audio_token_count(500))
    assert ids.count(151676) == audio_token_count(500) and ids[-1] == 151704
    assert len(ids) - audio_token_count(500) == 18  # the official template's length
    assert not any(p.device.type == "meta" for p in loaded.model.parameters())


# ---------------------------------------------------------------------------------------------- serving


@pytest.fixture(scope="module")
def server(model_dir):
    from medasr.server.launch import running_server

    args = ["--model", model_dir, "--device", "cpu", "--api-key", "bench-key", "--served-model-name", "tiny",
            "--max-new-tokens", str(MAX_NEW_TOKENS), "--max-batch-size", "4", "--max-wait-ms", "20"]  # fmt: skip
    with running_server(args) as base:
        yield base


def check_levels(r: dict, requests: int, stream: bool) -> None:
    for lv in r["levels"]:
        assert lv["total"] == requests and lv["success"] + lv["failure"] == lv["total"] and lv["failure"] == 0
        assert lv["samples_per_s"] == approx(lv["total"] / lv["runtime_s"])
        assert lv["rtfx"] == approx(lv["audio_s"] / lv["runtime_s"])
        check_percentiles(lv["latency_s"])
        assert lv["latency_s"]["max"] <= lv["runtime_s"]
        if stream:
            check_percentiles(lv["ttft_s"])
            assert all(lv["ttft_s"][k] <= lv["latency_s"][k] + 1e-3 for k in ("p50", "p90", "p99", "max"))
        else:
            assert lv["ttft_s"] is None


def test_serve_end_to_end(server, offline_result, capsys, tmp_path):
    common = ["serve", "--url", server, "--api-key", "bench-key", "--synthetic", str(N_CLIPS), "--accuracy",
              "--warmup", "1"]  # fmt: skip
    r = run_cli(
        capsys,
        *common,
        "--concurrency",
        "1,3",
        "--requests",
        str(2 * N_CLIPS),
        "--stream",
        "--output-dir",
        str(tmp_path),
    )
    assert r["model"] == "tiny" and [lv["concurrency"] for lv in r["levels"]] == [1, 3]
    check_levels(r, 2 * N_CLIPS, stream=True)
    for name in ("serve.json", "serve.md", "serve_latency.png"):
        assert (tmp_path / name).stat().st_size > 0
    assert "Average Throughput" in (tmp_path / "serve.md").read_text()

    chat = run_cli(capsys, *common, "--concurrency", "2", "--endpoint", "chat")
    check_levels(chat, N_CLIPS, stream=False)
    # the server's answers are the offline engine's: the same CER at every level and endpoint
    # (each clip twice at the streamed levels: the same corpus rate)
    cers = {lv["accuracy"]["cer"] for lv in r["levels"] + chat["levels"]}
    assert cers == {offline_result[0]["runs"][0]["accuracy"]["cer"]}


def test_serve_counts_failures_and_refuses_a_wrong_key(server, capsys):
    from medasr.bench.serve import ServeConfig, run

    bad = workload.Workload([workload.Clip("bad", b"not audio at all", 1.0, "x", "bad.wav")], {"source": "test"})
    r = run(ServeConfig(server, concurrency=[2], requests=3, api_key="bench-key", warmup=0), bad)
    (lv,) = r["levels"]
    assert (lv["total"], lv["success"], lv["failure"]) == (3, 0, 3)
    assert list(lv["errors"]) == ["HTTP 400"] and lv["latency_s"] is None and lv["rtfx"] == 0
    assert main(["bench", "serve", "--url", server, "--api-key", "wrong", "--synthetic", "1"]) == 2
    assert "--api-key" in capsys.readouterr().err


def test_reads_vllm_style_streams():
    """vLLM streams chat chunks (also for transcriptions) and prefixes the language."""
    import asyncio

    import httpx2 as httpx

    from medasr.bench.serve import Client, ServeConfig

    def chunk(text):
        return "data: " + json.dumps({"choices": [{"delta": {"content": text}}]}) + "\n\n"

    body = chunk("language English") + chunk("<asr_text>Hello") + chunk(" there.") + "data: [DONE]\n\n"
    transport = httpx.MockTransport(lambda request: httpx.Response(200, text=body))
    clip = workload.Clip("c", b"RIFF", 1.0, "Hello there.")
    for endpoint in ("chat", "transcriptions"):
        client = Client(ServeConfig("http://x", endpoint=endpoint, stream=True), "m", [clip])

        async def go(client=client):
            async with httpx.AsyncClient(base_url="http://x", transport=transport) as http:
                return await client.send(http, 0)

        o = asyncio.run(go())
        assert o.ok and o.text == "Hello there." and 0 <= o.ttft <= o.latency
    # a stream cut before its end is a failure, not a short answer
    transport = httpx.MockTransport(lambda request: httpx.Response(200, text=chunk("language English")))
    assert asyncio.run(go()).error == "stream ended early"


def test_percentiles_and_rates():
    p = results.percentiles([3.0, 1.0, 2.0, 10.0])
    check_percentiles(p)
    assert p["p50"] == 2.5 and p["max"] == 10.0
    assert results.percentiles([]) is None and results.rate(5, 0) is None
