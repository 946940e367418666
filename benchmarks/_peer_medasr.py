"""medasr's side of bench_peers: its public API in a process of its own, as the peers run in theirs.

    python benchmarks/_peer_medasr.py --model DIR --max-new-tokens N --threads 1 [--dtype float32] [--quantize int8]

Loads a transformers-format checkpoint with `medasr.load_model` (the path every command takes),
prints one JSON line describing itself, then answers one JSON line per command read from stdin:

    {"paths": [...], "batch_size": B, "warmup": K}
    -> {"texts": [...], "tokens": [...], "e2e_s": ..., "cpu_s": ..., "model_s": ..., "forwards": ...,
        "peak_rss_mb": ..., "cache_mb": ...}

Each command first transcribes the first K paths (not timed), then all paths at batch size B
(`transcribe(..., batch_size=B, max_new_tokens=N)`, speech detection on as by default), timing the whole call end to end,
inside the model's forwards (_clock.ForwardClock, as on the official side) and in process CPU
time. `tokens`: N for an answer that reached the cap without an end token (what the random
checkpoints force), else None. `peak_rss_mb` is the process's peak resident memory since it
started (loading included); `cache_mb` the largest the decoder's KV cache grew in that call (a
spy on `SlotCache`, which every allocation of the cache goes through); the description's
`weights_mb` counts every weight as stored (float, bfloat16 or int8 with its scales).
"""

from __future__ import annotations

import argparse
import inspect
import json
import sys
import time


def weights_mb(model) -> float:
    """Bytes of every parameter and buffer, plus the int8 matrices torch.ao keeps packed."""
    from torch import nn

    total = sum(t.numel() * t.element_size() for t in (*model.parameters(), *model.buffers()))
    for m in model.modules():
        if isinstance(getattr(m, "_packed_params", None), nn.Module):  # int8: weight, per-channel scales, bias
            total += m.in_features * m.out_features + 8 * m.out_features + (4 * m.out_features if m.bias() is not None else 0)
    return round(total / 2**20, 1)


def cache_spy():
    """The largest KV cache (MB) allocated since the last reset: wraps SlotCache's allocations."""
    from medasr.pipeline.decoder import SlotCache

    peak = {"mb": 0.0}

    def note(cache) -> None:
        peak["mb"] = max(peak["mb"], sum(t.numel() * t.element_size() for t in (*cache.keys, *cache.values)) / 2**20)

    for name in ("__init__", "ensure_rows", "grow"):
        real = getattr(SlotCache, name)

        def spied(self, *args, _real=real, **kwargs):
            out = _real(self, *args, **kwargs)
            note(self)
            return out

        setattr(SlotCache, name, spied)
    return peak


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True, help="transformers-format checkpoint directory")
    ap.add_argument("--max-new-tokens", type=int, required=True)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--dtype", default="float32", choices=("float32", "bfloat16"))
    ap.add_argument("--quantize", default="none", choices=("none", "int8"))
    args = ap.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    import transformers
    from _clock import ForwardClock, parameter_digest
    from _peak import peak_mb

    import medasr

    peak_cache = cache_spy()
    default_batch = inspect.signature(medasr.load_model).parameters["batch_size"].default
    t0 = time.perf_counter()
    asr = medasr.load_model(args.model, device="cpu", dtype=args.dtype, batch_size=max(default_batch, 32), quantize=args.quantize)
    load_s = time.perf_counter() - t0
    model = asr.loaded.model
    clock = ForwardClock(model)
    hello = {
        "package": f"medasr {medasr.__version__}",
        "transformers": transformers.__version__,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "default_batch_size": default_batch,
        "dtype": args.dtype,
        "quantize": args.quantize,
        "digest": parameter_digest(model) if args.quantize == "none" and args.dtype == "float32" else None,
        "weights_mb": weights_mb(model),
        "load_s": round(load_s, 1),
    }
    print(json.dumps(hello), flush=True)

    for line in sys.stdin:
        if not line.strip():
            continue
        cmd = json.loads(line)
        options = {"batch_size": int(cmd["batch_size"]), "max_new_tokens": args.max_new_tokens}  # speech detection on, as by default
        if cmd.get("warmup"):
            asr.transcribe(cmd["paths"][: cmd["warmup"]], **options)
        clock.reset()
        peak_cache["mb"] = 0.0
        t0, c0 = time.perf_counter(), time.process_time()
        out = asr.transcribe(cmd["paths"], **options)
        e2e, cpu = time.perf_counter() - t0, time.process_time() - c0
        reply = {
            "texts": [t.text for t in out],
            "tokens": [args.max_new_tokens if t.hit_token_cap else None for t in out],
            "e2e_s": e2e,
            "cpu_s": cpu,
            "model_s": clock.seconds,
            "forwards": clock.calls,
            "peak_rss_mb": round(peak_mb(), 1),
            "cache_mb": round(peak_cache["mb"], 1),
        }
        print(json.dumps(reply, ensure_ascii=False), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
