"""Good live streams beside abusive clients: how long do the good ones wait for their finals?

    python benchmarks/bench_abuse.py                # --good 8 --greedy 2 --flooders 2 --prompters 1

One `medasr serve --model demo` (one torch thread, the default limits) serves --good real-time
streams (the official `openai` client, 100 ms chunks; distinct stretches of a synthetic
consultation of held-out sentences, as bench_stream.py's concurrency part), twice in one run:
alone, then with abusive clients connected beside them:
- greedy: one append of --greedy-s seconds of speech (a whole dictation in one event), reading
  every event; the server reads such an append in parts, at most 8 of its utterances waiting for
  their finals, and the scheduler serves its decodes as one flow among the others;
- flooders: raw sockets writing malformed events as fast as they can and never reading
  (benchmarks/_raw_ws.py): cut off when their send queue fills or an event waits longer than
  --realtime-send-timeout-s;
- prompters: session.update with a 30,000-word prompt, again and again (refused: context_too_long).
Reported: the good streams' final lag (seconds from the end of an utterance's audio to its final)
p50 / p95 / max, alone and with the abusers, and their ratio; what became of each abuser; the
server's resident memory before, at the peak and after. Compare the two rows of one run only.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import sys
import tempfile
import time
from pathlib import Path

import httpx2 as httpx
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _raw_ws import RawClient
from bench_stream import consultation, items, pct, play, thread_env, windows

from medasr.audio.decode import SAMPLE_RATE
from medasr.audio.pcm import to_pcm16
from medasr.server.launch import running_server

KEY = "bench"


def rss_mb(base: str) -> float:
    text = httpx.get(base + "/metrics", timeout=30).text
    return next(float(line.split()[1]) for line in text.splitlines() if line.startswith("process_resident_memory_bytes ")) / 1e6


def lags(runs: list) -> list[float]:
    return [u["t"] - u["audio_end"] for heard in runs for u in items(heard) if "audio_end" in u]


async def greedy(base: str, samples: np.ndarray, stop: asyncio.Event) -> dict:
    """One append of all of `samples`, then read until `stop`: how many finals waited at most."""
    import websockets

    url = base.replace("http", "ws") + "/v1/realtime?intent=transcription"
    async with websockets.connect(url, additional_headers={"Authorization": f"Bearer {KEY}"}, max_size=None) as ws:
        await ws.recv()
        await ws.send(json.dumps({"type": "session.update", "session": {"type": "transcription", "audio": {"input": {
            "format": {"type": "audio/pcm", "rate": SAMPLE_RATE}}}}}))  # fmt: skip
        await ws.send(json.dumps({"type": "input_audio_buffer.append", "audio": base64.b64encode(to_pcm16(samples)).decode()}))
        committed = completed = most = 0
        while not stop.is_set():
            try:
                event = json.loads(await asyncio.wait_for(ws.recv(), 0.5))
            except TimeoutError:
                continue
            committed += event["type"] == "input_audio_buffer.committed"
            completed += event["type"].endswith("transcription.completed")
            most = max(most, committed - completed)
    return {"finals": completed, "most_waiting": most}


def flooder(base: str, stop_at: float) -> dict:
    """Malformed events, never a read, until the server cuts it off (or the run ends)."""
    client = RawClient(base, headers={"Authorization": f"Bearer {KEY}"})
    sent, started = 0, time.monotonic()
    while time.monotonic() < stop_at and client.send('{"type": "bogus"}'):
        sent += 1
    cut = time.monotonic() < stop_at
    client.close()
    return {"events_sent": sent, "cut_off_after_s": round(time.monotonic() - started, 1) if cut else None}


async def prompter(base: str, stop: asyncio.Event) -> dict:
    import websockets

    url = base.replace("http", "ws") + "/v1/realtime?intent=transcription"
    update = json.dumps({"type": "session.update", "session": {"type": "transcription", "audio": {"input": {
        "transcription": {"prompt": "atorvastatin " * 30_000}}}}})  # fmt: skip
    refused = 0
    async with websockets.connect(url, additional_headers={"Authorization": f"Bearer {KEY}"}, max_size=None) as ws:
        await ws.recv()
        while not stop.is_set():
            await ws.send(update)
            event = json.loads(await ws.recv())
            refused += event["type"] == "error" and event["error"]["code"] == "context_too_long"
            await asyncio.sleep(0.05)
    return {"updates_refused": refused}


async def run(args, long) -> None:
    stretches = windows(long, args.seconds, args.good)
    greedy_audio = np.tile(long.samples, int(np.ceil(args.greedy_s * SAMPLE_RATE / len(long.samples))))[: int(args.greedy_s * SAMPLE_RATE)]
    server = ["--model", args.model, "--device", "cpu", "--api-key", KEY, "--realtime-max-sessions", "64"]
    with running_server(server, env=thread_env(args)) as base:
        await play(base, long.samples[: 5 * SAMPLE_RATE], speed=0)  # warm-up
        rng = np.random.default_rng(0)
        alone = await asyncio.gather(*(play(base, s, delay=float(rng.uniform(0, 1))) for s in stretches))
        rss = [rss_mb(base)]
        stop = asyncio.Event()
        abusers = [asyncio.create_task(greedy(base, greedy_audio, stop)) for _ in range(args.greedy)]
        abusers += [asyncio.create_task(prompter(base, stop)) for _ in range(args.prompters)]
        stop_at = time.monotonic() + args.seconds + 60
        abusers += [asyncio.create_task(asyncio.to_thread(flooder, base, stop_at)) for _ in range(args.flooders)]
        await asyncio.sleep(2.0)  # the abusers are at it before the good streams start
        rng = np.random.default_rng(0)
        beside = await asyncio.gather(*(play(base, s, delay=float(rng.uniform(0, 1))) for s in stretches))
        rss.append(rss_mb(base))
        stop.set()
        fates = await asyncio.gather(*abusers)
        await asyncio.sleep(3.0)
        rss.append(rss_mb(base))
    a, b = lags(alone), lags(beside)
    print(f"{args.good} good streams of {args.seconds:g} s, final lag (utterance end -> final), {len(a)} / {len(b)} finals:")
    print(f"  alone:             p50 {pct(a, 50):.2f} s, p95 {pct(a, 95):.2f} s, max {max(a):.2f} s")
    print(f"  beside {len(fates)} abusers: p50 {pct(b, 50):.2f} s, p95 {pct(b, 95):.2f} s, max {max(b):.2f} s "
          f"(p95 x{pct(b, 95) / pct(a, 95):.2f})")  # fmt: skip
    kinds = ["greedy"] * args.greedy + ["prompter"] * args.prompters + ["flooder"] * args.flooders
    for kind, fate in zip(kinds, fates):
        print(f"  {kind}: {fate}")
    print(f"server resident memory: {rss[0]:.0f} MB before the abusers, {rss[1]:.0f} MB with them, {rss[2]:.0f} MB after")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="demo")
    ap.add_argument("--threads", type=int, default=1, help="torch threads of the server process (default: 1)")
    ap.add_argument("--good", type=int, default=8, help="good real-time streams (default: 8)")
    ap.add_argument("--seconds", type=float, default=40.0, help="audio per good stream (default: 40)")
    ap.add_argument("--greedy", type=int, default=2, help="clients sending one huge append (default: 2)")
    ap.add_argument("--greedy-s", type=float, default=600.0, help="seconds of speech in that append (default: 600)")
    ap.add_argument("--flooders", type=int, default=2, help="clients flooding malformed events, never reading (default: 2)")
    ap.add_argument("--prompters", type=int, default=1, help="clients sending 30,000-word prompts (default: 1)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        long = consultation(99, int(args.seconds * args.good / 4.0) + 10, Path(d), word_times=False)
        asyncio.run(run(args, long))


if __name__ == "__main__":
    main()
