"""Every file decoded whole, whatever its headers claim: MP3s joined with `cat` (different bitrates,
rates and channel counts, no Xing/Info header), VBR without a length header, truncated files and
files with a damaged stretch. `load_audio`, `stream_audio`, `probe_duration`, the Python API and the
server's duration cap all see the same, whole length."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import soundfile as sf
from conftest import ffmpeg

from medasr.audio.decode import SAMPLE_RATE, load_audio, probe_duration, stream_audio
from medasr.errors import AudioError


def _seconds(blocks) -> float:
    return sum(len(b) for b in blocks) / SAMPLE_RATE


@pytest.mark.parametrize("name,parts", [("joined", ("a", "b")), ("joined_rates", ("a", "b22")), ("vbr", ())])
def test_files_without_length_headers_decode_whole(mp3s, name, parts):
    path = mp3s[name]
    whole = sum(load_audio(mp3s[p]).duration for p in parts) if parts else 11.0
    assert whole > 32.9 or not parts  # the joined files are 33 s
    # what the first frame's bitrate suggests is far off: the bug this guards against
    assert abs(sf.info(path).duration - whole) > 2.0
    assert load_audio(path).duration == pytest.approx(whole, abs=0.06)
    assert _seconds(stream_audio(path, block_s=5.0)) == pytest.approx(whole, abs=0.06)
    assert probe_duration(path) == pytest.approx(whole, abs=0.06)
    data = path.read_bytes()
    assert load_audio(data).duration == pytest.approx(whole, abs=0.06)  # bytes (uploads) too


def test_joined_parts_keep_their_samples(mp3s):
    """The joined file is its parts end to end: the second part is not resampled, shifted or lost."""
    joined = load_audio(mp3s["joined"]).samples
    a, b = load_audio(mp3s["a"]).samples, load_audio(mp3s["b"]).samples
    assert abs(len(joined) - len(a) - len(b)) < 0.06 * SAMPLE_RATE
    # the second part, aligned on the end (resampling the join may shift it by a sample)
    ref = b[SAMPLE_RATE:-SAMPLE_RATE]
    end = len(joined) - SAMPLE_RATE
    best = max(np.corrcoef(joined[end - len(ref) + lag : end + lag], ref)[0, 1] for lag in range(-2, 3))
    assert best > 0.99


def test_truncated_files_decode_up_to_where_they_end(mp3s, shared_audio, tmp_path, caplog):
    data = mp3s["joined"].read_bytes()
    cut = tmp_path / "cut.mp3"
    cut.write_bytes(data[:-8000])  # the last ~2 s of the 32 kb/s (4 kB/s) part are gone
    got = load_audio(cut).duration
    assert 30.0 < got < 32.5
    assert _seconds(stream_audio(cut)) == pytest.approx(got, abs=0.06)
    assert probe_duration(cut) == pytest.approx(got, abs=0.06)
    flac = tmp_path / "cut.flac"
    raw = (shared_audio / "jfk.flac").read_bytes()
    flac.write_bytes(raw[: len(raw) * 2 // 3])  # its header still says 11 s
    assert sf.info(shared_audio / "jfk.flac").duration == pytest.approx(11.0, abs=0.01)
    with caplog.at_level(logging.WARNING, logger="medasr.audio.ffmpeg"):
        got = load_audio(flac).duration
    assert 6.0 < got < 8.0
    assert "cut.flac: undecodable data at" in caplog.text and "to the end of the file" in caplog.text


def test_a_damaged_stretch_is_decoded_around_with_a_warning(mp3s, tmp_path, caplog):
    data = mp3s["a"].read_bytes()  # 11.05 s at 192 kb/s: 24 kB a second
    mid = len(data) // 2
    for name, junk in (("zeros", bytes(20000)), ("noise", np.random.default_rng(0).integers(0, 256, 20000, np.uint8).tobytes())):
        bad = tmp_path / f"{name}.mp3"
        bad.write_bytes(data[:mid] + junk + data[mid + 20000 :])  # 0.83 s of audio overwritten
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="medasr.audio.ffmpeg"):
            samples = load_audio(bad).samples
        # the gap is filled with silence of the length it stood for: the timeline is kept
        assert len(samples) / SAMPLE_RATE == pytest.approx(11.05, abs=0.1)
        assert f"{name}.mp3: undecodable data at 5.5" in caplog.text and "replaced by silence" in caplog.text
        hole = samples[int(5.6 * SAMPLE_RATE) : int(6.2 * SAMPLE_RATE)]
        assert np.abs(hole).max() == 0.0
        assert _seconds(stream_audio(bad)) == pytest.approx(len(samples) / SAMPLE_RATE, abs=0.01)
    mostly = tmp_path / "mostly.mp3"
    mostly.write_bytes(data[:20000] + bytes(len(data) - 20000))
    with pytest.raises(AudioError, match="mostly.mp3: cannot decode audio: .* bytes are damaged"):
        load_audio(mostly)


def test_server_duration_cap_counts_packets_not_headers(mp3s, tmp_path):
    """The cap refuses long audio before decoding it, by its real length: not fooled by a VBR file
    whose first frame suggests twice its length, nor by a joined file whose header says 14 s."""
    from medasr.server.inputs import _decode_capped, _TooLong

    vbr = mp3s["vbr"].read_bytes()
    assert sf.info(mp3s["vbr"]).duration > 20.0  # what the header-based estimate said
    assert len(_decode_capped(vbr, "vbr.mp3", max_s=15.0)) / SAMPLE_RATE == pytest.approx(11.0, abs=0.1)
    with pytest.raises(_TooLong) as info:
        _decode_capped(mp3s["joined"].read_bytes(), "joined.mp3", max_s=20.0)
    assert info.value.seconds == pytest.approx(33.07, abs=0.1)
    # a long stretch of compressed silence is refused from its packets, without decoding it
    silence = tmp_path / "silence.mp3"
    ffmpeg("-f", "lavfi", "-i", "anullsrc=r=8000:cl=mono", "-t", "600", "-c:a", "libmp3lame", "-b:a", "8k", silence)
    with pytest.raises(_TooLong) as info:
        _decode_capped(silence.read_bytes(), "silence.mp3", max_s=60.0)
    assert info.value.seconds == pytest.approx(600.0, abs=1.0)


def test_python_api_transcribes_the_joined_file_over_its_whole_length(tiny_model, mp3s):
    from medasr.transcribe import load_model

    asr = load_model(str(tiny_model["transformers"]), device="cpu")
    t = asr.transcribe(str(mp3s["joined"]), max_new_tokens=4, vad="energy")[0]
    assert t.error is None and t.duration == pytest.approx(33.07, abs=0.06)
    assert t.segments and max(s.end for s in t.segments) > 30.0  # the second recording is heard
