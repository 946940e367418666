import base64
import http.server
import subprocess
import threading

import numpy as np
import pytest
import soundfile as sf

from medasr.audio.decode import SAMPLE_RATE, expand_inputs, load_audio
from medasr.errors import AudioError

EXPECTED = {"jfk.flac": 11.0, "hotwords.mp3": 4.0, "multilingual.mp3": 59.9, "stereo_diarization.wav": 5.0}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_real_recordings_decode_to_16k_mono_with_right_duration(shared_audio, name):
    a = load_audio(shared_audio / name)
    assert a.samples.dtype == np.float32 and a.samples.ndim == 1
    assert a.duration == pytest.approx(EXPECTED[name], abs=0.06)
    assert 0.01 < np.abs(a.samples).max() <= 1.0


def test_stereo_is_mixed_by_channel_mean(shared_audio):
    raw, rate = sf.read(shared_audio / "stereo_diarization.wav", dtype="float32")
    assert rate == SAMPLE_RATE and raw.shape[1] == 2
    mixed = load_audio(shared_audio / "stereo_diarization.wav").samples
    np.testing.assert_allclose(mixed, raw.mean(axis=1), atol=1e-6)
    # (channels, time) arrays are recognised too
    np.testing.assert_allclose(load_audio((raw.T, rate)).samples, mixed, atol=1e-6)


def test_espeak_clip_is_resampled_keeping_duration(speech_clips):
    info = sf.info(speech_clips[1])
    assert info.samplerate == 22050
    a = load_audio(speech_clips[1])
    assert len(a.samples) == pytest.approx(info.frames * SAMPLE_RATE / 22050, abs=2)


@pytest.mark.parametrize("ext,codec", [("m4a", "aac"), ("webm", "libopus"), ("opus", "libopus"), ("ogg", "libvorbis"), ("mp3", "libmp3lame")])
def test_compressed_containers_decode(shared_audio, tmp_path, ext, codec):
    out = tmp_path / f"jfk.{ext}"
    subprocess.run(["ffmpeg", "-loglevel", "error", "-y", "-i", str(shared_audio / "jfk.flac"), "-c:a", codec, str(out)], check=True)
    a = load_audio(out)
    assert a.duration == pytest.approx(11.0, abs=0.1)


def test_bytes_base64_data_url_and_array_give_the_same_signal(speech_clips):
    path = speech_clips[0]
    ref = load_audio(path).samples
    data = path.read_bytes()
    b64 = base64.b64encode(data).decode()
    for source in (data, b64, f"data:audio/wav;base64,{b64}"):
        np.testing.assert_array_equal(load_audio(source).samples, ref)
    raw, rate = sf.read(path, dtype="float32")
    np.testing.assert_allclose(load_audio((raw, rate)).samples, ref, atol=1e-6)


def test_http_url_is_fetched(speech_clips):
    directory = str(speech_clips[0].parent)
    handler = lambda *a, **k: http.server.SimpleHTTPRequestHandler(*a, directory=directory, **k)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_port}/{speech_clips[0].name}"
        np.testing.assert_array_equal(load_audio(url).samples, load_audio(speech_clips[0]).samples)
        with pytest.raises(AudioError, match="could not download"):
            load_audio(f"http://127.0.0.1:{server.server_port}/missing.wav")
    finally:
        server.shutdown()


def test_bad_inputs_raise_one_clear_error_naming_the_input(tmp_path):
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    garbage = tmp_path / "garbage.mp3"
    garbage.write_bytes(b"this is not audio at all" * 50)
    silent_header = tmp_path / "zero.wav"
    sf.write(silent_header, np.zeros(0, dtype=np.float32), 16000)
    cases = {
        str(tmp_path / "missing.wav"): "no such file",
        str(empty): "empty",
        str(garbage): "cannot decode",
        str(silent_header): "no audio samples",
        str(tmp_path): "directory",
        "data:audio/wav;base64,%%%": "invalid base64",
    }
    for source, problem in cases.items():
        with pytest.raises(AudioError, match=problem) as info:
            load_audio(source)
        assert source[:20] in str(info.value) or source.startswith("data:")
    with pytest.raises(AudioError, match="zero length"):
        load_audio((np.zeros(0, dtype=np.float32), 16000))
    with pytest.raises(AudioError, match="NaN"):
        load_audio((np.full(100, np.nan, dtype=np.float32), 16000))
    with pytest.raises(AudioError, match="unsupported"):
        load_audio(3.5)


def test_directories_expand_to_audio_files(tmp_path, speech_clips):
    (tmp_path / "sub").mkdir()
    for i, clip in enumerate(speech_clips[:2]):
        (tmp_path / ("sub" if i else ".") / clip.name).write_bytes(clip.read_bytes())
    (tmp_path / "notes.txt").write_text("not audio")
    found = expand_inputs([str(tmp_path), "https://example.org/a.wav"])
    assert [p.split("/")[-1] for p in found] == [speech_clips[0].name, speech_clips[1].name, "a.wav"]
