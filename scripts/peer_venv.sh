#!/usr/bin/env bash
# The official qwen-asr 0.0.6 package (transformers 4.57.6) in its own venv, outside the repo.
#
# qwen-asr pins transformers==4.57.6, so it cannot share medasr's environment. Two things use it:
# scripts/make_parity_fixture.py (the parity fixture) and benchmarks/bench_peers.py (the peer
# benchmark). This script is the one place its set-up is written down.
#
#   scripts/peer_venv.sh            # create it if missing (or broken), then print its python
#   PEER_VENV=/path scripts/peer_venv.sh
#
# Idempotent and safe to run from two shells at once: a working venv is reused as is (never
# deleted), and creation holds a lock. qwen-asr's own dependencies gradio, flask, sox, soynlp and
# qwen-omni-utils are left out (nothing on the transformers inference path imports them);
# nagisa and dynet38 are installed because `import qwen_asr` imports nagisa.
set -euo pipefail

VENV="${PEER_VENV:-/tmp/venv-qwenasr}"
TORCH_WHEEL="${PEER_TORCH_WHEEL:-/opt/wheels/torch-2.13.0+cpu-cp311-cp311-manylinux_2_28_x86_64.whl}"
PY="$VENV/bin/python"

works() {
    [ -x "$PY" ] && "$PY" - <<'PY' >/dev/null 2>&1
import importlib.metadata as md
import qwen_asr  # noqa: F401
assert md.version("qwen-asr") == "0.0.6", md.version("qwen-asr")
assert md.version("transformers") == "4.57.6", md.version("transformers")
PY
}

if works; then
    echo "$PY"
    exit 0
fi

exec 9>"$VENV.lock"
flock 9
if ! works; then  # someone else may have finished it while we waited for the lock
    echo "peer_venv: creating $VENV (qwen-asr 0.0.6, transformers 4.57.6)" >&2
    [ -x "$PY" ] || python3 -m venv "$VENV"
    if [ -f "$TORCH_WHEEL" ]; then
        "$VENV/bin/pip" install -q "$TORCH_WHEEL"
    else
        "$VENV/bin/pip" install -q torch --index-url https://download.pytorch.org/whl/cpu
    fi
    "$VENV/bin/pip" install -q transformers==4.57.6 accelerate==1.12.0 qwen-asr==0.0.6 --no-deps
    "$VENV/bin/pip" install -q "huggingface-hub>=0.34,<1.0" "tokenizers>=0.22,<=0.23" \
        safetensors regex pyyaml packaging requests tqdm filelock "numpy<2.4" psutil librosa soundfile six
    "$VENV/bin/pip" install -q nagisa dynet38 --no-deps  # imported at `import qwen_asr` time
    works || { echo "peer_venv: $VENV was created but 'import qwen_asr' fails" >&2; exit 1; }
fi
echo "$PY"
