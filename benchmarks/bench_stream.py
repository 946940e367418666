"""Live transcription through `medasr serve`'s /v1/realtime: accuracy, latency, cost over a long
stream, and how many real-time streams one CPU process keeps up with.

    python benchmarks/bench_stream.py [--parts accuracy,cost,concurrency] [--model demo]

Audio: synthetic consultations, held-out sentences (`medasr.synth.sentences`, split "heldout": never in the
demo model's training data) spoken by espeak-ng one after another with 0.8-2.5 s pauses over
-60 dBFS white noise (`synth.spoken_in_turn`, as bench_longform_accuracy.py), written as 16 kHz
16-bit WAV. Every stream is a real WebSocket client (the official `openai` client) sending
100 ms of PCM at a time, each chunk when its audio is complete; the server runs with
OMP_NUM_THREADS=--threads (default 1: "one CPU process" is one core).

accuracy: --seeds consultations of --sentences sentences, one stream at a time, at real time.
  WER (`medasr.text.normalize.basic`) of the stream's finals and of offline transcription of the same
  WAV (the library call `medasr transcribe` makes), against the sentences. Latency from the end
  of each word in the audio (espeak-ng's own word events, benchmarks/_espeak_words.py) to its
  first appearance on the client (a delta, or the final when no partial showed it) and to its
  final, over the words the final got right: p50/p95.
cost: one --cost-minutes stream (after a short warm-up stream) sent at --cost-speed times real
  time. The server process's CPU seconds (user + system) and the audio seconds it decoded
  (partial and final decodes, from /metrics) per second of audio, minute by minute: minute 1
  against the last minute. For comparison, the official qwen-asr streaming algorithm re-decodes
  all audio so far every 2 s: its decoded audio per audio second is computed, not measured.
concurrency: N streams at once (distinct stretches of the long consultation, --concurrency-s
  each, starts spread over 1 s) at real time, for N in --levels, with batching (--max-batch-size)
  and without (max batch size 1). A stream keeps up when its finals arrive at most --lag-limit
  seconds after the end of their utterance's audio (p95); the largest N where every stream keeps
  up is what one process sustains.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import difflib
import json
import os
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx2 as httpx
import jiwer
import numpy as np
import soundfile as sf

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _espeak_words import EspeakWords

from medasr.audio.decode import SAMPLE_RATE, load_audio
from medasr.audio.pcm import to_pcm16
from medasr.server.launch import running_server
from medasr.synth import sentences as synth
from medasr.text.normalize import basic

CHUNK_S = 0.1
KEY = "bench"


# ---------------------------------------------------------------- audio


@dataclass
class Consultation:
    texts: list[str]
    samples: np.ndarray  # 16 kHz, as read back from its 16-bit WAV
    path: Path
    spans: list[tuple[int, int]]  # each sentence's samples
    words: list[tuple[str, float]] = field(default_factory=list)  # every word and where it ends (s)

    @property
    def seconds(self) -> float:
        return len(self.samples) / SAMPLE_RATE


def consultation(seed: int, n: int, tmp: Path, word_times: bool) -> Consultation:
    texts = synth.sentences(n, seed=seed, split="heldout")
    rng = np.random.default_rng(seed)
    work = tmp / f"c{seed}-{n}"
    work.mkdir()
    clean, spans = synth.spoken_in_turn(texts, work, rng)
    signal = np.clip(clean + rng.normal(0, 0.001, len(clean)).astype(np.float32), -1, 1)  # -60 dBFS room
    path = tmp / f"c{seed}-{n}.wav"
    sf.write(path, signal, SAMPLE_RATE, subtype="PCM_16")
    c = Consultation(texts, load_audio(path).samples, path, spans)
    if word_times:
        espeak = EspeakWords()
        for text, (a, _) in zip(texts, spans):
            c.words += [(w, a / SAMPLE_RATE + float(end)) for w, end in espeak.word_ends(text)]
    return c


# ---------------------------------------------------------------- one stream


@dataclass
class Heard:
    t: float  # seconds since the stream's first audio sample would have been spoken
    event: dict


async def play(base: str, samples: np.ndarray, speed: float = 1.0, delay: float = 0.0,
               on_minute=None) -> list[Heard]:  # fmt: skip
    """Stream `samples` to the server like a microphone at `speed` x real time; every event
    heard, until every utterance has its final."""
    import openai

    await asyncio.sleep(delay)
    client = openai.AsyncOpenAI(base_url=base + "/v1", api_key=KEY, max_retries=0)
    heard: list[Heard] = []
    async with client.realtime.connect(extra_query={"intent": "transcription"}) as conn:
        assert json.loads(await conn.recv_bytes())["type"] == "session.created"
        await conn.session.update(session={"type": "transcription", "audio": {"input": {
            "format": {"type": "audio/pcm", "rate": SAMPLE_RATE}, "transcription": {"language": "en"},
        }}})  # fmt: skip
        assert json.loads(await conn.recv_bytes())["type"] == "session.updated"
        t0 = time.monotonic()
        settled = asyncio.Event()

        async def read() -> None:
            marker, committed, done = False, set(), set()
            while True:
                event = json.loads(await conn.recv_bytes())
                heard.append(Heard(time.monotonic() - t0, event))
                kind = event["type"]
                if kind == "error" and event["error"].get("event_id") != "end":
                    print(f"  server error: {event['error']}", file=sys.stderr)
                marker = marker or kind == "session.updated"
                if kind == "input_audio_buffer.committed":
                    committed.add(event["item_id"])
                if kind.endswith(("transcription.completed", "transcription.failed")):
                    done.add(event["item_id"])
                if marker and committed <= done:
                    settled.set()
                    return

        reader = asyncio.create_task(read())
        n = int(CHUNK_S * SAMPLE_RATE)
        minute = 1
        for i in range(0, len(samples), n):
            if speed:
                await asyncio.sleep(max(0.0, t0 + (i + n) / SAMPLE_RATE / speed - time.monotonic()))
            await conn.input_audio_buffer.append(audio=base64.b64encode(to_pcm16(samples[i : i + n])).decode())
            if on_minute and (i + n) >= minute * 60 * SAMPLE_RATE:
                await on_minute(minute)
                minute += 1
        await conn.input_audio_buffer.commit(event_id="end")
        await conn.session.update(session={"type": "transcription"})  # answered after the commit
        await asyncio.wait_for(settled.wait(), 600)
        await reader
    return heard


def items(heard: list[Heard]) -> list[dict]:
    """Per utterance, in order: its final text and time, its deltas' words with their times, and
    where its audio ends."""
    out: dict[str, dict] = {}
    for h in heard:
        e = h.event
        kind = e["type"]
        if kind == "input_audio_buffer.committed":
            out.setdefault(e["item_id"], {"deltas": []})
        elif kind == "input_audio_buffer.speech_started":
            out.setdefault(e["item_id"], {"deltas": []})["audio_start"] = e["audio_start_ms"] / 1000
        elif kind == "input_audio_buffer.speech_stopped":
            out.setdefault(e["item_id"], {"deltas": []})["audio_end"] = e["audio_end_ms"] / 1000
        elif kind.endswith("transcription.delta"):
            out.setdefault(e["item_id"], {"deltas": []})["deltas"] += [(w, h.t) for w in e["delta"].split()]
        elif kind.endswith("transcription.completed"):
            out.setdefault(e["item_id"], {"deltas": []}).update(text=e["transcript"], t=h.t)
    return [v for v in out.values() if "text" in v]


def pct(values, q) -> float:
    return float(np.percentile(values, q)) if len(values) else float("nan")


# ---------------------------------------------------------------- accuracy and latency


async def accuracy(args, tmp: Path) -> None:
    import torch

    from medasr.transcribe import load_model

    torch.set_num_threads(args.threads)
    asr = load_model(args.model, device="cpu")
    limits = [float(x) for x in args.offline_max_piece_s.split(",")]
    refs, streamed, same, stretches = [], [], 0, 0
    offline: dict[float, list[str]] = {limit: [] for limit in limits}
    first_lat, final_lat, partial_share = [], [], []
    with running_server(server_args(args, args.max_batch_size), env=thread_env(args)) as base:
        for seed in seeds(args):
            c = consultation(seed, args.sentences, tmp, word_times=True)
            heard = await play(base, c.samples)
            utts = items(heard)
            ref = " ".join(basic(t) for t in c.texts)
            hyp = " ".join(basic(u["text"]) for u in utts)
            off = {limit: basic(asr.transcribe(str(c.path), language="en", max_piece_s=limit)[0].text) for limit in limits}
            # the stretches the stream committed, transcribed offline one by one: what its finals must be
            spans = [(round(u["audio_start"] * SAMPLE_RATE), round(u["audio_end"] * SAMPLE_RATE)) for u in utts]
            alone = asr.transcribe([(c.samples[a:b], SAMPLE_RATE) for a, b in spans], language="en")
            same += sum(t.text == u["text"] for t, u in zip(alone, utts))
            stretches += len(utts)
            refs.append(ref)
            streamed.append(hyp)
            for limit in limits:
                offline[limit].append(off[limit])
            f, g, shown = latencies(c, utts)
            first_lat += f
            final_lat += g
            partial_share.append(shown)
            print(f"seed {seed} ({c.seconds:.0f} s, {len(utts)} utterances for {len(c.texts)} sentences): "
                  f"WER stream {jiwer.wer(ref, hyp):.1%}, offline {', '.join(f'{jiwer.wer(ref, off[x]):.1%}' for x in limits)}; "
                  f"first shown p50 {pct(f, 50):.2f} s, final p50 {pct(g, 50):.2f} s", flush=True)  # fmt: skip
    ws = jiwer.wer(refs, streamed)
    print(f"pooled WER: stream {ws:.2%}; {same} of {stretches} finals equal offline transcription of their utterance's audio")
    for limit in limits:
        wo = jiwer.wer(refs, offline[limit])
        print(f"pooled WER: offline transcription of the whole files, pieces <= {limit:g} s: {wo:.2%} "
              f"(stream - offline: {100 * (ws - wo):+.2f} points)")  # fmt: skip
    print(f"latency from the end of a word to its first appearance: p50 {pct(first_lat, 50):.2f} s, p95 {pct(first_lat, 95):.2f} s; "
          f"to its final: p50 {pct(final_lat, 50):.2f} s, p95 {pct(final_lat, 95):.2f} s "
          f"({len(final_lat)} words; {np.mean(partial_share):.0%} shown in a partial before their final)")  # fmt: skip


def latencies(c: Consultation, utts: list[dict]) -> tuple[list[float], list[float], float]:
    """For every reference word the final got right: seconds from its end in the audio to its
    first appearance and to its final."""
    final_words = []  # (normalised word, first shown, final time)
    for u in utts:
        words = u["text"].split()
        for m, w in enumerate(words):
            shown = u["t"]
            if m < len(u["deltas"]) and u["deltas"][m][0] == w:
                shown = min(shown, u["deltas"][m][1])
            final_words.append((basic(w), shown, u["t"]))
    ref = [(basic(w), end) for w, end in c.words]
    match = difflib.SequenceMatcher(a=[w for w, _ in ref], b=[w for w, _, _ in final_words], autojunk=False)
    first, final, early = [], [], 0
    for block in match.get_matching_blocks():
        for k in range(block.size):
            (_, end), (_, shown, done) = ref[block.a + k], final_words[block.b + k]
            first.append(shown - end)
            final.append(done - end)
            early += shown < done
    return first, final, early / max(len(final), 1)


# ---------------------------------------------------------------- cost over a long stream


async def cost(args, long: Consultation) -> None:
    import psutil

    with running_server(server_args(args, args.max_batch_size), env=thread_env(args)) as base:
        server = next(p for p in psutil.Process().children(recursive=True) if "serve" in " ".join(p.cmdline()))
        await play(base, long.samples[: 10 * SAMPLE_RATE], speed=0)  # warm-up: first decodes, speech detection
        marks = [(server.cpu_times(), decoded(base))]

        async def on_minute(_: int) -> None:
            marks.append((server.cpu_times(), await asyncio.to_thread(decoded, base)))

        started = time.monotonic()
        minutes = int(min(args.cost_minutes * 60, long.seconds) // 60)
        await play(base, long.samples[: minutes * 60 * SAMPLE_RATE], speed=args.cost_speed, on_minute=on_minute)
        wall = time.monotonic() - started
    cpu = [(b[0].user + b[0].system) - (a[0].user + a[0].system) for a, b in zip(marks, marks[1:])]
    dec = [b[1] - a[1] for a, b in zip(marks, marks[1:])]
    print(f"one {minutes}-minute stream at {args.cost_speed:g}x real time ({wall:.0f} s): server CPU seconds per audio second, "
          f"and audio seconds decoded per audio second, by minute:")  # fmt: skip
    for m in sorted({0, 1, 2, 4, 9, 14, 19, 24, len(cpu) - 1} & set(range(len(cpu)))):
        print(f"  minute {m + 1:2d}: CPU {cpu[m] / 60:.3f} s/s, decoded {dec[m] / 60:.2f} s/s")
    last = len(cpu) - 1
    print(f"minute {last + 1} / minute 1: CPU {cpu[last] / cpu[0]:.2f}, decoded audio {dec[last] / dec[0]:.2f}")
    official = [sum(t for t in range(60 * m + 2, 60 * (m + 1) + 1, 2)) / 60 for m in (0, last)]
    print(f"official algorithm (all audio so far re-decoded every 2 s; computed): decoded {official[0]:.1f} s/s in minute 1, "
          f"{official[1]:.1f} s/s in minute {last + 1} (x{official[1] / official[0]:.0f})")  # fmt: skip


def decoded(base: str) -> float:
    text = httpx.get(base + "/metrics", timeout=30).text
    return next(float(line.split()[1]) for line in text.splitlines() if line.startswith("medasr_audio_seconds_total "))


# ---------------------------------------------------------------- concurrent streams


async def concurrency(args, long: Consultation) -> None:
    stretches = windows(long, args.concurrency_s, max(args.levels))
    rng = np.random.default_rng(0)
    for label, batch in (("batching", args.max_batch_size), ("no batching", 1)):
        sustained = 0
        with running_server(server_args(args, batch), env=thread_env(args)) as base:
            await play(base, long.samples[: 5 * SAMPLE_RATE], speed=0)  # warm-up
            for n in args.levels:
                if n > len(stretches):
                    break
                runs = await asyncio.gather(*(play(base, stretches[k], delay=float(rng.uniform(0, 1))) for k in range(n)))
                lags, worst = [], []
                for heard in runs:
                    mine = [u["t"] - u["audio_end"] for u in items(heard) if "audio_end" in u]
                    lags += mine
                    worst.append(pct(mine, 95))
                keeps = max(worst) <= args.lag_limit
                print(f"{label} (max batch {batch}): {n:2d} streams: final lag p50 {pct(lags, 50):.2f} s, p95 {pct(lags, 95):.2f} s, "
                      f"worst stream p95 {max(worst):.2f} s -> {'keeps up' if keeps else 'falls behind'}", flush=True)  # fmt: skip
                if not keeps:
                    break
                sustained = n
        print(f"{label}: one process sustains {sustained} real-time streams (p95 final lag <= {args.lag_limit:g} s)", flush=True)


def windows(long: Consultation, seconds: float, count: int) -> list[np.ndarray]:
    """Up to `count` distinct stretches of whole sentences, each at least `seconds` long."""
    out, start = [], 0
    for k in range(len(long.spans)):
        nxt = long.spans[k + 1][0] if k + 1 < len(long.spans) else len(long.samples)
        if (nxt - start) / SAMPLE_RATE >= seconds:
            out.append(long.samples[start:nxt])
            start = nxt
            if len(out) == count:
                break
    return out


# ---------------------------------------------------------------- plumbing


def server_args(args, batch: int) -> list[str]:
    return ["--model", args.model, "--device", "cpu", "--api-key", KEY, "--max-batch-size", str(batch),
            "--live-rows", str(min(2, batch - 1)), "--realtime-max-sessions", "256", "--realtime-max-session-s", "7200"]  # fmt: skip


def thread_env(args) -> dict:
    n = str(args.threads)
    return {"OMP_NUM_THREADS": n, "MKL_NUM_THREADS": n}


def seeds(args) -> list[int]:
    return [int(s) for s in args.seeds.split(",")]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--parts", default="accuracy,cost,concurrency")
    ap.add_argument("--model", default="demo")
    ap.add_argument("--threads", type=int, default=1, help="torch threads of the server process")
    ap.add_argument("--max-batch-size", type=int, default=16)
    ap.add_argument("--seeds", default="2024,7,11", help="accuracy: one consultation per sentence seed")
    ap.add_argument("--sentences", type=int, default=14, help="accuracy: sentences per consultation")
    ap.add_argument("--offline-max-piece-s", default="30,20,8",
                    help="accuracy: piece limits of the offline transcriptions compared (`medasr transcribe --max-piece-s`)")
    ap.add_argument("--cost-minutes", type=float, default=30.0)
    ap.add_argument("--cost-speed", type=float, default=4.0, help="cost: times real time the long stream is sent at")
    ap.add_argument("--levels", type=lambda s: [int(x) for x in s.split(",")], default=[1, 2, 4, 8, 12, 16, 24, 32])
    ap.add_argument("--concurrency-s", type=float, default=40.0, help="concurrency: seconds of audio per stream")
    ap.add_argument("--lag-limit", type=float, default=2.5, help="concurrency: p95 seconds from utterance end to final")
    args = ap.parse_args()
    parts = args.parts.split(",")
    print(f"bench_stream: model {args.model}, server threads {args.threads}, load average {os.getloadavg()[0]:.1f} "
          f"on {os.cpu_count()} CPUs", flush=True)  # fmt: skip
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        if "accuracy" in parts:
            asyncio.run(accuracy(args, tmp))
        if "cost" in parts or "concurrency" in parts:
            # sentences of ~4.6 s with their pauses: enough for the long stream and the stretches
            need = max(args.cost_minutes * 60 if "cost" in parts else 0, args.concurrency_s * max(args.levels) * 1.1)
            long = consultation(99, int(need / 4.0) + 10, tmp, word_times=False)
            print(f"long consultation: {long.seconds / 60:.1f} min, {len(long.texts)} sentences", flush=True)
            if "cost" in parts:
                asyncio.run(cost(args, long))
            if "concurrency" in parts:
                asyncio.run(concurrency(args, long))


if __name__ == "__main__":
    main()
