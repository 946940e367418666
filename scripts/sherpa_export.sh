#!/usr/bin/env bash
# sherpa-onnx's ONNX files of one checkpoint, laid out as `bench_peers.py --sherpa-dir` reads them.
#
#   git clone https://github.com/Wasser1462/Qwen3-ASR-onnx /tmp/qwen3-asr-onnx   # tested at 0829a57
#   scripts/sherpa_export.sh /tmp/qwen3-asr-onnx runs/peers/model-0.6b-s0/original runs/peers/sherpa-0.6b-s0
#
# The exporter is the public one sherpa-onnx's Qwen3-ASR packages come from; it imports qwen-asr, so
# it runs in the official package's venv (scripts/peer_venv.sh), with onnx and onnxruntime added
# there. The checkpoint is an ORIGINAL-format one (bench_peers.py writes it to
# <work dir>/model-<shape>-s<seed>/original on its first run). OUT gets fp32/ (conv_frontend,
# encoder, decoder, with their external .data files) and int8/ (conv_frontend and the exporter's
# int8 encoder and decoder). The exporter is run with --verify: it checks ONNX Runtime's outputs
# against PyTorch's before anything is moved into place.
set -euo pipefail
if [ $# -ne 3 ]; then
    sed -n 2,5p "$0" >&2
    exit 2
fi
EXPORTER=$1 CKPT=$2 OUT=$3
[ -f "$EXPORTER/export_qwen3_asr_onnx.py" ] || { echo "sherpa_export: $EXPORTER/export_qwen3_asr_onnx.py not found" >&2; exit 1; }
[ -f "$CKPT/config.json" ] || { echo "sherpa_export: $CKPT is not a checkpoint (no config.json)" >&2; exit 1; }
if [ -e "$OUT/fp32" ] || [ -e "$OUT/int8" ]; then
    echo "sherpa_export: $OUT already holds an export" >&2
    exit 1
fi

PY=$("$(dirname "$0")/peer_venv.sh")
"$PY" -m pip install -q onnx onnxruntime
TMP="$OUT/export.partial"
rm -rf "$TMP"
mkdir -p "$TMP"
HF_HUB_OFFLINE=1 "$PY" "$EXPORTER/export_qwen3_asr_onnx.py" --model "$CKPT" --outdir "$TMP" \
    --device cpu --max-total-len 512 --verify
mkdir -p "$OUT/fp32" "$OUT/int8"
cp "$TMP/conv_frontend.onnx" "$OUT/int8/"
mv "$TMP/conv_frontend.onnx" "$TMP"/encoder.onnx* "$TMP"/decoder.onnx* "$OUT/fp32/"
mv "$TMP/encoder.int8.onnx" "$TMP/decoder.int8.onnx" "$OUT/int8/"
rm -rf "$TMP"
echo "sherpa_export: wrote $OUT/fp32 and $OUT/int8"
