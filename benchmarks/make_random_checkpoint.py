"""Write a random-weight Qwen3-ASR of a published size to disk, for servers and tools that load a directory.

    python benchmarks/make_random_checkpoint.py --size 1.7b --out runs/rw-1.7b --device cuda --dtype bfloat16

The architecture, official vocabulary and token ids are `medasr.bench.randomweights`' (what
`medasr bench offline --random-weights SIZE` builds in memory). The end tokens are made
unreachable (`randomweights.forbid_end_tokens`), so every answer runs exactly to the server's
--max-new-tokens: a fixed, known amount of decoding per request. Speed only; the texts are
meaningless. Written in the transformers format (`medasr.model.checkpoint.save_transformers`), or the
original qwen-asr one with --format original.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", choices=("1.7b", "0.6b", "tiny"), required=True)
    ap.add_argument("--out", required=True, help="directory to create (must not exist or be empty)")
    ap.add_argument("--device", default="auto", help="where the weights are drawn: auto, cpu, cuda (default: auto)")
    ap.add_argument("--dtype", default="auto", help="auto (bfloat16 on GPU, float32 on CPU), float32, bfloat16 (default: auto)")
    ap.add_argument("--format", choices=("transformers", "original"), default="transformers")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    from medasr.bench import randomweights
    from medasr.model.checkpoint import pick_device, pick_dtype, save_original, save_transformers

    out = Path(args.out)
    if out.exists() and any(out.iterdir()):
        if (out / "config.json").exists():
            print(f"make_random_checkpoint: {out} exists, kept", file=sys.stderr)
            return 0
        raise SystemExit(f"make_random_checkpoint: {out} exists and is not a checkpoint")
    device = pick_device(args.device)
    loaded = randomweights.build(args.size, device, pick_dtype(args.dtype, device), args.seed)
    randomweights.forbid_end_tokens(loaded.model, loaded.processor.tokenizer)
    out.mkdir(parents=True, exist_ok=True)
    (save_transformers if args.format == "transformers" else save_original)(loaded.model, loaded.processor, out)
    print(f"make_random_checkpoint: {args.size} random weights ({randomweights.n_parameters(loaded.model) / 1e9:.2f} B parameters, "
          f"{str(loaded.dtype).removeprefix('torch.')}) -> {out}", file=sys.stderr)  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
