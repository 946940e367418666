import numpy as np
import pytest
import torch

from medasr.audio.decode import load_audio
from medasr.model.checkpoint import load
from medasr.pipeline.engine import Engine, default_max_new_tokens
from medasr.transcribe import load_model


@pytest.fixture(scope="module")
def asr(tiny_model):
    return load_model(str(tiny_model["original"]), device="cpu")


@pytest.fixture(scope="module")
def clips(speech_clips, shared_audio):
    return [str(c) for c in speech_clips] + [str(shared_audio / "jfk.flac"), str(shared_audio / "hotwords.mp3")]


def test_batched_transcription_equals_one_by_one(asr, clips):
    one = [asr.transcribe(c, max_new_tokens=24)[0] for c in clips]
    together = asr.transcribe(clips, max_new_tokens=24, batch_size=4)
    assert [t.text for t in together] == [t.text for t in one]
    assert [t.source for t in together] == clips
    assert len({t.text for t in one}) > 1  # the tiny model answers differently per clip


def test_batches_are_sorted_and_capped(tiny_model):
    engine = Engine(load(str(tiny_model["original"]), device="cpu"), batch_size=3, max_batch_audio_s=20.0)
    durations = [1.0, 9.0, 2.0, 8.0, 3.0, 7.0, 30.0]
    plan = engine.plan(durations)
    assert sorted(i for b in plan for i in b) == list(range(7))
    assert all(len(b) <= 3 for b in plan)
    assert all(sum(durations[i] for i in b) <= 20.0 or len(b) == 1 for b in plan)
    flat = [durations[i] for b in plan for i in b]
    assert flat == sorted(flat, reverse=True)


def test_token_budget_grows_with_duration_and_is_capped():
    assert default_max_new_tokens(1.0) < default_max_new_tokens(10.0) < default_max_new_tokens(20.0)
    assert default_max_new_tokens(600.0) == 512


def test_token_cap_is_reported(asr, clips):
    t = asr.transcribe(clips[0], max_new_tokens=5)[0]
    assert t.hit_token_cap  # a random model never says end-of-turn


def test_context_goes_into_the_system_turn(asr):
    engine = asr.engine
    plain = engine.prompt_ids(None, "English", 3)
    hot = engine.prompt_ids("metoprolol", "English", 3)
    assert len(hot) > len(plain)
    decoded = engine.tokenizer.decode(hot)
    assert decoded.startswith("<|im_start|>system\nmetoprolol<|im_end|>")


def test_auto_language_leaves_the_answer_to_the_model(asr, clips):
    forced = asr.engine.prompt_ids(None, "English", 2)
    auto = asr.engine.prompt_ids(None, None, 2)
    assert asr.engine.tokenizer.decode(forced).endswith("language English<asr_text>")
    assert asr.engine.tokenizer.decode(auto).endswith("<|im_start|>assistant\n")
    t = asr.transcribe(clips[0], language="auto", max_new_tokens=8)[0]
    assert t.language == ""  # random weights never write "language X<asr_text>"


def test_bad_input_in_a_batch_does_not_stop_the_others(asr, clips, tmp_path):
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"RIFF nonsense")
    out = asr.transcribe([clips[0], str(bad), clips[1]], errors="keep", max_new_tokens=8)
    assert out[1].error and "bad.wav" in out[1].error
    assert out[0].text and out[2].text and not out[0].error
    from medasr.errors import AudioError

    with pytest.raises(AudioError, match="bad.wav"):
        asr.transcribe([clips[0], str(bad)], max_new_tokens=8)


def test_array_input(asr, clips):
    a = load_audio(clips[1])
    from_array = asr.transcribe((a.samples, 16000), max_new_tokens=12)[0]
    from_path = asr.transcribe(clips[1], max_new_tokens=12)[0]
    assert from_array.text == from_path.text and from_array.duration == pytest.approx(from_path.duration)
    assert isinstance(from_array.duration, float) and np.isfinite(from_array.duration)


def test_audio_is_encoded_window_by_window_exactly(asr, shared_audio):
    """The encoder convolves 1 s chunks and attends within 8 s windows, so medasr encodes a clip's
    windows apart, equal windows of several clips together, a bounded number of frames per call
    (the convolutions' activations stay small however long the clips): every clip's embeddings
    equal transformers' encoder run on that clip whole."""
    from medasr.pipeline.engine import _stack

    engine = asr.engine
    assert engine._window == 800
    long = load_audio(str(shared_audio / "multilingual.mp3")).samples[: 16000 * 27 + 3200]  # 27.2 s: 4 windows
    jfk = load_audio(str(shared_audio / "jfk.flac")).samples  # 11 s: 2 windows
    feats = [engine.features(x) for x in (long, jfk, jfk[:8000], long[: 16000 * 8])]
    whole = []
    for f in feats:
        mel, mask = _stack([f], f.mel.shape[-1])
        whole.append(engine.model.model.get_audio_features(mel, mask).pooler_output)
    for frames in (800, 100_000):  # one window per call; every window in one call
        engine.encode_frames = frames
        try:
            got = torch.split(engine.encode_audio(feats), [f.n_audio_tokens for f in feats])
        finally:
            engine.encode_frames = 800
        for a, b in zip(got, whole):
            assert a.shape == b.shape
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
