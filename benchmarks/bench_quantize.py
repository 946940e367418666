"""Which int8 kernel is fastest on this CPU, on the 0.6B model's linear shapes (why model/quantize.py
uses PyTorch's dynamic quantization on the x86 engine).

    python benchmarks/bench_quantize.py                 # --threads 1 --rows 1,16,256
    pip install torchao                                 # optional: its two CPU recipes are measured too

Microseconds per call, one linear layer, float32 input and output: float32 and bfloat16 `nn.Linear`;
`torch.ao` dynamic int8 Linear (per-channel weights, activations quantized in the call) on the
fbgemm, x86 and onednn engines; oneDNN's `qlinear_pointwise` fed by a Python activation quantizer;
`torch._int_mm` (int8 x int8, the activation quantization not counted); `_weight_int8pack_mm`
(int8 weights, bfloat16 activations); torchao 0.18's Int8DynamicActivationInt8Weight and
Int8WeightOnly, eager. Shapes: the decoder's q/k/v/o and MLP, the encoder's MLP, and the output
head (1024 x 151,936); rows 1 (a decode step at batch 1), 16 (batch 16), 256 (a prefill).
"""

from __future__ import annotations

import argparse
import copy
import time
import warnings

SHAPES = [(1024, 2048), (1024, 1024), (2048, 1024), (1024, 3072), (3072, 1024), (896, 3584), (3584, 896), (1024, 151936)]


def bench(f, x, budget_s: float = 0.3) -> float:
    f(x)
    t, k = time.perf_counter(), 0
    while time.perf_counter() - t < budget_s or k < 3:
        f(x)
        k += 1
    return (time.perf_counter() - t) / k * 1e6


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rows", default="1,16,256")
    args = ap.parse_args()
    warnings.filterwarnings("ignore")
    import torch
    from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

    torch.set_num_threads(args.threads)
    try:
        from torchao.quantization import Int8DynamicActivationInt8WeightConfig, Int8WeightOnlyConfig, quantize_
    except ImportError:
        quantize_ = None
    cols = ["float32", "bfloat16", "fbgemm", "x86", "onednn", "onednn qlinear", "_int_mm", "int8pack bf16", "torchao dyn", "torchao w-only"]
    print(f"{args.threads} thread(s); microseconds per call\n")
    print("| rows | in x out | " + " | ".join(cols) + " |\n|" + " --- |" * (len(cols) + 2))
    for m in map(int, args.rows.split(",")):
        for i, o in SHAPES:
            lin = torch.nn.Linear(i, o, bias=False).eval()
            x = torch.randn(m, i)
            w = lin.weight.detach()
            scale = w.abs().amax(dim=1).clamp(min=1e-12) / 127
            qw = torch.round(w / scale[:, None]).clamp(-127, 127).to(torch.int8)
            r: dict[str, float] = {}
            with torch.inference_mode():
                r["float32"] = bench(lin, x)
                r["bfloat16"] = bench(copy.deepcopy(lin).to(torch.bfloat16), x.bfloat16())
                for engine in ("fbgemm", "x86", "onednn"):
                    torch.backends.quantized.engine = engine
                    q = quantize_dynamic(torch.nn.Sequential(copy.deepcopy(lin)), {torch.nn.Linear: per_channel_dynamic_qconfig})
                    r[engine] = bench(q, x)
                torch.backends.quantized.engine = "x86"
                packed = torch.ops.onednn.qlinear_prepack(qw, None)
                zeros = torch.zeros(o, dtype=torch.long)

                def onednn(x, packed=packed, scale=scale, zeros=zeros):
                    lo, hi = torch.aminmax(x)
                    s = ((hi.clamp(min=0) - lo.clamp(max=0)) / 255).clamp(min=1e-8)
                    z = (-lo.clamp(max=0) / s).round().to(torch.long)
                    qx = (x / s + z).round().clamp(0, 255).to(torch.uint8)
                    return torch.ops.onednn.qlinear_pointwise.tensor(qx, s, z.to(torch.int32), packed, scale, zeros, None, 1.0, 0,
                                                                     torch.float32, "none", [], "")  # fmt: skip

                r["onednn qlinear"] = bench(onednn, x)
                qx = torch.round(x / (x.abs().amax() / 127)).to(torch.int8)
                qwt = qw.t()
                r["_int_mm"] = bench(lambda q, qwt=qwt: torch._int_mm(q, qwt), qx)
                sb = scale.bfloat16()
                r["int8pack bf16"] = bench(lambda v, qw=qw, sb=sb: torch.ops.aten._weight_int8pack_mm(v, qw, sb), x.bfloat16())
                if quantize_ is not None and o < 100000:  # torchao's eager path is seconds per call on the head
                    for name, config in (("torchao dyn", Int8DynamicActivationInt8WeightConfig()), ("torchao w-only", Int8WeightOnlyConfig())):
                        t = torch.nn.Sequential(copy.deepcopy(lin))
                        quantize_(t, config)
                        r[name] = bench(t, x)
            print(f"| {m} | {i} x {o} | " + " | ".join(f"{r[c]:.0f}" if c in r else "" for c in cols) + " |", flush=True)
    return 0


if __name__ == "__main__":
    import sys

    sys.exit(main())
