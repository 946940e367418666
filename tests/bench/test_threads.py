"""CPU threads: the default the CLI picks, the --threads override, and that the count reaches
threads started afterwards (the server's batcher runs the model in its own thread)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

from medasr.cli import _common

ENV = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OMP_WAIT_POLICY")}


def python(code: str, env: dict | None = None) -> str:
    out = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, env=env or ENV, check=False)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def test_default_is_half_the_usable_cpus_or_omp_num_threads(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    cpus = _common.usable_cpus()
    assert 1 <= cpus <= (os.cpu_count() or 1)
    assert _common.default_threads() == max(1, cpus // 2)
    monkeypatch.setenv("OMP_NUM_THREADS", "3")  # torchrun sets it: an explicit choice wins
    assert _common.default_threads() == 3


def test_cgroup_quota_caps_the_cpus(monkeypatch, tmp_path):
    # a container limited to 1.5 CPUs on a bigger host: torch alone would start one thread per host core
    monkeypatch.setattr(_common, "_cgroup_quota", lambda: 1.5)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(64)))
    assert _common.usable_cpus() == 2
    monkeypatch.setattr(_common, "_cgroup_quota", lambda: None)
    assert _common.usable_cpus() == 64


def test_the_count_reaches_threads_started_later_and_waiting_threads_sleep():
    # a fresh process: OMP_WAIT_POLICY only counts before torch is imported, as in the CLI
    got = json.loads(
        python("""
            import json, os, threading
            from medasr.cli._common import set_threads
            n = set_threads(None)
            import torch
            seen = []
            t = threading.Thread(target=lambda: seen.append(torch.get_num_threads()))
            t.start(); t.join()
            print(json.dumps({"n": n, "main": torch.get_num_threads(), "worker": seen[0], "policy": os.environ["OMP_WAIT_POLICY"]}))
        """)
    )
    assert got == {"n": _common.default_threads(), "main": got["n"], "worker": got["n"], "policy": "PASSIVE"}


@pytest.mark.parametrize("command", ["transcribe", "serve", "evaluate", "bench offline"])
def test_every_model_command_takes_threads(command):
    from medasr.cli import build_parser

    argv = command.split() + ["--threads", "3"]
    argv += {"transcribe": ["a.wav"], "evaluate": ["--dataset", "x=y", "--output-dir", "o"], "bench offline": ["--synthetic", "1"]}.get(command, [])
    assert build_parser().parse_args(argv).threads == 3


def test_bench_applies_and_records_the_default_and_the_override(tiny_model, capsys):
    import torch

    from medasr.cli import main

    argv = ["bench", "offline", "--model", str(tiny_model["transformers"]), "--device", "cpu", "--synthetic", "1",
            "--synthetic-audio", "noise", "--warmup", "0", "--max-new-tokens", "2"]  # fmt: skip
    before = torch.get_num_threads()
    try:
        for extra, expected in (([], _common.default_threads()), (["--threads", "2"], 2)):
            torch.set_num_threads(5)  # neither the default nor the override: the command must set it
            assert main(argv + extra) == 0
            assert json.loads(capsys.readouterr().out)["environment"]["torch_threads"] == expected
    finally:
        torch.set_num_threads(before)


def test_zero_threads_is_refused(capsys):
    from medasr.cli import main

    assert main(["transcribe", "--threads", "0", "missing.wav"]) == 2
    assert "--threads must be at least 1" in capsys.readouterr().err
