"""Where medasr's CPU time goes, module by module, on bench_peers' model and clips.

    python benchmarks/bench_peers.py            # first: builds runs/peers/ (model and clips)
    python benchmarks/bench_breakdown.py        # --clips 8 --tokens 32 --threads 1 (--model, --clips-dir: another shape)

One `transcribe` call through the public API (after a warm-up call), with forward hooks that add
up the process's CPU time inside each part of the model: the audio encoder's three
convolutions and its layers, the projector, the language model's layers and the output layer.
CPU time (not wall time) so that other jobs on a shared machine do not distort the shares; with
one thread it is what each part costs.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default=str(ROOT / "runs/peers/model-L8-W512-C480-s0/transformers"))
    ap.add_argument("--clips-dir", default=str(ROOT / "runs/peers/clips-speech-n8-max20-s0"))
    ap.add_argument("--clips", type=int, default=8, help="how many of the clips (default: 8)")
    ap.add_argument("--tokens", type=int, default=32, help="max new tokens per clip (default: 32)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--dtype", default="float32", help="float32 or bfloat16 (default: float32)")
    ap.add_argument("--quantize", default="none", help="none or int8 (default: none)")
    ap.add_argument("--batch-size", type=int, default=16)
    args = ap.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    import medasr

    index = Path(args.clips_dir) / "clips.json"
    if not index.exists():
        raise SystemExit(f"bench_breakdown: {index} not found: run benchmarks/bench_peers.py first (or pass --clips-dir)")
    clips = json.loads(index.read_text())["clips"][: args.clips]
    paths = [str(Path(args.clips_dir) / name) for name, _ in clips]
    audio_s = sum(d for _, d in clips)
    asr = medasr.load_model(args.model, device="cpu", dtype=args.dtype, quantize=args.quantize, batch_size=args.batch_size)
    model = asr.loaded.model
    encoder = model.model.audio_tower
    parts = {
        "encoder conv2d1": [encoder.conv2d1],
        "encoder conv2d2": [encoder.conv2d2],
        "encoder conv2d3": [encoder.conv2d3],
        "encoder conv_out": [encoder.conv_out],
        "encoder layers": list(encoder.layers),
        "projector": [model.model.multi_modal_projector],
        "language model layers, prefill": list(model.model.language_model.layers),
        "language model layers, decode steps": [],
        "output layer (lm_head)": [model.lm_head],
    }
    spent = dict.fromkeys(parts, 0.0)
    started: dict[int, float] = {}
    lm_layers = set(map(id, model.model.language_model.layers))

    def part(mod, name: str, args, kwargs) -> str:  # a language model layer fed one position is a decode step
        hidden = args[0] if args else kwargs.get("hidden_states")
        return "language model layers, decode steps" if id(mod) in lm_layers and hidden.shape[1] == 1 else name

    for name, modules in parts.items():
        for m in modules:
            m.register_forward_pre_hook(lambda mod, args: started.__setitem__(id(mod), time.process_time()))
            m.register_forward_hook(
                lambda mod, args, kwargs, out, name=name: spent.__setitem__(
                    part(mod, name, args, kwargs), spent[part(mod, name, args, kwargs)] + time.process_time() - started[id(mod)]
                ),
                with_kwargs=True,
            )
    asr.transcribe(paths[:2], max_new_tokens=args.tokens)
    spent.update(dict.fromkeys(spent, 0.0))
    c0 = time.process_time()
    asr.transcribe(paths, max_new_tokens=args.tokens)
    total = time.process_time() - c0
    print(f"{len(paths)} clips, {audio_s:.1f} s of audio, {args.tokens} tokens at most, {args.threads} thread(s), "
          f"{args.dtype}, quantize {args.quantize}, batch {args.batch_size}: "
          f"{total:.2f} s of CPU time (RTFx {audio_s / total:.2f})\n")  # fmt: skip
    print("| part | CPU s | share |\n| --- | --- | --- |")
    for name, s in spent.items():
        print(f"| {name} | {s:.2f} | {100 * s / total:.0f} % |")
    rest = total - sum(spent.values())
    print(f"| everything else (features, speech detection, decoding loop, parsing) | {rest:.2f} | {100 * rest / total:.0f} % |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
