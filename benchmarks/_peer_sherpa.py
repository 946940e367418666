"""sherpa-onnx's side of bench_peers: Qwen3-ASR exported to ONNX, run by sherpa-onnx's offline recognizer.

    python benchmarks/_peer_sherpa.py --model-dir DIR --precision fp32 --max-new-tokens N --threads 1

The model folder holds what the public exporter that sherpa-onnx's Qwen3-ASR packages come from
(GitHub: Wasser1462/Qwen3-ASR-onnx, run outside this repository on an ORIGINAL-format checkpoint)
writes: conv_frontend.onnx, then encoder.onnx and decoder.onnx (fp32, with .data files) or
encoder.int8.onnx and decoder.int8.onnx (ONNX Runtime dynamic int8 quantisation of their MatMuls).
The tokenizer is a directory with vocab.json, merges.txt and tokenizer_config.json (its
added_tokens_decoder), as sherpa-onnx reads it; --tokenizer may instead name a checkpoint holding
only a tokenizer.json (bench_peers' random checkpoints), turned into those three files in a
temporary directory.

Prints one JSON line describing itself, then answers one JSON line per command read from stdin:

    {"paths": [...], "warmup": K}
    -> {"texts": [...], "tokens": [...], "e2e_s": ..., "cpu_s": ..., "peak_rss_mb": ...}

Decoding: sherpa-onnx decodes Qwen3-ASR one clip at a time (its DecodeStreams loops over the
streams), greedily (a temperature <= 1e-6 takes the argmax), with the language forced as on the
other sides ("language English<asr_text>" ends the prompt), for at most --max-new-tokens tokens,
stopping early only at <|im_end|>. `tokens` is len(result.tokens): one entry per generated token.
`texts` are sherpa-onnx's own: unlike qwen-asr and medasr it applies no repetition fix (a pattern
repeated 20+ times collapsed to one copy), so compare them after medasr.prompt.fix_repetitions.

Each command first decodes the first K clips once (not timed), then all clips one after another,
timing the whole loop end to end (reading the WAV files, features, conv front end, encoder,
decoder steps, detokenising) and the process's CPU time over it (all threads, user + system).
peak_rss_mb is the process's peak resident memory since it started (VmHWM), model loading included.
"""

from __future__ import annotations

import argparse
import atexit
import json
import os
import shutil
import sys
import tempfile
import time
import wave
from pathlib import Path

import numpy as np


def sherpa_tokenizer(directory: Path) -> Path:
    """A directory sherpa-onnx can read: `directory` itself, or its tokenizer.json converted."""
    if (directory / "vocab.json").exists():
        return directory
    spec = json.loads((directory / "tokenizer.json").read_text(encoding="utf-8"))
    merges = [m if isinstance(m, str) else " ".join(m) for m in spec["model"]["merges"]]
    added = {str(t["id"]): {k: v for k, v in t.items() if k != "id"} for t in spec["added_tokens"]}
    out = Path(tempfile.mkdtemp(prefix="sherpa-tokenizer-"))
    atexit.register(shutil.rmtree, out, ignore_errors=True)
    (out / "vocab.json").write_text(json.dumps(spec["model"]["vocab"], ensure_ascii=False), encoding="utf-8")
    (out / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n", encoding="utf-8")
    (out / "tokenizer_config.json").write_text(json.dumps({"added_tokens_decoder": added}, ensure_ascii=False), encoding="utf-8")
    return out


def read_wav(path: str) -> tuple[np.ndarray, int]:
    """A 16-bit PCM mono WAV file as float32 samples in [-1, 1) and its sample rate."""
    with wave.open(path, "rb") as w:
        if w.getsampwidth() != 2 or w.getnchannels() != 1:
            raise SystemExit(f"_peer_sherpa: {path}: expected 16-bit mono PCM")
        return np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").astype(np.float32) / 32768.0, w.getframerate()


def peak_rss_mb() -> float:
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmHWM")) / 1024


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model-dir", required=True, help="folder of conv_frontend.onnx, encoder[.int8].onnx, decoder[.int8].onnx")
    ap.add_argument("--precision", choices=("fp32", "int8"), default="fp32", help="encoder.onnx + decoder.onnx, or their .int8 files")
    ap.add_argument("--tokenizer", default=None, help="tokenizer directory, or a checkpoint with a tokenizer.json (default: MODEL_DIR/tokenizer)")
    ap.add_argument("--max-new-tokens", type=int, required=True, help="generated tokens per clip at most")
    ap.add_argument("--max-total-len", type=int, default=512, help="prompt + audio + generated tokens at most (the export's KV cache length)")
    ap.add_argument("--threads", type=int, default=1, help="ONNX Runtime threads")
    ap.add_argument("--language", default="English", help="forced language (default: English, as on the other sides)")
    args = ap.parse_args()

    from importlib.metadata import version

    import sherpa_onnx

    model = Path(args.model_dir)
    suffix = "" if args.precision == "fp32" else ".int8"
    files = {"conv_frontend": model / "conv_frontend.onnx", "encoder": model / f"encoder{suffix}.onnx", "decoder": model / f"decoder{suffix}.onnx"}
    tokenizer = sherpa_tokenizer(Path(args.tokenizer) if args.tokenizer else model / "tokenizer")
    recognizer = sherpa_onnx.OfflineRecognizer.from_qwen3_asr(
        **{k: str(v) for k, v in files.items()}, tokenizer=str(tokenizer), num_threads=args.threads,
        max_total_len=args.max_total_len, max_new_tokens=args.max_new_tokens, temperature=0.0,
    )  # fmt: skip
    size = sum(p.stat().st_size for f in files.values() for p in (f, Path(f"{f}.data")) if p.exists())
    hello = {
        "package": f"sherpa-onnx {version('sherpa-onnx')}",
        "precision": args.precision,
        "files": {k: v.name for k, v in files.items()},
        "model_mb": round(size / 2**20, 1),
        "threads": args.threads,
        "default_batch_size": 1,
        "pid": os.getpid(),
    }
    print(json.dumps(hello), flush=True)

    def decode(paths: list[str]) -> list:
        results = []
        for path in paths:
            samples, rate = read_wav(path)
            stream = recognizer.create_stream()
            stream.set_option("language", args.language)
            stream.accept_waveform(rate, samples)
            recognizer.decode_stream(stream)
            results.append(stream.result)
        return results

    for line in sys.stdin:
        if not line.strip():
            continue
        cmd = json.loads(line)
        if cmd.get("warmup"):
            decode(cmd["paths"][: cmd["warmup"]])
        t0, c0 = time.perf_counter(), time.process_time()
        results = decode(cmd["paths"])
        e2e, cpu = time.perf_counter() - t0, time.process_time() - c0
        reply = {
            "texts": [r.text for r in results],
            "tokens": [len(r.tokens) for r in results],
            "e2e_s": e2e,
            "cpu_s": cpu,
            "peak_rss_mb": round(peak_rss_mb(), 1),
        }
        print(json.dumps(reply, ensure_ascii=False), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
