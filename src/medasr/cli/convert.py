"""`medasr convert`: write a checkpoint in the other format."""

from __future__ import annotations

import argparse

NAME = "convert"
HELP = "convert a checkpoint between the original qwen-asr and the transformers format"
DESCRIPTION = """Write a copy of a Qwen3-ASR checkpoint in another format.

--to transformers (default): weights, config, tokenizer, feature extractor and chat template that
  Qwen3ASRForConditionalGeneration.from_pretrained and AutoProcessor.from_pretrained load directly.
--to original: the layout qwen-asr, its fine-tuning recipe and vLLM load (thinker_config, thinker.*).

SRC is a hub id, a local directory of either format, or 'demo'.

example:
  medasr convert yuriyvnv/Qwen3-ASR-1.7B-EN-Medical ./medical-hf
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("src", help="hub id, local checkpoint directory or 'demo'")
    p.add_argument("dst", help="destination directory (must not exist or be empty)")
    p.add_argument("--to", default="transformers", choices=["transformers", "original"], help="target format (default: transformers)")


def run(args: argparse.Namespace) -> int:
    from medasr.model.convert import convert

    dst = convert(args.src, args.dst, to=args.to)
    print(f"wrote {args.to} checkpoint to {dst}")
    return 0
