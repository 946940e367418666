"""CPU thread settings for transcription on a shared machine: what `--threads` should default to.

    python benchmarks/bench_threads.py                    # quiet machine (as it is), then with --hogs busy processes
    python benchmarks/bench_threads.py --hogs 0 --repeats 5

Each measurement is one child process running `medasr bench offline` (the public transcription
path, RTFx end to end and inside generate) on the same saved clips, with one thread setting:

- `1`: one torch thread;
- `N`: one per usable CPU with OpenMP's default waiting (idle threads spin ~3 ms): torch's own default;
- `N passive`: the same with OMP_WAIT_POLICY=PASSIVE (idle threads sleep instead of spinning);
- `default`: no --threads and no OMP_* variables: what medasr picks by itself
  (medasr.cli._common.default_threads).

Conditions: the machine as it is, and with --hogs extra busy processes (pure-Python loops at
normal priority, standing in for other tenants' work). Settings run interleaved, --repeats times;
the median RTFx of each is printed with its ratio to `1` in the same condition. Models: the
bundled demo model (4 M parameters) and, with --peers-model, the random 8-layer, 512-wide model
that benchmarks/bench_peers.py builds (~100 M parameters; forced to --max-new-tokens tokens).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


def child_env(wait_policy: str | None) -> dict[str, str]:
    """This environment without thread settings; OMP_WAIT_POLICY as given (None: unset)."""
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OMP_WAIT_POLICY")}
    if wait_policy:
        env["OMP_WAIT_POLICY"] = wait_policy
    return env


def settings(cpus: int) -> list[tuple[str, list[str], str | None]]:
    """(label, extra args, OMP_WAIT_POLICY)"""
    return [
        ("1", ["--threads", "1"], None),
        # an unknown value makes libgomp keep its own default (spin ~3 ms, then sleep; it warns on stderr):
        # what torch did before medasr chose for it, since medasr sets PASSIVE only when the variable is unset
        (f"{cpus}", ["--threads", str(cpus)], "torch-default"),
        (f"{cpus} passive", ["--threads", str(cpus)], "PASSIVE"),
        ("default", [], None),
    ]


def measure(model: str, manifest: Path, extra: list[str], policy: str | None, max_new_tokens: int, batch: int) -> dict:
    cmd = [sys.executable, "-m", "medasr", "bench", "offline", "--model", model, "--device", "cpu", "--manifest", str(manifest),
           "--batch-size", str(batch), "--warmup", "1", "--max-new-tokens", str(max_new_tokens), *extra]  # fmt: skip
    out = subprocess.run(cmd, capture_output=True, text=True, env=child_env(policy), check=False)
    if out.returncode:
        raise SystemExit(f"bench_threads: {' '.join(cmd)} failed:\n{out.stderr[-3000:]}")
    res = json.loads(out.stdout)
    run = res["runs"][0]
    return {"rtfx_e2e": run["rtfx_e2e"], "rtfx_model": run["rtfx_model"], "threads": res["environment"].get("torch_threads")}


class Hogs:
    """n busy processes at normal priority (other tenants' work), ended by their own ids."""

    def __init__(self, n: int):
        self.procs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(n)]

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        for p in self.procs:
            p.kill()
            p.wait()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--clips", type=int, default=16, help="synthetic speech clips (default: 16)")
    ap.add_argument("--batch-size", type=int, default=8, help="(default: 8)")
    ap.add_argument("--max-new-tokens", type=int, default=32, help="(default: 32)")
    ap.add_argument("--repeats", type=int, default=3, help="runs of each setting per condition (default: 3)")
    ap.add_argument("--hogs", type=int, default=None, help="busy processes in the contended condition (default: usable CPUs; 0: skip it)")
    ap.add_argument("--peers-model", action="store_true", help="also the 8-layer, 512-wide random model of bench_peers")
    ap.add_argument("--models", default="demo", help="comma-separated models (default: demo)")
    args = ap.parse_args()

    sys.path.insert(0, str(HERE))
    from medasr.bench import workload
    from medasr.cli._common import default_threads, usable_cpus

    cpus = usable_cpus()
    hogs = cpus if args.hogs is None else args.hogs
    models = [m for m in args.models.split(",") if m]
    if args.peers_model:
        from bench_peers import build_checkpoint

        _, hf = build_checkpoint(ROOT / "runs" / "peers" / "model-L8-W512-C480-s0", 8, 512, 480, 0)
        models.append(str(hf))
    with tempfile.TemporaryDirectory(prefix="bench-threads-") as tmp:
        manifest = workload.save(workload.synthetic(args.clips, "speech", "librispeech", 0), tmp)
        conditions = [("as is", 0)] + ([(f"+{hogs} busy processes", hogs)] if hogs else [])
        table = []
        for model in models:
            for cond, n in conditions:
                got: dict[str, list[dict]] = {}
                with Hogs(n):
                    time.sleep(1.0 if n else 0.0)
                    load = os.getloadavg()[0]
                    for r in range(args.repeats):
                        for label, extra, policy in settings(cpus):
                            m = measure(model, manifest, extra, policy, args.max_new_tokens, args.batch_size)
                            got.setdefault(label, []).append(m)
                            print(f"bench_threads: {Path(model).name or model} | {cond} | {label}: RTFx e2e {m['rtfx_e2e']} "
                                  f"(threads {m['threads']}) [{r + 1}/{args.repeats}]", file=sys.stderr, flush=True)  # fmt: skip
                base = statistics.median(x["rtfx_e2e"] for x in got["1"])
                for label, ms in got.items():
                    e2e = [x["rtfx_e2e"] for x in ms]
                    name = "demo" if model == "demo" else "/".join(Path(model).parts[-2:])
                    table.append((name, cond, round(load, 1), label, ms[0]["threads"],
                                  statistics.median(e2e), min(e2e), max(e2e), statistics.median(e2e) / base))  # fmt: skip
    print(f"usable CPUs: {cpus}; medasr's default: {default_threads()} thread(s); {args.clips} clips, batch {args.batch_size}, "
          f"{args.max_new_tokens} new tokens at most, {args.repeats} repeats (median, min-max)\n")  # fmt: skip
    print("| model | condition | load avg | setting | torch threads | RTFx e2e median | min-max | vs 1 thread |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for model, cond, load, label, threads, med, lo, hi, ratio in table:
        print(f"| {model} | {cond} | {load} | {label} | {threads} | {med:.1f} | {lo:.1f}-{hi:.1f} | {ratio:.2f}x |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
