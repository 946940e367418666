"""medasr on the CPU: float32, bfloat16 and int8 (`--quantize int8`) at batch 1 and 16, 1 and 2 threads.

    python benchmarks/make_random_checkpoint.py --size 0.6b --out runs/rw-0.6b --device cpu
    python benchmarks/bench_cpu.py --model runs/rw-0.6b --output runs/bench-cpu.json

Each setting runs in a subprocess of its own (so the peak resident memory, VmHWM, is that setting's:
loading included) and transcribes the same clips through the public API after a one-clip warm-up:
bench_peers' espeak-ng clips (LibriSpeech-like durations), every answer exactly --tokens tokens
long (the checkpoint's end tokens are unreachable: `randomweights.forbid_end_tokens`). RTFx =
audio seconds / CPU seconds of the process over the call (CPU time moves far less than wall time on
shared cores); best of --repeats. Texts are compared with float32's at the same batch size: with
random weights they say how often int8 or bf16 flips an argmax, not how accurate they are
(bench_quantize_accuracy.py measures that on the demo model).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

CHILD = r"""
import json, sys, time
import torch
from _peak import peak_mb
cfg = json.loads(sys.argv[1])
torch.set_num_threads(cfg["threads"])
import medasr
t0 = time.perf_counter()
asr = medasr.load_model(cfg["model"], device="cpu", dtype=cfg["dtype"], batch_size=cfg["batch"], quantize=cfg["quantize"])
load_s = time.perf_counter() - t0
asr.transcribe(cfg["paths"][:1], max_new_tokens=cfg["tokens"], vad="none")
best = None
for _ in range(cfg["repeats"]):
    c0, w0 = time.process_time(), time.perf_counter()
    out = asr.transcribe(cfg["paths"], max_new_tokens=cfg["tokens"], vad="none")
    cpu, wall = time.process_time() - c0, time.perf_counter() - w0
    if best is None or cpu < best[0]:
        best = (cpu, wall, [t.text for t in out])
print(json.dumps({"cpu_s": best[0], "wall_s": best[1], "load_s": load_s, "peak_mb": peak_mb(), "texts": best[2]}))
"""


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default=str(ROOT / "runs" / "rw-0.6b"))
    ap.add_argument("--clips-dir", default=str(ROOT / "runs" / "clips-n16"), help="bench_peers-style clips.json + WAVs")
    ap.add_argument("--clips", type=int, default=8)
    ap.add_argument("--tokens", type=int, default=32)
    ap.add_argument("--settings", default="float32:none,bfloat16:none,float32:int8", help="dtype:quantize, comma-separated")
    ap.add_argument("--batches", default="1,16")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--output", default=None)
    args = ap.parse_args()
    index = Path(args.clips_dir) / "clips.json"
    if not index.exists():
        raise SystemExit(f"bench_cpu: {index} not found (bench_peers.make_clips writes it)")
    clips = json.loads(index.read_text())["clips"][: args.clips]
    paths = [str(Path(args.clips_dir) / name) for name, _ in clips]
    audio_s = sum(d for _, d in clips)
    sys.path.insert(0, str(HERE))
    from _peak import child_env

    rows = []
    for threads in map(int, args.threads.split(",")):
        for batch in map(int, args.batches.split(",")):
            for setting in args.settings.split(","):
                dtype, quantize = setting.split(":")
                cfg = {"model": args.model, "dtype": dtype, "quantize": quantize, "batch": batch, "threads": threads,
                       "paths": paths, "tokens": args.tokens, "repeats": args.repeats}  # fmt: skip
                # idle OpenMP threads sleep, as `medasr`'s commands make them (cli/_common.set_threads): spinning
                # threads would count as CPU time on shared cores
                env = {"OMP_WAIT_POLICY": "PASSIVE", **child_env(), "OMP_NUM_THREADS": str(threads)}
                done = subprocess.run([sys.executable, "-c", CHILD, json.dumps(cfg)], check=False, capture_output=True, text=True, env=env, cwd=HERE)
                if done.returncode:
                    raise SystemExit(f"bench_cpu: {setting} batch {batch} failed:\n{done.stderr[-3000:]}")
                r = json.loads(done.stdout.strip().splitlines()[-1])
                r.update(dtype=dtype, quantize=quantize, batch=batch, threads=threads, rtfx_cpu=round(audio_s / r["cpu_s"], 2),
                         rtfx_wall=round(audio_s / r["wall_s"], 2))  # fmt: skip
                rows.append(r)
                print(f"bench_cpu: {threads} thread(s), batch {batch}, {dtype}/{quantize}: RTFx CPU {r['rtfx_cpu']}, "
                      f"peak {r['peak_mb']:.0f} MB", file=sys.stderr, flush=True)  # fmt: skip
    print(f"{len(paths)} clips, {audio_s:.1f} s of audio, {args.tokens} tokens each, load average {os.getloadavg()[0]:.1f}\n")
    print("| threads | batch | weights | RTFx (CPU) | RTFx (wall) | peak RSS MB | load s | texts equal to float32's |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        ref = next(x for x in rows if x["threads"] == r["threads"] and x["batch"] == r["batch"] and x["dtype"] == "float32"
                   and x["quantize"] == "none")  # fmt: skip
        same = sum(a == b for a, b in zip(r["texts"], ref["texts"]))
        name = r["dtype"] if r["quantize"] == "none" else f"{r['quantize']} (float32 activations)"
        print(f"| {r['threads']} | {r['batch']} | {name} | {r['rtfx_cpu']} | {r['rtfx_wall']} | {r['peak_mb']:.0f} | "
              f"{r['load_s']:.1f} | {same} of {len(paths)} |")  # fmt: skip
    if args.output:
        Path(args.output).write_text(json.dumps({"audio_s": audio_s, "clips": len(paths), "tokens": args.tokens, "rows": rows}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
