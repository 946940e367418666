"""Peak memory and speed of transcribing one long recording: streamed file against decoded whole.

    python benchmarks/bench_longform.py [--minutes 60] [--rate 44100] [--model DIR] [--max-new-tokens 4]

The recording is bench_vad.py's: the shared recordings and espeak-ng clinical sentences between
1.5-6 s silences over faint noise, written block by block as a stereo FLAC at --rate. Each mode
runs in a fresh subprocess that first loads the model and transcribes a short file of the same
kind (libraries, weights and the allocator warmed up), resets its peak-RSS mark, then transcribes:
- stream: `asr.transcribe(path)`: VAD pass over the streamed file, then pieces read back in a
  second streamed pass and fed to the engine a few minutes of audio at a time;
- whole: `asr.transcribe(load_audio(path))`: the same, after decoding the whole file first (what
  every non-file source does);
- clips: for reference, two batches of 30 s clips already in memory: what the engine's batches
  themselves cost (activations for batch-size x 30 s of audio), whatever the input's length.
Without --model, a tiny random Qwen3-ASR of the real architecture is built in a temp dir: its
compute is small, so the figures show what the long-form path itself costs. The VAD pass is also
timed on its own (the VAD's own speed table is benchmarks/bench_vad.py). Prints figures only.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests"))

from _peak import child_env  # noqa: E402 (beside this script, found through sys.path above)

CHILD = """
import json, sys, time
from medasr.audio.decode import load_audio
from medasr.transcribe import load_model
from _peak import peak_mb, reset_peak

path, mode, warm, model, tokens, batch = sys.argv[1:7]
asr = load_model(model, device="cpu", batch_size=int(batch))
asr.transcribe(warm, max_new_tokens=int(tokens))  # model, VAD, engine and full batches warmed up
if mode == "clips":  # the reference: two full batches of 30 s clips already in memory
    head = load_audio(warm).samples
    starts = [(i * 480000) % (len(head) - 480000) for i in range(2 * int(batch))]
    clips = [(head[s : s + 480000].copy(), 16000) for s in starts]
warmed = peak_mb()
reset_peak()
base = peak_mb()
t = time.perf_counter()
if mode == "stream":
    source = path
elif mode == "whole":
    source = load_audio(path)
else:
    source = clips
outs = asr.transcribe(source, max_new_tokens=int(tokens))
dt = time.perf_counter() - t
print(json.dumps({"warmed": warmed, "base": base, "peak": peak_mb(), "seconds": dt,
                  "segments": sum(len(o.segments) for o in outs), "duration": sum(o.duration for o in outs),
                  "error": next((o.error for o in outs if o.error), None)}))
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=60.0, help="length of the recording")
    ap.add_argument("--rate", type=int, default=44100, help="its sample rate (stereo FLAC)")
    ap.add_argument("--model", default=None, help="model to use (default: a tiny random one)")
    ap.add_argument("--max-new-tokens", type=int, default=4)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--modes", default="stream,whole,clips", help="comma-separated: stream, whole, clips")
    args = ap.parse_args()

    import bench_vad

    from medasr.audio import vad

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        model = args.model
        if model is None:
            from conftest import build_tiny

            model = str(build_tiny(tmp / "tiny")["original"])
        clips = bench_vad.speech_clips(tmp)
        path = tmp / "long.flac"
        t = time.perf_counter()
        seconds = bench_vad.write_long(clips, args.minutes, args.rate, path)
        print(
            f"{seconds / 60:.1f} min, {args.rate} Hz stereo FLAC ({path.stat().st_size / 2**20:.0f} MB), "
            f"written in {time.perf_counter() - t:.0f} s; model {'tiny (random)' if args.model is None else model}, "
            f"max_new_tokens {args.max_new_tokens}, batch size {args.batch_size}"
        )
        # the warm-up file fills a few full batches, so the peaks below are what grows with the length
        warm = tmp / "warm.flac"
        bench_vad.write_long(clips, args.batch_size * 0.5 + 1, args.rate, warm)

        vad.load_silero()
        for method in ("silero", "energy"):
            t = time.perf_counter()
            found = vad.pieces(path, vad.VadOptions(method=method))
            dt = time.perf_counter() - t
            speech = sum(p.duration for p in found)
            print(
                f"  VAD pass alone ({method:6s}, streamed) {dt:6.1f} s = {seconds / dt:5.0f}x real time: "
                f"{len(found)} pieces, {speech / 60:.1f} min sent to the model"
            )

        print(f"peak RSS while transcribing (VmHWM of a fresh, warmed-up process; the decoded signal alone "
              f"would be {seconds * 16000 * 4 / 2**20:.0f} MB of float32)")
        for mode in args.modes.split(","):
            cmd = [sys.executable, "-c", CHILD, str(path), mode, str(warm), model, str(args.max_new_tokens), str(args.batch_size)]
            out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=child_env())
            r = json.loads(out.stdout.strip().splitlines()[-1])
            what = {
                "stream": "stream: transcribe(path)",
                "whole": "whole: transcribe(load_audio(path))",
                "clips": f"clips: {2 * args.batch_size} x 30 s clips, in memory",
            }[mode]
            print(
                f"  {what:38s} +{r['peak'] - r['base']:5.0f} MB over the warmed-up process "
                f"({r['base']:.0f} -> {r['peak']:.0f} MB); {r['seconds']:6.1f} s = {r['duration'] / r['seconds']:4.0f}x real time, "
                f"{r['segments']} segments{'; error ' + r['error'] if r['error'] else ''}"
            )


if __name__ == "__main__":
    main()
