"""Scale-out: `medasr transcribe --ray` and `medasr evaluate --ray` as Ray Data jobs (docs/scale.md).

The same pipeline as the local path, spread over a cluster: CPU tasks decode each input and run
the segmenter (`medasr.pipeline.segmenter`: speech detection, pieces of at most 30 s), an actor
pool holds one model per worker and runs the pieces through the engine's scheduler, and the
driver puts each input's pieces back in order with the assembler and writes the result through
`medasr.output.recordlog` as soon as it is complete. Imported only with --ray: Ray is an optional
dependency (`pip install 'medasr[ray]'`).
"""

from __future__ import annotations

import re

from medasr.errors import UserError

MIN_RAY = "2.60.0"  # the lower bound in pyproject.toml's `ray` extra (tested)
INSTALL = "pip install 'medasr[ray]'"


def require_ray():
    """The `ray` module with Ray Data, or a UserError that says how to install it."""
    try:
        import ray
        import ray.data  # the `data` extra: pandas, fsspec, ...
    except ImportError as err:
        raise UserError(f"--ray needs Ray {MIN_RAY} or later with Ray Data, which is not installed "
                        f"({err.msg}): {INSTALL}") from None
    if _version(ray.__version__) < _version(MIN_RAY):
        raise UserError(f"--ray needs Ray {MIN_RAY} or later (installed: {ray.__version__}): {INSTALL} --upgrade")
    return ray


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(x) for x in re.findall(r"\d+", text)[:3])
