"""Server latency under load: this tree's scheduler (continuous batching) against an earlier
revision's batcher (static batches run to completion), same model, same clips, one run.

    python benchmarks/bench_scheduler.py [--ref 6b8c4d5] [--model demo] [--clients 16] [--requests 96]

The earlier revision is checked out into a temporary git worktree and served from there
(PYTHONPATH), so both servers are real `medasr serve` processes on loopback; they run one after
the other, twice each (A B A B), to even out a shared CPU's drift. Clients: `--clients` asyncio clients
posting espeak-ng speech of LibriSpeech-like, mixed durations (2-35 s) to
/v1/audio/transcriptions, each pausing a random time (exponential, mean `--think-s`) before
each request, so requests arrive while others are being decoded, as real clients' do. Prints p50/p95 latency and requests/s per server, the ratios, and
whether every clip got the same answer from both.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_REF = "6b8c4d5"  # the last revision with the static batcher


async def load(base: str, clips: list[bytes], clients: int, n: int, think_s: float = 0.0,
               seed: int = 0) -> tuple[float, list[float], dict[int, str]]:  # fmt: skip
    import random

    import httpx2 as httpx

    todo = iter(range(n))
    latencies: list[float] = []
    texts: dict[int, str] = {}
    rng = random.Random(seed)
    pauses = [rng.expovariate(1 / think_s) if think_s else 0.0 for _ in range(n)]

    async def client(http) -> None:
        for i in todo:
            await asyncio.sleep(pauses[i])  # a client's pause before its next request (dictation, review)
            k = i % len(clips)
            t0 = time.perf_counter()
            r = await http.post("/v1/audio/transcriptions", files={"file": (f"c{k}.wav", clips[k], "audio/wav")})
            latencies.append(time.perf_counter() - t0)
            r.raise_for_status()
            texts.setdefault(k, r.json()["text"])

    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=900) as http:
        t0 = time.perf_counter()
        await asyncio.gather(*(client(http) for _ in range(clients)))
        return time.perf_counter() - t0, latencies, texts


def percentile(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, round(q * (len(xs) - 1)))]


@contextlib.contextmanager
def serve(src: Path, model: str, batch: int, env: dict):
    from medasr.server.launch import running_server

    args = ["--model", model, "--device", "cpu", "--max-batch-size", str(batch), "--max-queue", "1024"]
    with running_server(args, env={**env, "PYTHONPATH": str(src)}) as base:
        yield base


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ref", default=DEFAULT_REF, help=f"the earlier revision to compare with (default: {DEFAULT_REF})")
    p.add_argument("--model", default="demo", help="model for both servers (default: demo)")
    p.add_argument("--clients", type=int, default=16)
    p.add_argument("--requests", type=int, default=96, help="requests per run (default: 96)")
    p.add_argument("--clips", type=int, default=24, help="distinct clips (default: 24)")
    p.add_argument("--batch", type=int, default=16, help="--max-batch-size of both servers (default: 16)")
    p.add_argument("--rounds", type=int, default=2, help="A B rounds (default: 2)")
    p.add_argument("--think-s", type=float, default=1.0, help="mean pause before each request (default: 1; 0: closed loop)")
    args = p.parse_args()

    from medasr.bench import workload

    w = workload.synthetic(args.clips, "speech", "librispeech", seed=11)
    clips = [c.payload() for c in w.clips]
    print(f"{len(clips)} clips, {w.audio_s:.0f} s, durations {min(c.duration for c in w.clips):.1f}-"
          f"{max(c.duration for c in w.clips):.1f} s; {args.clients} clients, {args.requests} requests per run", flush=True)
    env = {"OMP_NUM_THREADS": "1"}
    results: dict[str, list] = {"continuous (this tree)": [], f"static batcher ({args.ref})": []}
    with tempfile.TemporaryDirectory(prefix="medasr-ref-") as tmp:
        ref_tree = Path(tmp) / "ref"
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(ref_tree), args.ref],
                       check=True, capture_output=True)  # fmt: skip
        try:
            sources = {"continuous (this tree)": ROOT / "src", f"static batcher ({args.ref})": ref_tree / "src"}
            for _ in range(args.rounds):
                for name, src in sources.items():
                    with serve(src, args.model, args.batch, {**os.environ, **env}) as base:
                        asyncio.run(load(base, clips[:2], 2, 4))  # warm-up
                        wall, lat, texts = asyncio.run(load(base, clips, args.clients, args.requests, args.think_s))
                    results[name].append((wall, lat, texts))
                    print(f"{name}: p50 {percentile(lat, 0.5):.2f} s, p95 {percentile(lat, 0.95):.2f} s, "
                          f"{args.requests / wall:.2f} req/s", flush=True)
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(ref_tree)], check=False)
    print("\n| server | p50 s | p95 s | req/s |\n| --- | --- | --- | --- |")
    summary = {}
    for name, runs in results.items():
        lat = [x for _, ls, _ in runs for x in ls]
        rps = statistics.mean(args.requests / wall for wall, _, _ in runs)
        summary[name] = (percentile(lat, 0.5), percentile(lat, 0.95), rps)
        print(f"| {name} | {summary[name][0]:.2f} | {summary[name][1]:.2f} | {rps:.2f} |")
    (new, old) = summary.values()
    print(f"\np95 {old[1] / new[1]:.2f}x better, p50 {old[0] / new[0]:.2f}x, throughput {new[2] / old[2]:.2f}x")
    texts = [r[2] for runs in results.values() for r in runs]
    same = all(t == texts[0] for t in texts)
    print(f"answers identical across servers and runs: {same}")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
