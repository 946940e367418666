"""The iteration-level decoder against transformers' own `generate`: the same tokens whether
requests run one by one, in static batches, joining a running batch, with CUDA-style static
shapes, or traced whole by torch.compile (dynamo, on the CPU; the CUDA-graph backend itself
needs a GPU); scores that are real log-probabilities."""

from __future__ import annotations

import math

import pytest
import torch

from medasr.audio.decode import load_audio
from medasr.model.checkpoint import load
from medasr.pipeline.decoder import Decoder
from medasr.pipeline.engine import Engine, Request
from medasr.pipeline.scheduler import run_requests


@pytest.fixture(scope="module")
def engine(tiny_model):
    return Engine(load(str(tiny_model["transformers"]), device="cpu"), batch_size=4)


@pytest.fixture(scope="module")
def requests(speech_clips, shared_audio):
    clips = [load_audio(p).samples for p in [*speech_clips, shared_audio / "jfk.flac", shared_audio / "hotwords.mp3"]]
    reqs = [Request(c, max_new_tokens=16) for c in clips]
    reqs.append(Request(clips[0], context="metoprolol, apixaban", max_new_tokens=16))
    reqs.append(Request(clips[4], language=None, max_new_tokens=16))  # the model names the language
    return reqs


@pytest.fixture(scope="module")
def reference(engine, requests) -> list[list[int]]:
    """transformers' generate, one request at a time."""
    return [engine.hf_generate([r], r.max_new_tokens)[0].token_ids for r in requests]


def drive(decoder: Decoder, requests, join_every: int | None = None) -> dict[int, object]:
    """Admit requests as rows free up (or `join_every` steps), step until all are done."""
    pending = list(enumerate(requests))
    done, steps = [], 0
    while pending or decoder.active:
        if pending and decoder.free and (join_every is None or steps % join_every == 0):
            take, pending = pending[: decoder.free], pending[decoder.free :]
            done += decoder.admit(take)
        done += decoder.step()
        steps += 1
    return dict(done)


@pytest.mark.parametrize("mode", ["continuous", "static"])
@pytest.mark.parametrize("batch", [1, 3])
def test_engine_runs_equal_generate(engine, requests, reference, mode, batch):
    out = run_requests(engine, requests, batch_size=batch, mode=mode)
    assert [r.token_ids for r in out] == reference
    assert len({tuple(t) for t in reference}) > 3  # the tiny model answers differently per clip


def test_rows_joining_a_running_batch_decode_as_alone(engine, requests, reference):
    got = drive(Decoder(engine, max_rows=3), requests, join_every=5)  # joins land mid-way through others
    assert [got[i].token_ids for i in range(len(requests))] == reference


def test_static_shapes_and_a_traced_decode_step(engine, requests, reference):
    import torch._dynamo.testing

    static = drive(Decoder(engine, max_rows=4, static=True), requests)
    assert [static[i].token_ids for i in range(len(requests))] == reference
    counter = torch._dynamo.testing.CompileCounter()
    traced = Decoder(engine, max_rows=4, compile=True, compile_options={"backend": counter, "fullgraph": True})
    got = drive(traced, requests)
    assert [got[i].token_ids for i in range(len(requests))] == reference
    assert 1 <= counter.frame_count <= 3  # one graph per row bucket (4, 2, 1): a few shapes only


def test_the_cache_reclaims_columns_on_long_answers(engine, requests):
    long = [Request(r.samples) for r in requests[1:3]]
    engine.forced_length = lambda seconds: 400  # the clock passes the first capacity; no early end of turn
    try:
        ref = [engine.hf_generate([r], 400)[0].token_ids for r in long]
        decoder = Decoder(engine, max_rows=2)
        got = drive(decoder, long, join_every=200)  # the second joins 200 steps after the first
    finally:
        engine.forced_length = None
    assert [got[i].token_ids for i in range(2)] == ref and all(len(t) == 400 for t in ref)
    # the clock travelled 200 + 400 columns past the first prompt; the cache never held them all:
    # the columns nobody reads any more were reclaimed (shifted out), not added
    widths = [len(engine.prompt_ids(r.context, r.language, engine.features(r.samples).n_audio_tokens)) for r in long]
    assert decoder.cache.columns < widths[0] + 600


def test_scores_are_log_probabilities(engine, requests):
    for r in run_requests(engine, requests[:3]):
        assert len(r.logprobs) == r.n_tokens and all(lp <= 0.0 for lp in r.logprobs)
        assert r.avg_logprob == pytest.approx(sum(r.logprobs) / r.n_tokens)
        assert r.no_speech_prob is None or 0.0 <= r.no_speech_prob <= 1.0
        assert [t.logprob for t in r.text_tokens] == pytest.approx(r.logprobs[: len(r.text_tokens)], abs=1e-6)
        assert r.finish_reason == "length" and r.hit_token_cap  # a random model never ends its turn
    # the prefill gives the same first-token distribution as a plain forward pass
    first = run_requests(engine, [requests[1]])[0]
    logits = engine.prefill_logits(requests[1])
    assert first.logprobs[0] == pytest.approx(float(torch.log_softmax(logits, -1)[first.token_ids[0]]), abs=1e-4)


def test_sampling_is_seeded_per_request(engine, requests):
    base = requests[4]
    sampled = [Request(base.samples, max_new_tokens=16, temperature=1.0, seed=s) for s in (1, 2, 1)]
    a, b, c = (r.token_ids for r in run_requests(engine, sampled))
    assert a == c and a != b  # same seed, same answer, whatever shares the batch
    alone = run_requests(engine, [sampled[0]])[0].token_ids
    assert alone == a
    greedy = run_requests(engine, [Request(base.samples, max_new_tokens=16)])[0]
    assert all(math.isfinite(x) for x in greedy.logprobs)


def test_forced_lengths_suppress_the_end_of_turn(demo_engine, speech_clips):
    clip = load_audio(speech_clips[1]).samples
    natural = run_requests(demo_engine, [Request(clip)])[0]
    assert natural.finish_reason == "stop" and not natural.hit_token_cap  # the demo model ends its turn
    demo_engine.forced_length = lambda seconds: natural.n_tokens + 7
    try:
        forced = run_requests(demo_engine, [Request(clip)])[0]
    finally:
        demo_engine.forced_length = None
    assert forced.n_tokens == natural.n_tokens + 7 and not set(forced.token_ids) & demo_engine.eos_ids


@pytest.fixture(scope="module")
def demo_engine():
    return Engine(load("demo", device="cpu"), batch_size=4)


def test_demo_model_texts_equal_generate(demo_engine, speech_clips):
    reqs = [Request(load_audio(p).samples) for p in speech_clips]
    ref = [demo_engine.hf_generate([r], 64)[0].text for r in reqs]
    assert [r.text for r in run_requests(demo_engine, reqs, batch_size=3)] == ref
    assert all(ref)
