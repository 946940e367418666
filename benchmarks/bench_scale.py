"""The local path against `--ray local` with 1 and 2 workers on the same clips, then a --ray job
killed half way and resumed.

    python benchmarks/bench_scale.py [--n 200] [--model demo] [--batch-size 16] [--work DIR]

Clips: `medasr synth --split heldout` (espeak-ng medical sentences, 2-8 s). Each run is the CLI
in a fresh subprocess, `medasr transcribe CLIPS --format jsonl --output-dir OUT [--ray local
--workers W]`, timed from start to exit (so the local run's model load and a Ray run's cluster
start and worker start are included: at this size that is the overhead being measured); the
runs are repeated, interleaved, and the medians printed (the machine is shared). Outputs
are compared with the local run's: identical texts, identical segments (start, end, text), and
the largest difference of a segment's avg_logprob (it moves in its last digits with the batch a
clip shares). Resume: a 2-worker --ray run is SIGKILLed (its whole process group: the driver and
the local cluster) once half the inputs are in transcripts.jsonl, then rerun; every input must
be in the file exactly once. Prints figures only.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--model", default="demo")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--work", default="/tmp/medasr-bench-scale")
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()
    work = Path(args.work)
    clips = work / "synth" / "audio"
    if len(list(clips.glob("*.wav"))) < args.n:
        _run([sys.executable, "-m", "medasr", "synth", "--out", work / "synth", "--n", args.n, "--split", "heldout",
              "--seed", "7", "--jobs", "2"])
    manifest = [json.loads(x) for x in (work / "synth" / "manifest.jsonl").read_text().splitlines()][: args.n]
    audio_s = sum(m["duration"] for m in manifest)
    print(f"{len(manifest)} clips, {audio_s:.0f} s of audio, model {args.model}, batch {args.batch_size}, "
          f"{os.cpu_count()} CPUs\n")
    base = [sys.executable, "-m", "medasr", "transcribe", clips, "--model", args.model, "--batch-size", args.batch_size,
            "--format", "jsonl"]
    runs = {"local": ([], {}), "local, --threads 2": (["--threads", "2"], {}),  # default: half the usable CPUs
            "ray, 1 worker": (["--ray", "local", "--workers", "1"], {}),
            "ray, 2 workers": (["--ray", "local", "--workers", "2"], {})}
    walls: dict[str, list[float]] = {name: [] for name in runs}
    jobs: dict[str, list[float]] = {name: [] for name in runs}
    results: dict[str, dict] = {}
    spread: dict[str, str] = {}
    for _ in range(args.repeats):  # interleaved, so that a change in the machine's load hits every run alike
        for name, (extra, env) in runs.items():
            out = work / ("out-" + re.sub(r"\W+", "-", name))
            _clean(out)
            t0 = time.monotonic()
            proc = _run([*base, "--output-dir", out, *extra], env)
            walls[name].append(time.monotonic() - t0)
            if job := re.search(r"ray: .* in ([\d.]+) s", proc.stderr):
                jobs[name].append(float(job.group(1)))
                spread[name] = job.group(0)
            results[name] = _records(out)
    ref = results["local"]
    local_wall = statistics.median(walls["local"])
    print(f"median of {args.repeats} interleaved runs each\n")
    print("| run | wall s | Ray job s | wall - job s | clips/s | wall / local | texts same | segments same | max Δ avg_logprob |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for name in runs:
        got = results[name]
        wall = statistics.median(walls[name])
        job = statistics.median(jobs[name]) if jobs[name] else None
        same_text = sum(got[k]["text"] == ref[k]["text"] for k in ref)
        same_seg = sum(_segs(got[k]) == _segs(ref[k]) for k in ref)
        delta = max(abs(a["avg_logprob"] - b["avg_logprob"]) for k in ref for a, b in zip(got[k]["segments"], ref[k]["segments"]))
        print(f"| {name} | {wall:.1f} | {f'{job:.1f}' if job else '-'} | {f'{wall - job:.1f}' if job else '-'} | "
              f"{len(ref) / wall:.2f} | {wall / local_wall:.2f} | {same_text}/{len(ref)} | {same_seg}/{len(ref)} | {delta:.1e} |")
    for name, line in spread.items():
        print(f"- {name}, last run: `{line}`")
    print("- all walls (s): " + "; ".join(f"{n}: {', '.join(f'{w:.1f}' for w in ws)}" for n, ws in walls.items()))

    # resume: kill a 2-worker job half way, rerun
    out = work / "out-resume"
    _clean(out)
    cmd = [*map(str, base), "--output-dir", str(out), "--ray", "local", "--workers", "2"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True)
    log = out / "transcripts.jsonl"
    while proc.poll() is None and _lines(log) < len(manifest) // 2:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    at_kill = _lines(log)
    t0 = time.monotonic()
    again = _run(cmd)
    wall = time.monotonic() - t0
    skipped = re.search(r"skipping (\d+) input", again.stderr)
    keys = [json.loads(x)["input"] for x in log.read_text().splitlines()]
    final = _records(out)
    same_text = sum(final[k]["text"] == ref[k]["text"] for k in ref)
    print(f"\nresume: killed (SIGKILL, process group) with {at_kill} of {len(manifest)} lines written; the rerun skipped "
          f"{skipped.group(1) if skipped else 0} and took {wall:.1f} s; transcripts.jsonl: {len(keys)} lines, "
          f"{len(set(keys))} distinct inputs, {len(keys) - len(set(keys))} duplicates; texts same as local: "
          f"{same_text}/{len(ref)}; lines set aside: {_lines(out / 'transcripts.jsonl.torn')}")


def _run(cmd, env: dict | None = None) -> subprocess.CompletedProcess:
    proc = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, check=False, env={**os.environ, **(env or {})})
    if proc.returncode != 0:
        sys.exit(f"{' '.join(map(str, cmd))} failed:\n{proc.stderr[-3000:]}")
    return proc


def _clean(out: Path) -> None:
    for p in out.glob("*"):
        p.unlink()


def _lines(path: Path) -> int:
    return path.read_bytes().count(b"\n") if path.exists() else 0


def _records(out: Path) -> dict[str, dict]:
    return {r["input"]: r for r in map(json.loads, (out / "transcripts.jsonl").read_text().splitlines())}


def _segs(r: dict) -> list:
    return [(s["start"], s["end"], s["text"]) for s in r["segments"]]


if __name__ == "__main__":
    main()
