"""Where a --ray job runs: an in-process local cluster or an existing one, and how big its workers are."""

from __future__ import annotations

import contextlib
import logging
import math
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, replace

from medasr.errors import UserError
from medasr.scale import require_ray

log = logging.getLogger(__name__)

LOCAL = "local"


@dataclass(frozen=True)
class RayOptions:
    """A --ray job's cluster and its model workers (one model per worker, an actor of Ray Data's pool)."""

    address: str = LOCAL  # "local": start a cluster in this process; else ray.init's address ("auto", host:port, ray://...)
    workers: int = 1
    gpus_per_worker: float | None = None  # None: 1 where the cluster has GPUs, else 0
    cpus_per_worker: float = 1.0  # also the torch threads of a CPU worker

    def __post_init__(self):
        if not (self.address in (LOCAL, "auto") or self.address.startswith("ray://") or re.fullmatch(r"\S+:\d+", self.address)):
            raise UserError(f"--ray {self.address}: not a cluster address (local, auto, HOST:PORT or ray://HOST:PORT); "
                            "an input right after --ray is taken as its address: write --ray=local, or put --ray last")
        if self.workers < 1:
            raise UserError("--workers must be at least 1")
        if self.gpus_per_worker is not None and self.gpus_per_worker < 0:
            raise UserError("--gpus-per-worker must be 0 or more")
        if self.cpus_per_worker <= 0:
            raise UserError("--cpus-per-worker must be more than 0")

    def device(self, requested: str = "auto") -> str:
        """The device a worker puts its model on: `auto` is CUDA when the worker has a GPU."""
        if requested == "auto":
            return "cuda" if self.gpus_per_worker else "cpu"
        if requested.startswith("cuda") and not self.gpus_per_worker:
            raise UserError(f"--device {requested} with --ray needs --gpus-per-worker above 0")
        return requested

    def describe(self) -> str:
        gpus = f", {self.gpus_per_worker:g} GPU" if self.gpus_per_worker else ""
        return f"{self.workers} worker(s) of {self.cpus_per_worker:g} CPU{gpus} on Ray ({self.address})"


@contextlib.contextmanager
def connect(options: RayOptions) -> Iterator[RayOptions]:
    """Join the cluster (or start a local one) for the duration of the block; yields the options
    with `gpus_per_worker` settled. A process already connected to Ray keeps its connection."""
    ray = require_ray()
    started = False
    if not ray.is_initialized():
        quiet = logging.getLogger().getEffectiveLevel() > logging.INFO
        kwargs = {"include_dashboard": False, "logging_level": logging.WARNING if quiet else logging.INFO}
        if options.address == LOCAL:
            # Ray counts CPUs as slots: the workers' and at least one for the CPU tasks (decoding,
            # speech detection), or those would wait for a free slot that never comes
            need = math.ceil(options.workers * options.cpus_per_worker) + 1
            kwargs["num_cpus"] = max(os.cpu_count() or 1, need)
        else:
            kwargs["address"] = options.address
        try:
            ray.init(**kwargs)
        except (ConnectionError, ValueError, RuntimeError) as err:
            raise UserError(f"cannot join the Ray cluster at {options.address!r}: {err} (start one with `ray start "
                            "--head`, or pass --ray local for a cluster in this process)") from None
        started = True
    try:
        settled = options
        if options.gpus_per_worker is None:
            gpus = ray.cluster_resources().get("GPU", 0)
            settled = replace(options, gpus_per_worker=1.0 if gpus else 0.0)
        _check_fits(ray, settled)
        yield settled
    finally:
        if started:
            ray.shutdown()


def _check_fits(ray, options: RayOptions) -> None:
    """A pool that can never start would wait forever: say so now."""
    have = ray.cluster_resources()
    need_gpus = options.workers * (options.gpus_per_worker or 0)
    if need_gpus > have.get("GPU", 0) + 1e-9:
        raise UserError(f"{options.workers} worker(s) x {options.gpus_per_worker:g} GPU need {need_gpus:g} GPUs; the "
                        f"cluster has {have.get('GPU', 0):g}: lower --workers or --gpus-per-worker")
    need_cpus = options.workers * options.cpus_per_worker + 1  # one at least for decoding and speech detection
    if need_cpus > have.get("CPU", 0) + 1e-9:
        raise UserError(f"{options.workers} worker(s) x {options.cpus_per_worker:g} CPU and 1 CPU for decoding need "
                        f"{need_cpus:g} CPUs; the cluster has {have.get('CPU', 0):g}: lower --workers or --cpus-per-worker")
