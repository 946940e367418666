"""The official qwen-asr package's side of bench_peers: runs in its own venv (scripts/peer_venv.sh).

    /tmp/venv-qwenasr/bin/python benchmarks/_peer_official.py --model DIR --max-new-tokens N --threads 1

Loads an ORIGINAL-format checkpoint with `qwen_asr.Qwen3ASRModel.from_pretrained` (its
transformers backend), prints one JSON line describing itself, then answers one JSON line per
command read from stdin:

    {"paths": [...], "batch_size": B, "warmup": K}
    -> {"texts": [...], "tokens": [...], "e2e_s": ..., "cpu_s": ..., "model_s": ..., "forwards": ..., "peak_rss_mb": ...}

Each command first transcribes the first K paths once (not timed), then all paths with
`max_inference_batch_size` B, timing the whole `transcribe` call (end to end: audio loading,
features, prompt, generate, decoding, parsing) and the time inside the model's forwards
(_clock.ForwardClock, the same clock as medasr's side), and the process's CPU time for the
whole call (with one thread, what the work costs whatever else the machine runs). `tokens` counts each clip's generated
tokens up to and including an end token, read from what `generate` returned. Nothing of medasr is
imported here: this venv has transformers 4.57.6 and no medasr.
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import sys
import time


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True, help="original-format checkpoint directory")
    ap.add_argument("--max-new-tokens", type=int, required=True)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--language", default="English")
    args = ap.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    from importlib.metadata import version

    import qwen_asr
    import transformers
    from _clock import ForwardClock, parameter_digest
    from _peak import peak_mb

    default_batch = inspect.signature(qwen_asr.Qwen3ASRModel.from_pretrained).parameters["max_inference_batch_size"].default
    asr = qwen_asr.Qwen3ASRModel.from_pretrained(
        args.model, dtype=torch.float32, device_map="cpu", max_new_tokens=args.max_new_tokens
    )
    eos_ids = inspect.signature(type(asr.model).generate).parameters["eos_token_id"].default
    eos = set(eos_ids)
    thinker_config = asr.model.thinker.generation_config
    if thinker_config.pad_token_id is None:  # what generate would pick itself, minus its warning per batch
        thinker_config.pad_token_id = eos_ids[0]
    counts: list[int] = []
    real_generate = asr.model.generate

    def generate(**kwargs):  # only reads what generate returned: each row's generated length
        out = real_generate(**kwargs)
        for row in out.sequences[:, kwargs["input_ids"].shape[1] :].tolist():
            counts.append(next((i + 1 for i, t in enumerate(row) if t in eos), len(row)))
        return out

    asr.model.generate = generate
    clock = ForwardClock(asr.model)
    hello = {
        "package": f"qwen-asr {version('qwen-asr')}",
        "transformers": transformers.__version__,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "default_batch_size": default_batch,
        "dtype": str(asr.model.dtype).removeprefix("torch."),
        "attn_implementation": getattr(asr.model.config, "_attn_implementation", None),
        "digest": parameter_digest(asr.model),
        "pid": os.getpid(),
    }
    print(json.dumps(hello), flush=True)

    for line in sys.stdin:
        if not line.strip():
            continue
        cmd = json.loads(line)
        asr.max_inference_batch_size = int(cmd["batch_size"])
        if cmd.get("warmup"):
            asr.transcribe(audio=cmd["paths"][: cmd["warmup"]], language=args.language)
        counts.clear()
        clock.reset()
        t0, c0 = time.perf_counter(), time.process_time()
        results = asr.transcribe(audio=cmd["paths"], language=args.language)
        e2e, cpu = time.perf_counter() - t0, time.process_time() - c0
        reply = {
            "texts": [r.text for r in results],
            "tokens": list(counts),
            "e2e_s": e2e,
            "cpu_s": cpu,
            "model_s": clock.seconds,
            "forwards": clock.calls,
            "peak_rss_mb": round(peak_mb(), 1),
        }
        print(json.dumps(reply, ensure_ascii=False), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
