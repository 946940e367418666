"""`medasr demo`, the README's first command, run as a user runs it (a subprocess, the bundled
demo model and demo aligner, espeak-ng speech): every part of the tour runs, silence and noise
come back empty through `medasr transcribe`, and the words of the word-timestamp part are timed
in order."""

from __future__ import annotations

import re
import subprocess
import sys


def test_demo_tour_runs_every_part():
    proc = subprocess.run([sys.executable, "-m", "medasr", "demo", "--n", "1"], capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = proc.stdout
    for part in ("== held-out sentences of the templates it was trained on", "== novel sentences: held-out clinical templates",
                 "== novel sentences: held-out WordNet files", "== context:", "== word timestamps:", "== silence and noise:"):
        assert part in out, out
    silence = out.split("== silence and noise:")[1].splitlines()[1:]
    assert len(silence) >= 10 and all(" -> ''" in line for line in silence), silence
    words = out.split("== word timestamps:")[1].split("==")[0]
    times = [(float(a), float(b)) for a, b in re.findall(r"^\s+(\d+\.\d\d)-\s*(\d+\.\d\d)\s", words, re.M)]
    assert len(times) >= 10, words
    assert all(a <= b for a, b in times) and all(times[k][0] <= times[k + 1][0] for k in range(len(times) - 1))
