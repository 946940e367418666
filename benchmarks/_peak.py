"""Peak resident memory of the current process (Linux), for the benchmarks' child processes.

Children run as `python -c CODE` with `env=child_env()`, so that they can `from _peak import ...`.
"""

from __future__ import annotations

import os
from pathlib import Path


def peak_mb() -> float:
    """The peak resident set size (VmHWM) in MB."""
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmHWM")) / 1024


def reset_peak() -> None:
    """Restart the peak from the current resident set, so what follows is measured on its own
    (Linux >= 4.0; elsewhere the peak keeps counting from the start)."""
    try:
        with open("/proc/self/clear_refs", "w") as refs:
            refs.write("5")
    except OSError:
        pass


def child_env() -> dict[str, str]:
    here = str(Path(__file__).resolve().parent)
    path = os.environ.get("PYTHONPATH")
    return {**os.environ, "PYTHONPATH": here + (os.pathsep + path if path else "")}
