"""Options shared by the commands that load a model."""

from __future__ import annotations

import argparse

from medasr.defaults import DEFAULT_MODEL


def add_model_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("model")
    g.add_argument(
        "--model",
        default=DEFAULT_MODEL,
        help="hub id, local checkpoint directory (original qwen-asr or transformers format), "
        f"or 'demo' for the bundled demo model (default: {DEFAULT_MODEL})",
    )
    g.add_argument("--device", default="auto", help="auto (CUDA if available), cpu, cuda or cuda:N (default: auto)")
    g.add_argument(
        "--dtype",
        default="auto",
        choices=["auto", "float32", "bfloat16", "float16"],
        help="weights and activations; auto: bfloat16 on GPU, float32 on CPU (default: auto)",
    )


def add_decoding_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("decoding")
    g.add_argument(
        "--language",
        default="English",
        help="force the language (name or code, default: English), or 'auto' to let the model detect it",
    )
    g.add_argument("--context", default=None, help="context text for the prompt, e.g. hotwords such as drug names")
    g.add_argument("--batch-size", type=int, default=16, help="clips per model batch (default: 16)")
    g.add_argument(
        "--max-new-tokens",
        type=int,
        default=None,
        help="cap on generated tokens per clip (default: grows with the audio duration, at most 512)",
    )
