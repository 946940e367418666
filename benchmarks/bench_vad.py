"""Speed and memory of the VAD on long recordings.

    python benchmarks/bench_vad.py [--minutes 10] [--memory-minutes 60] [--rate 44100]

1. Speed (x real time) of each method on a synthetic recording: the shared real recordings and
   espeak-ng clinical sentences (when installed) between 1.5-6 s silences over faint noise.
2. Peak memory (ru_maxrss) of streaming a long file through `vad.pieces`: the file is made by
   repeating the shared recordings, written block by block with soundfile (FLAC at --rate, so
   decoding and streaming resampling are part of it), then processed in a fresh subprocess so
   the figure is that process's own peak; a second subprocess loads the whole file with
   `load_audio` first, for contrast.
Prints figures only.
"""

from __future__ import annotations

import argparse
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr
from _peak import child_env  # beside this script

from medasr.audio import vad
from medasr.audio.decode import SAMPLE_RATE, load_audio

AUDIO = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "audio"
SENTENCES = [
    "The patient presents with acute chest pain radiating to the left arm.",
    "Start metoprolol twenty five milligrams twice daily and recheck in two weeks.",
    "Chest x-ray shows no consolidation, effusion or pneumothorax.",
    "Impression: community acquired pneumonia of the right lower lobe.",
]


def speech_clips(tmp: Path) -> list[np.ndarray]:
    clips = [load_audio(p).samples for p in sorted(AUDIO.glob("*")) if p.suffix in (".flac", ".mp3", ".wav")]
    if shutil.which("espeak-ng"):
        for i, text in enumerate(SENTENCES):
            out = tmp / f"s{i}.wav"
            subprocess.run(["espeak-ng", "-v", "en-us", "-w", str(out), text], check=True)
            clip, rate = sf.read(out, dtype="float32")
            clips.append(soxr.resample(clip, rate, SAMPLE_RATE).astype(np.float32))
    if not clips:
        sys.exit("no speech: neither tests/fixtures/audio nor espeak-ng is available")
    return clips


def layout(clips: list[np.ndarray], seconds: float, rng) -> list[np.ndarray]:
    parts, n = [], 0
    while n < seconds * SAMPLE_RATE:
        gap = np.zeros(int(rng.uniform(1.5, 6.0) * SAMPLE_RATE), np.float32)
        speech = clips[int(rng.integers(len(clips)))] * np.float32(rng.uniform(0.3, 1.0))
        block = np.concatenate([gap, speech])
        block += rng.normal(0, 0.001, len(block)).astype(np.float32)
        parts.append(block)
        n += len(block)
    return parts


def bench_speed(clips, minutes: float) -> None:
    signal = np.concatenate(layout(clips, minutes * 60, np.random.default_rng(0)))
    seconds = len(signal) / SAMPLE_RATE
    vad.load_silero()  # load once, outside the timings
    print(f"speed on {seconds / 60:.1f} min of synthetic speech and silence (16 kHz array input)")
    cases = [
        ("silero, 1 thread (default)", vad.VadOptions()),
        ("silero, torch's default threads", vad.VadOptions(threads=None)),
        ("energy", vad.VadOptions(method="energy")),
        ("none", vad.VadOptions(method="none")),
    ]
    for name, options in cases:
        t = time.perf_counter()
        found = vad.pieces(signal, options)
        dt = time.perf_counter() - t
        print(f"  {name:34s} {dt:6.2f} s  {seconds / dt:7.0f}x real time  {len(found)} pieces")
    # the recurrent model stepped one 32 ms window per call, as silero's own get_speech_timestamps does
    part = signal[: 60 * SAMPLE_RATE]
    t = time.perf_counter()
    vad.pieces(part, vad.VadOptions(batch_windows=1))
    dt = time.perf_counter() - t
    print(f"  {'silero, one window per call':34s} {dt:6.2f} s  {60 / dt:7.0f}x real time  (first 60 s only)")


def write_long(clips, minutes: float, rate: int, path: Path) -> float:
    """Write block by block so this process never holds the whole recording."""
    rng = np.random.default_rng(1)
    n = 0
    with sf.SoundFile(path, "w", samplerate=rate, channels=2, format="FLAC", subtype="PCM_16") as f:
        while n < minutes * 60 * SAMPLE_RATE:
            for block in layout(clips, 60, rng):
                n += len(block)
                up = soxr.resample(block, SAMPLE_RATE, rate) if rate != SAMPLE_RATE else block
                f.write(np.stack([up, up], axis=1))
    return n / SAMPLE_RATE


CHILD = """
import resource, sys, time
from medasr.audio import vad
from medasr.audio.decode import load_audio
from _peak import peak_mb, reset_peak

vad.pieces(sys.argv[3])  # a short file of the same kind: loads libraries and warms torch up
after_imports = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
reset_peak()
base = peak_mb()
t = time.perf_counter()
audio = load_audio(sys.argv[1]).samples if sys.argv[2] == "whole" else sys.argv[1]
found = vad.pieces(audio)
dt = time.perf_counter() - t
print(after_imports, base, peak_mb(), resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, dt, len(found),
      max(p.duration for p in found))
"""


def bench_memory(clips, minutes: float, rate: int, tmp: Path) -> None:
    path = tmp / "long.flac"
    t = time.perf_counter()
    seconds = write_long(clips, minutes, rate, path)
    print(
        f"\nmemory: {seconds / 60:.1f} min, {rate} Hz stereo FLAC ({path.stat().st_size / 2**20:.0f} MB), "
        f"written in {time.perf_counter() - t:.0f} s; peak RSS of a fresh process (ru_maxrss)"
    )
    warm = tmp / "warm.flac"
    sf.write(warm, np.zeros((2 * rate, 2), np.float32), rate, format="FLAC", subtype="PCM_16")
    for mode, what in (("stream", "vad.pieces(path): streamed"), ("whole", "load_audio(path) then vad.pieces")):
        out = subprocess.run(
            [sys.executable, "-c", CHILD, str(path), mode, str(warm)],
            check=True, capture_output=True, text=True, env=child_env(),
        )
        imports, base, peak, maxrss, dt, count, longest = (float(x) for x in out.stdout.split())
        print(
            f"  {what:36s} ru_maxrss {maxrss:5.0f} MB (imports + model: {imports:.0f} MB); "
            f"VmHWM {base:.0f} -> {peak:.0f} MB (+{peak - base:.0f} MB)"
        )
        print(f"  {'':36s} {dt:5.1f} s = {seconds / dt:.0f}x real time, {count:.0f} pieces <= {longest:.1f} s")
    t = time.perf_counter()
    for _ in vad.stream_audio(path):
        pass
    dt = time.perf_counter() - t
    print(f"  {'decoding alone (stream_audio)':36s} {dt:5.1f} s = {seconds / dt:.0f}x real time")
    print(f"  (the decoded signal alone would be {seconds * SAMPLE_RATE * 4 / 2**20:.0f} MB of float32)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=10.0, help="length of the speed test recording")
    ap.add_argument("--memory-minutes", type=float, default=60.0, help="length of the streamed file (0: skip)")
    ap.add_argument("--rate", type=int, default=44100, help="sample rate of the streamed file")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        clips = speech_clips(Path(tmp))
        bench_speed(clips, args.minutes)
        if args.memory_minutes > 0:
            bench_memory(clips, args.memory_minutes, args.rate, Path(tmp))
    print(f"\nthis process's own peak RSS: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")


if __name__ == "__main__":
    main()
