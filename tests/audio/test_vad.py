"""VAD and long-form cutting on real recordings and on espeak-ng speech laid out between silences."""

from __future__ import annotations

import itertools
import shutil
import subprocess
import warnings
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import soxr

from medasr.audio import vad
from medasr.audio.decode import SAMPLE_RATE, load_audio
from medasr.audio.vad import Piece, VadOptions

AUDIO = Path(__file__).resolve().parents[1] / "fixtures" / "audio"  # real recordings in the repo
SR = SAMPLE_RATE

SENTENCES = [
    "The patient presents with acute chest pain radiating to the left arm.",
    "Blood pressure is one hundred and forty over ninety, heart rate ninety two.",
    "Start metoprolol twenty five milligrams twice daily and recheck in two weeks.",
    "Chest x-ray shows no consolidation, effusion or pneumothorax.",
    "History of type two diabetes mellitus, managed with metformin.",
    "She denies fever, chills, nausea or vomiting.",
    "Impression: community acquired pneumonia of the right lower lobe.",
    "Plan to obtain a CT angiogram to rule out pulmonary embolism.",
    "The abdomen is soft and non tender with normal bowel sounds.",
    "Follow up with cardiology for an echocardiogram next month.",
]



def _speak(text: str, voice: str, speed: int, out: Path) -> np.ndarray:
    """espeak-ng speech at 16 kHz, trimmed to where the voice is (so its span is known)."""
    subprocess.run(["espeak-ng", "-v", voice, "-s", str(speed), "-w", str(out), text], check=True)
    clip, rate = sf.read(out, dtype="float32")
    clip = soxr.resample(clip, rate, SR).astype(np.float32)
    loud = np.flatnonzero(np.abs(clip) > 0.01)
    return clip[loud[0] : loud[-1] + 1]


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> list[np.ndarray]:
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed")
    tmp = tmp_path_factory.mktemp("espeak")
    voices = [("en-us", 160), ("en-gb", 175), ("en-us", 190)]
    return [_speak(t, *voices[i % 3], tmp / f"clip{i}.wav") for i, t in enumerate(SENTENCES)]


@pytest.fixture(scope="module")
def long_recording(clips) -> tuple[np.ndarray, list[tuple[float, float]]]:
    """~11 minutes: speech clips (and JFK, if present) between 1.5-6 s silences over faint noise."""
    rng = np.random.default_rng(7)
    parts, spans, pos = [], [], 0
    extra = [load_audio(AUDIO / "jfk.flac").samples] if (AUDIO / "jfk.flac").is_file() else []
    pool = clips + extra
    while pos < 11 * 60 * SR:
        gap = np.zeros(int(rng.uniform(1.5, 6.0) * SR), np.float32)
        speech = pool[int(rng.integers(len(pool)))] * rng.uniform(0.3, 1.0)
        parts += [gap, speech.astype(np.float32)]
        spans.append(((pos + len(gap)) / SR, (pos + len(gap) + len(speech)) / SR))
        pos += len(gap) + len(speech)
    parts.append(np.zeros(2 * SR, np.float32))
    signal = np.concatenate(parts)
    signal += rng.normal(0, 0.001, len(signal)).astype(np.float32)  # -60 dBFS room noise
    return signal, spans


def _covered(span, regions) -> float:
    s, e = span
    return sum(max(0.0, min(e, b) - max(s, a)) for a, b in regions) / (e - s)


def _check_pieces(found: list[Piece], regions, duration: float, limit: float) -> None:
    assert found
    for p in found:
        assert p.duration <= limit + 1e-9
        assert 0.0 <= p.start < p.end <= duration + 1e-9
    for a, b in itertools.pairwise(found):
        assert a.end <= b.start
    # a region shorter than the limit lies inside one piece: no cut inside it
    for s, e in regions:
        if e - s <= limit:
            assert any(p.start <= s and e <= p.end for p in found), (s, e)


# ---------------------------------------------------------------- real recordings


def test_jfk_regions_cover_the_speech():
    import torch

    audio = load_audio(AUDIO / "jfk.flac")
    threads = torch.get_num_threads()
    regions = vad.speech_regions(audio)
    assert torch.get_num_threads() == threads  # the VAD's one-thread setting is undone
    assert regions and all(0 <= s < e <= audio.duration for s, e in regions)
    assert _covered((0.5, 10.3), regions) > 0.75  # he speaks from ~0.3 s to ~10.5 s
    assert regions == sorted(regions)


def test_multilingual_pause_is_found_and_file_streams_like_the_array():
    path = AUDIO / "multilingual.mp3"
    regions = vad.speech_regions(path)  # streamed block by block from the file
    assert not any(s < 30.0 < e for s, e in regions)  # the ~1.5 s pause around 30 s
    assert _covered((1.0, 28.0), regions) > 0.9
    whole = vad.speech_regions(load_audio(path).samples)
    assert len(whole) == len(regions)
    assert np.allclose(np.array(whole), np.array(regions), atol=0.1)


def test_stream_audio_matches_load_audio(tmp_path):
    if shutil.which("ffmpeg") is None:
        pytest.skip("ffmpeg is not installed")
    m4a = tmp_path / "jfk.m4a"  # not a libsndfile format: exercises the PyAV path
    subprocess.run(["ffmpeg", "-loglevel", "error", "-i", str(AUDIO / "jfk.flac"), str(m4a)], check=True)
    for path in (AUDIO / "jfk.flac", m4a):
        blocks = list(vad.stream_audio(path, block_s=2.0))
        assert all(len(b) == 2 * SR for b in blocks[:-1]) and all(b.dtype == np.float32 for b in blocks)
        streamed = np.concatenate(blocks)
        whole = load_audio(path).samples
        assert abs(len(streamed) - len(whole)) < 0.01 * SR
        n = min(len(streamed), len(whole))
        assert np.abs(streamed[:n] - whole[:n]).max() < 0.02


def test_stream_audio_rejects_bad_files(tmp_path):
    from medasr.errors import AudioError

    with pytest.raises(AudioError):
        list(vad.stream_audio(tmp_path / "missing.wav"))
    junk = tmp_path / "junk.wav"
    junk.write_bytes(b"not audio at all" * 10)
    with pytest.raises(AudioError):
        list(vad.stream_audio(junk))


# ---------------------------------------------------------------- synthetic layouts


def test_silence_gives_no_regions():
    rng = np.random.default_rng(0)
    for signal in (np.zeros(20 * SR, np.float32), rng.normal(0, 0.002, 20 * SR).astype(np.float32)):
        for method in ("silero", "energy"):
            assert vad.speech_regions(signal, VadOptions(method=method)) == []
            assert vad.pieces(signal, VadOptions(method=method)) == []


@pytest.mark.parametrize("method", ["silero", "energy"])
def test_long_recording_regions_and_pieces(long_recording, method):
    signal, spans = long_recording
    duration = len(signal) / SR
    options = VadOptions(method=method)
    found = vad.pieces(signal, options)
    regions = [r for p in found for r in p.regions]
    # every clip is found, and little speech is reported in the long silences
    assert min(_covered(span, regions) for span in spans) > 0.7
    speech = [(s - 0.5, e + 0.5) for s, e in spans]
    outside = sum((e - s) * (1 - _covered((s, e), speech)) for s, e in regions)
    assert outside < 0.05 * sum(e - s for s, e in regions)
    _check_pieces(found, regions, duration, options.max_piece_s)
    assert regions == vad.speech_regions(signal, options)  # no region is longer than 30 s here
    assert len(found) < len(regions)  # packing merged regions
    assert max(p.duration for p in found) > 20.0


def test_streaming_input_gives_the_same_pieces(long_recording, tmp_path):
    signal, _ = long_recording
    signal = signal[: 3 * 60 * SR]
    path = tmp_path / "long.wav"
    sf.write(path, signal, SR, subtype="FLOAT")
    from_array = vad.pieces(signal)
    from_file = vad.pieces(path)
    odd_blocks = (signal[i : i + 7777] for i in range(0, len(signal), 7777))  # not window-aligned
    assert from_file == from_array
    assert vad.pieces(odd_blocks) == from_array
    for piece, samples in vad.piece_audio(path, from_array, block_s=7.0):
        assert np.array_equal(samples, piece.slice(signal))


def test_short_limit_cuts_only_between_regions(long_recording):
    signal, _ = long_recording
    options = VadOptions(max_piece_s=8.0, cut_search_s=2.0)
    found = vad.pieces(signal[: 4 * 60 * SR], options)
    regions = vad.speech_regions(signal[: 4 * 60 * SR], options)
    _check_pieces(found, regions, 240.0, 8.0)


def test_long_speech_region_is_cut_at_a_quiet_point(clips):
    """65 s of speech with only short pauses; a 150 ms gap of silence is planted at 27 s."""
    rng = np.random.default_rng(3)
    parts, pos = [], 0
    while pos < 65 * SR:
        clip = clips[int(rng.integers(len(clips)))]
        parts += [clip, np.zeros(int(0.06 * SR), np.float32)]
        pos += len(clip) + int(0.06 * SR)
    signal = np.concatenate(parts)
    signal += rng.normal(0, 0.003, len(signal)).astype(np.float32)
    gap = slice(27 * SR, int(27.15 * SR))
    signal[gap] = 0.0  # the quietest place in [25 s, 30 s]
    options = VadOptions(min_silence_ms=1000)  # keep the whole stretch one region
    regions = vad.speech_regions(signal, options)
    assert len(regions) == 1 and regions[0][1] - regions[0][0] > 60
    for method in ("silero", "energy", "none"):
        found = vad.pieces(signal, VadOptions(method=method, min_silence_ms=1000))
        assert len(found) >= 3
        _check_pieces(found, [], len(signal) / SR, 30.0)
        first_cut = found[0].end
        assert 27.0 <= first_cut <= 27.15, (method, first_cut)
        for a, b in itertools.pairwise(found):  # consecutive: nothing dropped inside the region
            assert a.end == b.start
            cut = round(a.end * SR)
            here = np.mean(signal[cut - 800 : cut + 800] ** 2)
            windows = signal[max(0, cut - 5 * SR) : cut + 800][: 5 * SR // 1600 * 1600].reshape(-1, 1600)
            assert here <= np.quantile(np.mean(windows**2, axis=1), 0.2)


def test_none_method_covers_everything(long_recording):
    signal, _ = long_recording
    signal = signal[: 200 * SR + 123]
    found = vad.pieces(signal, VadOptions(method="none"))
    assert found[0].start == 0.0 and found[-1].end == len(signal) / SR
    assert all(a.end == b.start for a, b in itertools.pairwise(found))
    assert all(25.0 <= p.duration <= 30.0 for p in found[:-1])
    assert vad.speech_regions(signal, VadOptions(method="none")) == [(0.0, len(signal) / SR)]


def test_options_are_checked():
    with pytest.raises(ValueError):
        VadOptions(method="webrtc")
    with pytest.raises(ValueError):
        VadOptions(max_piece_s=10.0, cut_search_s=10.0)
    assert vad.pieces(np.zeros(0, np.float32)) == []


# ---------------------------------------------------------------- the model port


@pytest.fixture(scope="module")
def silero_jit():
    """The package's TorchScript model, as a reference only (medasr never loads it).

    torch.jit.load reads a TorchScript archive from the installed wheel; it is used here to
    check the hand-written module, since the safetensors checkpoint is a separate export whose
    weights differ from the JIT/ONNX ones.
    """
    import torch
    path = vad.silero_weights_path().parent / "silero_vad.jit"
    if not path.is_file():
        pytest.skip("silero_vad.jit not in the wheel")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return torch.jit.load(str(path)).eval()


def _jit_probs(jit, signal: np.ndarray) -> np.ndarray:
    import torch

    x = torch.from_numpy(np.pad(signal, (0, -len(signal) % vad.WINDOW)))
    with vad._torch_threads(1), torch.inference_mode():  # one thread: ~10x faster for 512 samples
        jit.reset_states()
        return np.array([jit(x[i : i + vad.WINDOW].unsqueeze(0), SR).item() for i in range(0, len(x), vad.WINDOW)])


def test_port_matches_silero_torchscript(silero_jit):
    """Given the TorchScript model's own weights, the module computes its outputs (conv and FFT paths)."""
    import torch

    params = dict(silero_jit._model.named_parameters())
    state = {"stft_conv.weight": dict(silero_jit._model.named_buffers())["stft.forward_basis_buffer"]}
    for i in range(4):
        for k in ("weight", "bias"):
            state[f"conv{i + 1}.{k}"] = params[f"encoder.{i}.reparam_conv.{k}"]
    for k in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
        state[f"lstm.{k}_l0"] = params[f"decoder.rnn.{k}"]
    for k in ("weight", "bias"):
        state[f"final_conv.{k}"] = params[f"decoder.decoder.2.{k}"]
    model = vad._torch_module()()
    model.load_state_dict({k: v.detach() for k, v in state.items()})
    model.eval()

    rng = np.random.default_rng(1)
    n = 150 * vad.WINDOW
    signal = (rng.normal(0, 0.05, n) * np.sin(np.arange(n) / 900.0)).astype(np.float32)
    ref = _jit_probs(silero_jit, signal)
    padded = np.concatenate([np.zeros(vad.CONTEXT, np.float32), signal])
    windows = np.lib.stride_tricks.sliding_window_view(padded, vad.CONTEXT + vad.WINDOW)[:: vad.WINDOW].copy()
    for fft in (False, True):
        if fft:
            assert model.use_fft()
        ours, st = [], None
        with vad._torch_threads(1), torch.inference_mode():
            for chunk in np.array_split(windows, 3):  # state carried across calls, as when streaming
                probs, st = model.decode(model.encode(torch.from_numpy(chunk)), st)
                ours.append(probs.numpy())
        assert np.abs(np.concatenate(ours) - ref).max() < 1e-4


def test_safetensors_model_agrees_with_torchscript_on_speech(silero_jit):
    """The shipped safetensors weights decide speech like the package's default model."""
    signal = load_audio(AUDIO / "multilingual.mp3").samples[: 20 * SR]
    ours = vad._scan(signal, VadOptions()).scores
    assert np.mean((ours > 0.5) == (_jit_probs(silero_jit, signal) > 0.5)) > 0.95
