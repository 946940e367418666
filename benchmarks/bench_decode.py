"""Decoding speed and completeness: `stream_audio` (FFmpeg, to the last packet) against reading the
same file with libsndfile, mixed and resampled alike (what `stream_audio` did before for
wav/flac/ogg/mp3: libsndfile trusts the header's length), on one recording in several containers
and on two MP3s joined with `cat`.

    python benchmarks/bench_decode.py --minutes 10

CPU seconds (process time) of one pass, best of three; seconds decoded show what each reader got.
"""

from __future__ import annotations

import argparse
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

from medasr.audio.decode import SAMPLE_RATE, probe_duration, stream_audio
from medasr.audio.ffmpeg import mix

FIXTURE = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "audio"


def ffmpeg(*args) -> None:
    subprocess.run(["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", *map(str, args)], check=True)


def best_of(fn, reps: int = 3) -> tuple[float, float]:
    times, got = [], 0.0
    for _ in range(reps):
        t = time.process_time()
        got = fn()
        times.append(time.process_time() - t)
    return min(times), got


def by_ffmpeg(path: Path) -> float:
    return sum(len(b) for b in stream_audio(path)) / SAMPLE_RATE


def by_libsndfile(path: Path) -> float:
    """What stream_audio did before: libsndfile blocks, mixed, resampled with the same soxr stream."""
    import soxr

    with sf.SoundFile(str(path)) as f:
        stream = soxr.ResampleStream(f.samplerate, SAMPLE_RATE, 1, dtype="float32", quality="HQ") if f.samplerate != SAMPLE_RATE else None
        n = 0
        for block in f.blocks(1 << 16, dtype="float32", always_2d=True):
            mono = mix(block.T)  # the channel mean, as stream_audio computes it
            n += len(stream.resample_chunk(mono) if stream else mono)
        return (n + (len(stream.resample_chunk(np.zeros(0, np.float32), last=True)) if stream else 0)) / SAMPLE_RATE


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=10.0)
    args = ap.parse_args()
    seconds = args.minutes * 60
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        loops = int(seconds // 11) + 1
        src = tmp / "long.flac"  # jfk.flac (11 s, 44.1 kHz stereo) looped
        ffmpeg("-stream_loop", loops, "-i", FIXTURE / "jfk.flac", "-t", seconds, "-c:a", "flac", src)
        files = {"FLAC 44.1 kHz stereo": src, "WAV 16 kHz mono": tmp / "long.wav", "MP3 64 kb/s": tmp / "long.mp3"}
        ffmpeg("-i", src, "-ar", 16000, "-ac", 1, files["WAV 16 kHz mono"])
        ffmpeg("-i", src, "-c:a", "libmp3lame", "-b:a", "64k", files["MP3 64 kb/s"])
        half = tmp / "half.mp3"  # the second half at a lower bitrate, no length headers, joined with cat
        ffmpeg("-i", src, "-t", seconds / 2, "-c:a", "libmp3lame", "-b:a", "128k", "-write_xing", 0, tmp / "a.mp3")
        ffmpeg("-i", src, "-ss", seconds / 2, "-c:a", "libmp3lame", "-b:a", "32k", "-write_xing", 0, half)
        joined = tmp / "joined.mp3"
        joined.write_bytes((tmp / "a.mp3").read_bytes() + half.read_bytes())
        files["MP3 joined (128 + 32 kb/s)"] = joined
        print(f"{'file':28s} {'seconds':>9s} | {'stream_audio (FFmpeg)':>28s} | {'before (libsndfile)':>28s} | probe_duration")
        for name, path in files.items():
            t_new, got_new = best_of(lambda path=path: by_ffmpeg(path))
            t_old, got_old = best_of(lambda path=path: by_libsndfile(path))
            t_probe, probed = best_of(lambda path=path: probe_duration(path))
            print(f"{name:28s} {seconds:9.1f} | {got_new:7.1f} s in {t_new:5.2f} s ({got_new / t_new:5.0f}x) | "
                  f"{got_old:7.1f} s in {t_old:5.2f} s ({got_old / t_old:5.0f}x) | {probed:7.1f} s in {t_probe:4.2f} s")


if __name__ == "__main__":
    main()
