"""Requests per second of `medasr serve` at several client concurrencies, batched
(--max-batch-size 16) against one request per model call (--max-batch-size 1), in one run.

    python benchmarks/bench_server.py [--model DIR] [--requests 64] [--concurrency 1,8,32]

Without --model, a tiny random Qwen3-ASR of the real architecture is built in a temp dir.
Clients post espeak-ng clips (2-5 s) to /v1/audio/transcriptions over loopback from one
asyncio loop in this process; the server runs in a child process. Every request decodes
exactly --max-new-tokens tokens (the random model never stops early), so both modes do the
same work. The answers of the two modes are checked to be identical per clip.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SENTENCES = [
    "The patient was started on forty milligrams of atorvastatin once daily.",
    "Chest pain radiating to the left arm since this morning.",
    "No known drug allergies.",
    "Amoxicillin five hundred milligrams three times a day for seven days.",
    "Blood pressure one hundred twenty over eighty, heart rate seventy two.",
    "CT of the abdomen showed no evidence of appendicitis.",
    "Continue metoprolol and review in two weeks.",
    "She reports shortness of breath on exertion and ankle swelling.",
]


async def load(base: str, clips: list[bytes], clients: int, n: int, think_s: float = 0.0,
               seed: int = 0) -> tuple[float, list[float], dict[int, str]]:  # fmt: skip
    """n requests from `clients` clients: (wall s, latencies, text per clip). think_s = 0: closed
    loop (each client sends its next request as soon as the last is answered); else each client
    pauses a random time (exponential, mean think_s) first, so requests arrive while others decode."""
    import random

    import httpx2 as httpx

    todo = iter(range(n))
    latencies: list[float] = []
    texts: dict[int, str] = {}
    rng = random.Random(seed)
    pauses = [rng.expovariate(1 / think_s) if think_s else 0.0 for _ in range(n)]

    async def client(http: httpx.AsyncClient) -> None:
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


def batch_stats(base: str) -> tuple[float, float]:
    import httpx2 as httpx

    values = {}
    for line in httpx.get(base + "/metrics").text.splitlines():
        if line.startswith("medasr_batch_size_"):
            name, _, value = line.rpartition(" ")
            values[name] = float(value)
    return values.get("medasr_batch_size_sum", 0.0), values.get("medasr_batch_size_count", 0.0)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default=None, help="model directory (default: build a tiny random one)")
    p.add_argument("--requests", type=int, default=64, help="requests per concurrency level (default: 64)")
    p.add_argument("--concurrency", default="1,8,32", help="client concurrencies (default: 1,8,32)")
    p.add_argument("--max-new-tokens", type=int, default=32)
    p.add_argument("--batch-size", type=int, default=16, help="the batched mode's --max-batch-size (default: 16)")
    p.add_argument("--max-wait-ms", type=float, default=10.0)
    p.add_argument("--device", default="cpu")
    args = p.parse_args()
    levels = [int(c) for c in args.concurrency.split(",")]

    from medasr.server.launch import running_server

    tmp = Path(tempfile.mkdtemp())
    model = args.model
    if model is None:
        sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
        from conftest import build_tiny

        model = str(build_tiny(tmp)["transformers"])
    clips = []
    for i, sentence in enumerate(SENTENCES):
        path = tmp / f"clip{i}.wav"
        subprocess.run(["espeak-ng", "-s", str(140 + 10 * (i % 6)), "-w", str(path), sentence], check=True)
        clips.append(path.read_bytes())

    modes = (("batched", args.batch_size), ("one by one", 1))
    rows, answers = [], {}
    with contextlib.ExitStack() as stack:
        bases = {}
        for mode, size in modes:  # both servers up at once; idle, one costs nothing
            server_args = [
                "--model", model, "--device", args.device, "--max-batch-size", str(size), "--max-queue", "4096",
                "--max-wait-ms", str(args.max_wait_ms), "--max-new-tokens", str(args.max_new_tokens),
            ]  # fmt: skip
            bases[mode] = stack.enter_context(running_server(server_args))
            asyncio.run(load(bases[mode], clips, 2, 8))  # warm-up
        for c in levels:
            for mode, _ in modes:  # the two modes back to back: a shared machine's load drifts slowly
                base = bases[mode]
                s0, n0 = batch_stats(base)
                wall, lat, texts = asyncio.run(load(base, clips, c, max(args.requests, c)))
                s1, n1 = batch_stats(base)
                answers.setdefault(mode, {}).update(texts)
                lat.sort()
                p95 = lat[int(0.95 * (len(lat) - 1))]
                rows.append((mode, c, len(lat) / wall, statistics.median(lat), p95, (s1 - s0) / max(1, n1 - n0)))
    rows.sort(key=lambda r: r[0] != "batched")

    print(f"\nmedasr serve, tiny model, {args.max_new_tokens} tokens per request, --max-wait-ms {args.max_wait_ms:g}\n")
    print(f"{'mode':<12} {'clients':>7} {'req/s':>8} {'p50 ms':>8} {'p95 ms':>8} {'batch':>6}")
    for mode, c, rps, p50, p95, mean_batch in rows:
        print(f"{mode:<12} {c:>7} {rps:>8.1f} {p50 * 1000:>8.0f} {p95 * 1000:>8.0f} {mean_batch:>6.1f}")
    by = {(m, c): rps for m, c, rps, *_ in rows}
    print(
        "\nspeed-up of batching: " + ", ".join(f"{c} clients x{by[('batched', c)] / by[('one by one', c)]:.2f}" for c in levels)
    )
    same = answers.get("batched") == answers.get("one by one")
    print(f"answers identical in both modes: {'yes' if same else 'NO'}")


if __name__ == "__main__":
    main()
