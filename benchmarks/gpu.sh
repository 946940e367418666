#!/usr/bin/env bash
# One command for the GPU measurement of issue 16: offline RTFx and server latency, one table.
#
#   benchmarks/gpu.sh                      # one H200: sized for 5-8 minutes (estimated), nothing downloaded
#   GPU_SH_SMOKE=1 benchmarks/gpu.sh       # everything tiny, on the CPU: checks the script end to end (~2 min)
#
# What runs (random weights of the published 1.7B architecture, bf16; synthetic white-noise clips
# with LibriSpeech test-clean's durations, so nothing to download and no espeak-ng needed; clips
# over 30 s are cut with --vad none, so no audio is dropped):
#   1. offline, `medasr bench offline --random-weights 1.7b`: each answer forced to 3.5 tokens per
#      audio second, RTFx inside the model and end to end:
#        - medasr, compiled + continuous          (--compile: the decode step as a CUDA graph)
#        - medasr, continuous, eager               (the same without --compile)
#        - medasr, static batches, eager           (--baseline static: sorted batches run to completion)
#        - pad-to-longest generate batches of 32   (--baseline pad-longest-32: transformers' generate on
#                                                   unsorted padded batches, the usual hand-written loop)
#   2. server, `medasr serve` on a random 1.7B checkpoint written to disk whose end tokens are
#      unreachable (benchmarks/make_random_checkpoint.py), every answer exactly $SERVER_TOKENS
#      tokens; `medasr bench serve` at concurrency 1, 32 and 128: samples/s, RTFx, p50 / p95.
# Results: $OUT/*.json (and .md), the table on stdout and in $OUT/table.md, the log in $OUT/gpu.log.
#
# Environment: PYTHON (default python3; medasr importable, e.g. PYTHONPATH=src), GPU_SH_OUT (the
# output directory, default runs/gpu-DATE), COMPILE_FLAGS / SERVER_FLAGS (see below),
# GPU_SH_SMOKE=1 (tiny sizes on the CPU).
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
OUT="${GPU_SH_OUT:-runs/gpu-$(date +%Y%m%d-%H%M%S)}"
mkdir -p "$OUT"
exec > >(tee -a "$OUT/gpu.log") 2>&1

if [ "${GPU_SH_SMOKE:-0}" = 1 ]; then
    SIZE=tiny; DEVICE=cpu; DTYPE=float32
    N_CLIPS=8; BATCH=4; MAX_BATCH_AUDIO_S=600; BASELINE_LIMIT=8; WARMUP=1
    SERVER_TOKENS=4; LEVELS="1:4 2:8 4:8"; SERVER_BATCH=4
else
    SIZE=1.7b; DEVICE=cuda; DTYPE=bfloat16
    # 1,024 clips (~2 h of audio) in batches of 128: 8 batches, enough to see the steady state
    N_CLIPS=1024; BATCH=128; MAX_BATCH_AUDIO_S=5000; BASELINE_LIMIT=256; WARMUP=1
    # each answer 26 tokens: 3.5 tokens per second of a 7.4 s LibriSpeech utterance
    SERVER_TOKENS=26; LEVELS="1:32 32:256 128:512"; SERVER_BATCH=128
fi

# ======================================================================================================
# The engine's flags this script uses, found in --help so that the script runs on older and newer
# medasr alike (a row whose flag is missing is skipped and says so):
#   medasr bench offline --compile            the compiled + continuous row
#   medasr bench offline --baseline static    the eager static-batches row
#   medasr serve --compile                    the server compiles its decode step too
# COMPILE_FLAGS and SERVER_FLAGS override what is found (e.g. SERVER_FLAGS="" to serve eager).
OFFLINE_HELP="$("$PY" -m medasr bench offline --help)"
SERVE_HELP="$("$PY" -m medasr serve --help)"
if [ -z "${COMPILE_FLAGS+set}" ]; then
    COMPILE_FLAGS=""
    if [[ "$OFFLINE_HELP" == *--compile* ]]; then COMPILE_FLAGS="--compile"; fi
fi
if [ -z "${SERVER_FLAGS+set}" ]; then
    SERVER_FLAGS=""
    if [[ "$SERVE_HELP" == *--compile* ]]; then SERVER_FLAGS="--compile"; fi
fi
BASELINES="pad-longest-32"
STATIC_LABEL="medasr, its default path (eager)"
if [[ "$OFFLINE_HELP" == *"static (sorted"* ]]; then
    BASELINES="static,pad-longest-32"
    STATIC_LABEL="medasr continuous, eager"
fi
# ======================================================================================================

T0=$(date +%s)
stamp() { echo "gpu.sh: [$(( $(date +%s) - T0 )) s] $*"; }
stamp "size $SIZE on $DEVICE ($DTYPE), $N_CLIPS clips, batch $BATCH; output in $OUT"
"$PY" - <<'EOF' || true
import torch, transformers, medasr
gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no CUDA device"
print(f"gpu.sh: medasr {medasr.__version__}, torch {torch.__version__}, transformers {transformers.__version__}, {gpu}")
EOF

OFFLINE=(bench offline --random-weights "$SIZE" --device "$DEVICE" --dtype "$DTYPE" --synthetic "$N_CLIPS"
         --synthetic-audio noise --batch-size "$BATCH" --max-batch-audio-s "$MAX_BATCH_AUDIO_S" --vad none
         --warmup "$WARMUP")

if [ -n "$COMPILE_FLAGS" ]; then
    stamp "offline: medasr compiled + continuous ($COMPILE_FLAGS)"
    # shellcheck disable=SC2086
    "$PY" -m medasr "${OFFLINE[@]}" $COMPILE_FLAGS --output-dir "$OUT" --stem offline-compiled > /dev/null
else
    stamp "offline: this medasr has no --compile: the compiled row is skipped"
fi

stamp "offline: medasr eager, and the baselines $BASELINES on the first $BASELINE_LIMIT clips"
"$PY" -m medasr "${OFFLINE[@]}" --baseline "$BASELINES" --baseline-limit "$BASELINE_LIMIT" \
    --output-dir "$OUT" --stem offline-eager > /dev/null

CKPT="$OUT/random-$SIZE"
stamp "server: writing a random $SIZE checkpoint to $CKPT"
"$PY" benchmarks/make_random_checkpoint.py --size "$SIZE" --out "$CKPT" --device "$DEVICE" --dtype "$DTYPE"

PORT=$("$PY" -c "from medasr.server.launch import free_port; print(free_port())")
URL="http://127.0.0.1:$PORT"
stamp "server: medasr serve on $URL (--max-batch-size $SERVER_BATCH, $SERVER_TOKENS tokens per answer) $SERVER_FLAGS"
# shellcheck disable=SC2086
"$PY" -m medasr serve --model "$CKPT" --device "$DEVICE" --dtype "$DTYPE" --port "$PORT" --max-batch-size "$SERVER_BATCH" \
    --max-wait-ms 10 --max-queue 4096 --max-new-tokens "$SERVER_TOKENS" --vad none $SERVER_FLAGS > "$OUT/server.log" 2>&1 &
SERVER_PID=$!
trap 'kill "$SERVER_PID" 2>/dev/null || true' EXIT
for _ in $(seq 600); do
    if "$PY" -c "import urllib.request,sys; sys.exit(urllib.request.urlopen('$URL/ready', timeout=2).status != 200)" 2>/dev/null; then
        break
    fi
    kill -0 "$SERVER_PID" 2>/dev/null || { echo "gpu.sh: the server exited:"; tail -30 "$OUT/server.log"; exit 1; }
    sleep 0.5
done
stamp "server: ready"
for level in $LEVELS; do
    c="${level%%:*}"; n="${level##*:}"
    stamp "server: concurrency $c, $n requests"
    "$PY" -m medasr bench serve --url "$URL" --synthetic "$N_CLIPS" --synthetic-audio noise --concurrency "$c" \
        --requests "$n" --warmup 4 --output-dir "$OUT" --stem "serve-c$c" > /dev/null
done
kill "$SERVER_PID" 2>/dev/null || true
wait "$SERVER_PID" 2>/dev/null || true
stamp "done; the table:"

"$PY" - "$OUT" "$SERVER_TOKENS" "$STATIC_LABEL" "$SERVER_FLAGS" <<'EOF' | tee "$OUT/table.md"
import json, sys
from pathlib import Path

out, server_tokens, static_label, server_flags = Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
def f(x, digits=1):
    return "-" if x is None else f"{x:,.{digits}f}"
label = {"medasr": static_label, "static": "medasr static batches, eager",
         "pad-longest-32": "pad-to-longest generate batches of 32", "one-by-one": "one by one"}
rows, head = [], "no offline run"
for stem, name in (("offline-compiled", "medasr compiled + continuous"), ("offline-eager", None)):
    path = out / f"{stem}.json"
    if not path.exists():
        rows.append(f"| {name} | offline | not run (no --compile) | | | | | |")
        continue
    r = json.loads(path.read_text())
    for run in r["runs"]:
        mode = name if name else label.get(run["mode"], run["mode"])
        util = run.get("row_utilization")
        rows.append(f"| {mode} | offline, {run['total']} clips, {run['audio_s'] / 3600:.2f} h | {f(run['rtfx_model'])} "
                    f"| {f(run['rtfx_e2e'])} | {f(run['samples_per_s'])} | | | {run['generated_tokens']:,} tokens"
                    + (f", row utilization {util:.2f}" if util is not None else "") + " |")
    head = (f"{r['random_weights']} random weights ({r['parameters'] / 1e6:,.0f} M parameters), {r['dtype']}, {r['device']}, "
            f"batch {r['batch_size']}, {r['environment'].get('gpu', 'CPU')}; offline: {r['tokens_per_second']} tokens per "
            f"audio second; server: {server_tokens} tokens per answer")
for c in sorted(int(p.stem.removeprefix("serve-c")) for p in out.glob("serve-c*.json")):
    r = json.loads((out / f"serve-c{c}.json").read_text())
    lv = r["levels"][0]
    lat = lv["latency_s"] or {}
    rows.append(f"| medasr serve {server_flags or '(eager)'} | {c} clients, {lv['total']} requests | | {f(lv['rtfx'])} | {f(lv['samples_per_s'])} "
                f"| {f(lat.get('p50'), 3)} | {f(lat.get('p95'), 3)} | {lv['failure']} failed, {lv['audio_s'] / 3600:.2f} h |")
print(f"\n{head}\n")
print("| system | workload | RTFx model | RTFx end to end | samples/s | p50 s | p95 s | notes |")
print("| --- | --- | --- | --- | --- | --- | --- | --- |")
print("\n".join(rows))
EOF
stamp "total"
