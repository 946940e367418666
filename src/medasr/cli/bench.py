"""`medasr bench`: offline and serving benchmarks that reproduce the seed's tables."""

from __future__ import annotations

import argparse
import json
import os
import sys

from medasr.cli._common import add_model_arguments
from medasr.defaults import VAD_METHODS

NAME = "bench"
HELP = "benchmark speed (RTFx, samples/s, latency) offline or against a server"
DESCRIPTION = """Benchmark transcription speed, offline (one process) or against a server.

offline: RTFx timed inside the model's generate only (after warm-up batches, CUDA synchronised,
  as the Open ASR Leaderboard times it) and end to end (decode + features + model + parsing),
  samples/s, generated tokens, peak host RSS and peak GPU memory; optionally against the
  one-by-one and pad-to-longest-32 baselines on the same model in the same run.
serve: for each client concurrency, the seed's table (total samples, success, failure, runtime,
  samples/s), latency p50/p90/p95/p99, time to first text when streaming, and RTFx; works against
  medasr's server and any OpenAI-compatible one (vLLM: --endpoint chat or transcriptions).

JSON goes to stdout, a readable table to stderr; --output-dir also writes STEM.json, STEM.md
(and a latency chart for serve).

examples:
  medasr bench offline --model demo --synthetic 100 --baseline one-by-one,pad-longest-32
  medasr bench offline --random-weights 1.7b --synthetic 500 --batch-size 128 --device cuda
  medasr bench offline --model M --manifest librispeech:data/LibriSpeech --split test-clean --accuracy
  medasr bench serve --url http://127.0.0.1:8000 --synthetic 100 --concurrency 1,8,32,128 --stream
  medasr bench serve --url http://gpu:8000 --endpoint chat --manifest test.jsonl --accuracy
  medasr bench offline --model M --synthetic 4 --synthetic-profile long --save-workload runs/long
"""


def _int_list(text: str) -> list[int]:
    try:
        values = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError("expected positive integers, e.g. 1,8,32,128")
    return values


def _names(text: str) -> list[str]:
    return [x.strip() for x in text.split(",") if x.strip()]


def _workload_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("workload (one of --manifest, --synthetic)")
    src = g.add_mutually_exclusive_group(required=True)
    src.add_argument("--manifest", metavar="DATASET",
                     help="a JSONL manifest or any dataset medasr.data reads (kind:PATH allowed)")  # fmt: skip
    src.add_argument("--synthetic", type=int, metavar="N", help="N seeded synthetic clips")
    g.add_argument("--split", default="test", help="dataset split (default: test)")
    g.add_argument("--limit", type=int, default=None, metavar="N", help="only the first N clips of --manifest")
    g.add_argument("--synthetic-audio", choices=("speech", "noise"), default="speech",
                   help="espeak-ng speech with exact references, or white noise (faster, no references) (default: speech)")  # fmt: skip
    g.add_argument("--synthetic-profile", choices=("librispeech", "long"), default="librispeech",
                   help="durations: librispeech (2-35 s, mean ~7 s) or long (2-10 min) (default: librispeech)")  # fmt: skip
    g.add_argument("--seed", type=int, default=0, help="seed of the synthetic clips and random weights (default: 0)")
    g.add_argument("--save-workload", metavar="DIR", help="also write the clips and a manifest.jsonl to DIR")
    g = p.add_argument_group("output")
    g.add_argument("--accuracy", action="store_true", help="add the seed's accuracy table (WER against the references)")
    g.add_argument("--normalizer", choices=("basic", "english", "none"), default="basic",
                   help="normaliser for --accuracy (default: basic, the seed's protocol)")  # fmt: skip
    g.add_argument("--output-dir", metavar="DIR", help="write STEM.json and STEM.md (and a chart) here")
    g.add_argument("--stem", default=None, help="file name stem in --output-dir (default: offline / serve)")


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="bench_command", metavar="{offline,serve}", required=True)
    o = sub.add_parser("offline", help="throughput of one process (RTFx model / end to end)",
                       description="Offline benchmark; see `medasr bench --help`.")  # fmt: skip
    add_model_arguments(o)
    g = o.add_argument_group("offline")
    g.add_argument("--random-weights", choices=("1.7b", "0.6b", "tiny"), default=None,
                   help="full-size architecture with random weights instead of --model (speed only; "
                   "output length forced by --tokens-per-second)")  # fmt: skip
    g.add_argument("--tokens-per-second", type=float, default=3.5,
                   help="generated tokens per audio second forced with --random-weights (default: 3.5, English speech)")  # fmt: skip
    g.add_argument("--batch-size", type=int, default=16, help="clips per model batch (default: 16)")
    g.add_argument("--max-batch-audio-s", type=float, default=None,
                   help="cap on audio seconds per batch (default: the engine's, 600)")  # fmt: skip
    g.add_argument("--warmup", type=int, default=2, help="warm-up batches per mode, not timed (default: 2)")
    g.add_argument(
        "--max-new-tokens",
        type=int,
        default=None,
        help="token cap per clip (default: grows with the audio; with --random-weights it caps the forced length)",
    )
    g.add_argument("--vad", choices=VAD_METHODS, default=None,
                   help="speech detection on every clip (medasr, static and one-by-one modes) (default: none for "
                   "--synthetic-audio noise, which holds no speech; silero otherwise)")  # fmt: skip
    g.add_argument("--baseline", type=_names, default=[], metavar="LIST",
                   help="also run baselines on the same model: static (sorted batches run to completion), one-by-one, "
                   "pad-longest-32 (transformers generate on unsorted padded batches) (comma-separated)")  # fmt: skip
    g.add_argument("--compile", action="store_true",
                   help="CUDA: compile the decode step into a CUDA graph (static shapes, bucketed batch sizes)")
    g.add_argument("--baseline-limit", type=int, default=None, metavar="N", help="baselines use the first N clips only")
    _workload_arguments(o)

    s = sub.add_parser("serve", help="latency and throughput of a server at several concurrencies",
                       description="Serving benchmark; see `medasr bench --help`.")  # fmt: skip
    g = s.add_argument_group("server")
    g.add_argument("--url", required=True, help="the server's base URL, e.g. http://127.0.0.1:8000")
    g.add_argument("--endpoint", choices=("transcriptions", "chat"), default="transcriptions",
                   help="/v1/audio/transcriptions (multipart) or /v1/chat/completions (audio_url) (default: transcriptions)")  # fmt: skip
    g.add_argument("--model", default=None, help="model name to send (default: the first one /v1/models lists)")
    g.add_argument("--api-key", default=os.environ.get("MEDASR_API_KEY"), help="bearer key (default: $MEDASR_API_KEY)")
    g.add_argument("--concurrency", type=_int_list, default=[1, 8, 32, 128], help="client counts (default: 1,8,32,128)")
    g.add_argument("--requests", type=int, default=None, help="requests per concurrency level (default: one per clip)")
    g.add_argument("--stream", action="store_true", help="streamed answers; adds time to first text")
    g.add_argument("--timeout-s", type=float, default=600.0, help="deadline per request (default: 600)")
    g.add_argument(
        "--warmup", type=int, default=2, help="requests sent before the first level, not counted (default: 2)"
    )
    _workload_arguments(s)


def _workload(args):
    from medasr.bench import workload

    if args.synthetic is not None:
        w = workload.synthetic(args.synthetic, args.synthetic_audio, args.synthetic_profile, args.seed)
    else:
        w = workload.from_dataset(args.manifest, args.split, args.limit)
    if args.save_workload:
        print(f"medasr bench: workload written to {workload.save(w, args.save_workload)}", file=sys.stderr)
    return w


def run(args: argparse.Namespace) -> int:
    from medasr.bench import results
    from medasr.errors import UserError

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    for name in ("batch_size", "requests", "limit", "baseline_limit"):
        value = getattr(args, name, None)
        if value is not None and value < 1:
            raise UserError(f"--{name.replace('_', '-')} must be at least 1")
    if args.bench_command == "offline":  # before anything starts torch's thread pool
        from medasr.cli._common import set_threads

        args.threads = set_threads(args.threads)
    w = _workload(args)
    accuracy = args.normalizer if args.accuracy else None
    if args.bench_command == "offline":
        from medasr.bench.offline import OfflineConfig
        from medasr.bench.offline import run as run_offline

        cfg = OfflineConfig(
            model=args.model, device=args.device, dtype=args.dtype, quantize=args.quantize, batch_size=args.batch_size,
            warmup=args.warmup,
            max_new_tokens=args.max_new_tokens, random_weights=args.random_weights,
            tokens_per_second=args.tokens_per_second, baselines=args.baseline, baseline_limit=args.baseline_limit,
            vad=args.vad, max_batch_audio_s=args.max_batch_audio_s, seed=args.seed, threads=args.threads,
            compile=args.compile,
        )  # fmt: skip
        if args.random_weights:
            log(f"medasr bench: WARNING: random weights ({args.random_weights}), --model ignored: "
                f"speed only, output length forced to {args.tokens_per_second} tokens per audio second")  # fmt: skip
        result = run_offline(cfg, w, accuracy, log)
    else:
        from medasr.bench.serve import ServeConfig
        from medasr.bench.serve import run as run_serve

        cfg = ServeConfig(
            url=args.url, endpoint=args.endpoint, concurrency=args.concurrency, requests=args.requests,
            stream=args.stream, model=args.model, api_key=args.api_key, timeout_s=args.timeout_s, warmup=args.warmup,
        )  # fmt: skip
        result = run_serve(cfg, w, accuracy, log)
    print(results.markdown(result), file=sys.stderr)
    if args.output_dir:
        paths = results.write(result, args.output_dir, args.stem or args.bench_command)
        log("medasr bench: wrote " + ", ".join(str(p) for p in paths.values()))
    print(json.dumps(result, indent=2, ensure_ascii=False))
    return 0
