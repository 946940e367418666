"""Shared fixtures: tiny Qwen3-ASR models of the real architecture, built here (no downloads),
in both checkpoint formats, and short speech clips spoken by espeak-ng."""

from __future__ import annotations

import re
import shutil
import subprocess
import urllib.request
from pathlib import Path

import pytest

# Real recordings kept in the repository (origin and licence: fixtures/audio/README.md).
SHARED_AUDIO = Path(__file__).resolve().parent / "fixtures" / "audio"

TOKENIZER_TEXTS = [
    "The patient was started on 40 milligrams of atorvastatin once daily.",
    "Chest pain radiating to the left arm, no shortness of breath.",
    "Metoprolol 25 mg twice daily; amoxicillin 500 mg three times a day.",
    "CT of the abdomen showed no evidence of appendicitis.",
    "Blood pressure 120 over 80, heart rate 72, oxygen saturation 98 percent.",
]


def build_tiny(dst: Path, seed: int = 0) -> dict[str, Path]:
    """A tiny random Qwen3-ASR model saved in both formats; returns {'original': dir, 'transformers': dir}."""
    from medasr.model import build as modelbuild
    from medasr.model import checkpoint

    tok = modelbuild.train_tokenizer(TOKENIZER_TEXTS * 10, vocab_size=400)
    model = modelbuild.build_model(modelbuild.make_config(tok, "tiny"), seed=seed, init_std=0.5)
    proc = modelbuild.make_processor(tok)
    dirs = {"original": dst / "original", "transformers": dst / "transformers"}
    checkpoint.save_original(model, proc, dirs["original"])
    checkpoint.save_transformers(model, proc, dirs["transformers"])
    return dirs


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> dict[str, Path]:
    return build_tiny(tmp_path_factory.mktemp("tiny"))


@pytest.fixture(scope="session")
def tiny_aligner(tmp_path_factory) -> dict:
    """A tiny random aligner in both formats (400 bins of 80 ms)."""
    from medasr.model import build as modelbuild
    from medasr.model.aligner import save_aligner_original, save_aligner_transformers

    tok = modelbuild.train_tokenizer(TOKENIZER_TEXTS * 10, vocab_size=400)
    model = modelbuild.build_aligner(modelbuild.make_aligner_config(tok, "tiny", classes=400), seed=1, init_std=1.0)
    proc = modelbuild.make_aligner_processor(tok)
    root = tmp_path_factory.mktemp("tiny-aligner")
    save_aligner_original(model, proc, root / "original")
    save_aligner_transformers(model, proc, root / "transformers")
    return {"original": root / "original", "transformers": root / "transformers", "model": model}


def speak(text: str, path: Path, voice: str = "en-us", speed: int = 175) -> Path:
    """Real synthetic speech: espeak-ng writes a 22.05 kHz mono wav."""
    if shutil.which("espeak-ng") is None:
        pytest.fail("espeak-ng is not installed (apt-get install espeak-ng); .ci/run installs it")
    subprocess.run(["espeak-ng", "-v", voice, "-s", str(speed), "-w", str(path), text], check=True)
    return path


@pytest.fixture(scope="session")
def speech_clips(tmp_path_factory) -> list[Path]:
    d = tmp_path_factory.mktemp("speech")
    texts = [
        "The patient takes metoprolol.",
        "Chest pain radiating to the left arm since this morning.",
        "No.",
        "Amoxicillin five hundred milligrams three times a day for seven days.",
    ]
    return [speak(t, d / f"clip{i}.wav") for i, t in enumerate(texts)]


@pytest.fixture(scope="session")
def shared_audio() -> Path:
    if not SHARED_AUDIO.exists():
        pytest.fail(f"the test recordings are missing: {SHARED_AUDIO}")
    return SHARED_AUDIO


def server_metric(base: str, name: str) -> float:
    """The value of one unlabelled series on a running server's /metrics; a series the server
    does not export fails the test."""
    text = urllib.request.urlopen(base + "/metrics", timeout=30).read().decode()
    found = re.search(rf"^{re.escape(name)} (\S+)$", text, re.M)
    assert found, f"the server exports no {name}"
    return float(found.group(1))


def ffmpeg(*args) -> None:
    if shutil.which("ffmpeg") is None:
        pytest.fail("ffmpeg is not installed (apt-get install ffmpeg): it makes the test MP3s")
    subprocess.run(["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", *map(str, args)], check=True)


@pytest.fixture(scope="session")
def mp3s(shared_audio, tmp_path_factory) -> dict:
    """11 s at 192 kb/s then 22 s at 32 kb/s (and a 22 s part at 22.05 kHz mono), no length headers."""
    d = tmp_path_factory.mktemp("mp3s")
    a, b, b22 = d / "a.mp3", d / "b.mp3", d / "b22.mp3"
    ffmpeg("-i", shared_audio / "jfk.flac", "-c:a", "libmp3lame", "-b:a", "192k", "-write_xing", "0", a)
    speech = ("-i", shared_audio / "multilingual.mp3", "-t", "22")
    ffmpeg(*speech, "-ar", "44100", "-ac", "2", "-c:a", "libmp3lame", "-b:a", "32k", "-write_xing", "0", b)
    ffmpeg(*speech, "-ar", "22050", "-ac", "1", "-c:a", "libmp3lame", "-b:a", "24k", "-write_xing", "0", b22)
    joined, joined_rates = d / "joined.mp3", d / "joined_rates.mp3"
    joined.write_bytes(a.read_bytes() + b.read_bytes())  # `cat a.mp3 b.mp3 > joined.mp3`
    joined_rates.write_bytes(a.read_bytes() + b22.read_bytes())
    vbr = d / "vbr.mp3"
    ffmpeg("-i", shared_audio / "jfk.flac", "-c:a", "libmp3lame", "-q:a", "6", "-write_xing", "0", vbr)
    return {"a": a, "b": b, "b22": b22, "joined": joined, "joined_rates": joined_rates, "vbr": vbr}
