"""`medasr train`: fine-tune or train from scratch with a YAML recipe."""

from __future__ import annotations

import argparse

NAME = "train"
HELP = "fine-tune Qwen3-ASR (or train one from scratch) with a YAML recipe"
DESCRIPTION = """Train with the transformers Trainer, driven by a recipe (YAML) and overrides.

Defaults are the seed model's recipe (lr 2e-5, linear, warmup ratio 0.02, batch 64 x 3
accumulation, 3 epochs, bf16 where supported, gradient checkpointing, fused AdamW, best
checkpoint by validation loss). Targets are written-form references; clips over 30 s are dropped.
A run resumes from the last checkpoint in its output_dir unless --no-resume is given.
The effective recipe is written to OUTPUT_DIR/recipe.yaml, the best model to OUTPUT_DIR/best
(or export_dir). Several GPUs: torchrun --nproc-per-node N -m medasr train --config R.yaml

examples:
  medasr train --config recipes/medical.yaml
  medasr train --config recipes/demo.yaml --set epochs=1 --set output_dir=runs/try
  medasr train --config recipes/medical.yaml --set lora.r=16 --set learning_rate=1e-4
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", metavar="RECIPE.yaml", help="recipe file (default: the seed's recipe, no data)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a recipe key (repeatable; dotted keys reach into mappings: lora.r=8)")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--resume", nargs="?", const="yes", default=None, metavar="CHECKPOINT",
                   help="resume from CHECKPOINT, or from the last checkpoint in output_dir when none is given "
                   "(the default already does this when one exists)")
    g.add_argument("--no-resume", action="store_true", help="start afresh even if output_dir holds checkpoints")
    p.add_argument("--print-recipe", action="store_true", help="print the effective recipe and exit")


def run(args: argparse.Namespace) -> int:
    import os

    # Idle OpenMP threads sleep instead of spinning: on a shared CPU, spinning threads that wait
    # for a busy core made steps ~10x slower. Must be set before torch starts its thread pool.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    from medasr.train.recipe import load_recipe, write_recipe

    overrides = list(args.overrides)
    if args.resume is not None:
        overrides.append(f"resume={args.resume}")
    elif args.no_resume:
        overrides.append("resume=no")
    recipe = load_recipe(args.config, overrides)
    if args.print_recipe:
        import sys
        import tempfile
        from pathlib import Path

        with tempfile.TemporaryDirectory() as tmp:
            sys.stdout.write(write_recipe(recipe, Path(tmp) / "r.yaml").read_text())
        return 0
    from medasr.train import train

    result = train(recipe)
    if result.export_dir is None:  # not the main process of a distributed run
        return 0
    best = f"{result.best_eval_loss:.4f}" if result.best_eval_loss is not None else "n/a"
    print(f"step {result.global_step}, best validation loss {best} ({result.best_checkpoint}), "
          f"{result.train_seconds:.0f} s; model: {result.export_dir}")
    return 0
