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


def add_ray_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("scale-out on a Ray cluster (pip install 'medasr[ray]'; docs/scale.md)")
    g.add_argument(
        "--ray",
        nargs="?",
        const="local",
        default=None,
        metavar="ADDRESS",
        help="run as a Ray Data job: CPU tasks decode and detect speech, --workers model replicas transcribe. "
        "No ADDRESS or 'local': a cluster started in this process; 'auto': the one `ray start` runs on this "
        "machine; HOST:PORT or ray://HOST:10001: a remote one (medasr and the model must be on every node)",
    )
    g.add_argument("--workers", type=int, default=1, help="with --ray: model replicas, one per actor (default: 1)")
    g.add_argument(
        "--gpus-per-worker",
        type=float,
        default=None,
        metavar="G",
        help="with --ray: GPUs per replica, fractions allowed (0.5: two on a GPU); default: 1 where the cluster "
        "has GPUs, else 0 (CPU)",
    )
    g.add_argument(
        "--cpus-per-worker",
        type=float,
        default=1.0,
        metavar="C",
        help="with --ray: CPUs reserved per replica, the torch threads of a CPU replica (default: 1)",
    )


def ray_options(args: argparse.Namespace):
    """The RayOptions of --ray and its companions, or None without --ray (Ray is not imported)."""
    from medasr.errors import UserError

    if args.ray is None:
        for flag, value, default in (("--workers", args.workers, 1), ("--gpus-per-worker", args.gpus_per_worker, None),
                                     ("--cpus-per-worker", args.cpus_per_worker, 1.0)):
            if value != default:
                raise UserError(f"{flag} applies to --ray runs: add --ray (local, or a cluster's address)")
        return None
    from medasr.scale import require_ray
    from medasr.scale.cluster import RayOptions

    require_ray()  # before any work: without Ray, say how to install it
    return RayOptions(args.ray, args.workers, args.gpus_per_worker, args.cpus_per_worker)
