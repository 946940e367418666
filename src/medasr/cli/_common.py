"""Options shared by the commands that load a model."""

from __future__ import annotations

import argparse
import math
import os
from pathlib import Path

from medasr.defaults import DEFAULT_ALIGNER, DEFAULT_MODEL, LOW_CONFIDENCE, MAX_CONTEXT_TOKENS, QUANTIZE, TIMESTAMPS


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
    g.add_argument(
        "--quantize",
        default="none",
        choices=QUANTIZE,
        help="CPU only: int8 runs the linear layers and the output head with int8 weights (per channel) and "
        "int8 activations quantized on the fly: ~3x float32's speed, ~1/3 of its weights' memory (docs/performance.md) "
        "(default: none)",
    )
    g.add_argument(
        "--threads",
        type=int,
        default=None,
        metavar="N",
        help="torch CPU threads (default: $OMP_NUM_THREADS if set, else half the CPUs this process may "
        "use, at least 1: more threads than free cores make every step wait on a shared machine)",
    )


def add_decoding_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("decoding")
    g.add_argument(
        "--language",
        default="English",
        help="force the language (name or code, default: English), or 'auto' to let the model detect it",
    )
    g.add_argument("--context", default=None, help="context text for the prompt, e.g. hotwords such as drug names")
    add_context_limit_argument(g)
    g.add_argument("--batch-size", type=int, default=16, help="clips per model batch (default: 16)")
    g.add_argument(
        "--max-new-tokens",
        type=int,
        default=None,
        help="cap on generated tokens per clip (default: grows with the audio duration, at most 512)",
    )


def add_context_limit_argument(g, refused: str = "refused") -> None:
    """--max-context-tokens (`refused`: what a longer context gets, in the help)."""
    g.add_argument(
        "--max-context-tokens",
        type=int,
        default=MAX_CONTEXT_TOKENS,
        metavar="N",
        help=f"longest context (prompt, hotwords) in tokens; a longer one is {refused} before any model call "
        f"(default: {MAX_CONTEXT_TOKENS}; docs/limits.md)",
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


def add_word_arguments(p: argparse.ArgumentParser, live: bool = False) -> None:
    g = p.add_argument_group("word timestamps")
    g.add_argument(
        "--timestamps",
        default="segment",
        choices=TIMESTAMPS,
        help="segment: times of pieces of speech (up to 30 s); word: also each word's start, end and "
        "probability, from a forced aligner run on each " + ("final" if live else "piece") + " (default: segment)",
    )
    g.add_argument(
        "--aligner",
        default=None,
        metavar="MODEL",
        help="forced aligner for --timestamps word: hub id, local directory (qwen-asr or transformers format) "
        f"or 'demo'; loaded only when words are asked for (default: 'demo' with --model demo, else {DEFAULT_ALIGNER})",
    )
    g.add_argument(
        "--low-confidence",
        type=float,
        default=LOW_CONFIDENCE,
        metavar="P",
        help="words whose probability is below P are marked `low_confidence: true` in JSON output, for "
        f"review (default: {LOW_CONFIDENCE})",
    )


def check_word_arguments(args: argparse.Namespace) -> None:
    """The checks of `add_word_arguments`' options, the same for every command that has them."""
    import sys

    from medasr.errors import UserError

    if not 0.0 <= args.low_confidence <= 1.0:
        raise UserError("--low-confidence must be between 0 and 1")
    if args.aligner and args.timestamps != "word":
        print("medasr: warning: --aligner is used only with --timestamps word", file=sys.stderr)


# ---------------------------------------------------------------------------------------------- CPU threads
# torch starts one thread per CPU it sees. On a shared machine (other processes, or a container
# whose CPU quota is below the host's core count) those threads wait at every parallel op for
# the one that lost its core, and idle OpenMP threads spin while they wait: a batch measured at
# 0.33-0.38 s with 1 thread took 0.44-2.94 s with 2 (docs/performance.md, "CPU threads").


def usable_cpus() -> int:
    """CPUs this process may run on: its affinity mask, capped by a cgroup CPU quota (containers)."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        cpus = os.cpu_count() or 1
    quota = _cgroup_quota()
    return max(1, min(cpus, math.ceil(quota))) if quota else max(1, cpus)


def _cgroup_quota() -> float | None:
    """The cgroup's CPU limit in CPUs (v2 cpu.max or v1 cfs quota/period), None when unlimited."""
    try:
        text = Path("/sys/fs/cgroup/cpu.max").read_text().split()
        if text and text[0] != "max":
            return int(text[0]) / int(text[1])
        return None
    except (OSError, ValueError, IndexError):
        pass
    try:
        quota = int(Path("/sys/fs/cgroup/cpu/cpu.cfs_quota_us").read_text())
        period = int(Path("/sys/fs/cgroup/cpu/cpu.cfs_period_us").read_text())
        return quota / period if quota > 0 and period > 0 else None
    except (OSError, ValueError):
        return None


def default_threads() -> int:
    """$OMP_NUM_THREADS when set (torchrun sets 1), else half the usable CPUs, at least 1."""
    env = os.environ.get("OMP_NUM_THREADS", "").strip()
    if env.isdigit() and int(env) > 0:
        return int(env)
    return max(1, usable_cpus() // 2)


def set_threads(threads: int | None) -> int:
    """Apply --threads (None: `default_threads()`) before the model loads; returns the count.

    Call it in the main thread before any worker thread starts: torch hands the count to each new
    thread when it first computes (the server's batcher thread, for one). Idle OpenMP threads are
    also told to sleep rather than spin (OMP_WAIT_POLICY=PASSIVE, unless already set), which
    takes effect when torch has not started its thread pool yet, as in the CLI.
    """
    from medasr.errors import UserError

    if threads is not None and threads < 1:
        raise UserError("--threads must be at least 1")
    n = threads or default_threads()
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    import torch

    torch.set_num_threads(n)
    return n
