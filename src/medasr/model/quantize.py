"""Int8 weights with dynamic int8 activations, for CPU inference (`load(..., quantize="int8")`).

What is quantized: every `nn.Linear` of the audio encoder, its projector and the language model,
and the output head: weights per output channel (symmetric int8), activations per tensor at run
time from their own range (dynamic quantization: nothing to calibrate). The convolutions, norms,
attention scores and the KV cache stay float32. The head is tied to the token embedding in
Qwen3-ASR; the head becomes its own int8 matrix and the embedding, which only looks rows up,
becomes int8 rows with one scale per row (`Int8Embedding`), so no float32 copy of the 151,936 x
hidden matrix is kept (0.6B: 622 MB -> 156 MB).

Library: PyTorch's own dynamic quantization, `torch.ao.nn.quantized.dynamic.Linear` on the "x86"
engine (fbgemm's AVX512-VNNI kernels; it quantizes the activation inside the same call). On the
0.6B model's shapes it was 3-10x faster than torchao 0.18 (`Int8DynamicActivationInt8WeightConfig`,
eager or compiled; `Int8WeightOnlyConfig`), than oneDNN's `qlinear_pointwise` fed by a Python
activation quantizer and than `_weight_int8pack_mm` at 1 and 16 rows, and as fast at 256
(docs/performance.md, "CPU: quantized"; `benchmarks/bench_quantize.py`). torch marks the
torch.ao eager API deprecated in favour of torchao; the choice lives only in `_int8_linear`.
"""

from __future__ import annotations

import contextlib
import warnings

import torch
from torch import nn
from torch.ao.nn.quantized.dynamic import Linear as DynamicLinear

from medasr.defaults import QUANTIZE
from medasr.errors import ModelLoadError

INT8 = "int8"
_CHUNK_ROWS = 8192  # embedding rows quantized at a time (bounds the float32 temporaries)


def normalize(quantize: str | None) -> str | None:
    """None for no quantization ("none" or None), else the mode; unknown modes are an error."""
    if quantize in (None, "none", ""):
        return None
    if quantize not in QUANTIZE:
        raise ModelLoadError(f"unknown quantization {quantize!r}: use {', '.join(QUANTIZE)}")
    return quantize


def check(quantize: str | None, device: torch.device, dtype: torch.dtype) -> str | None:
    """The normalised mode, or a ModelLoadError for a combination that cannot run."""
    mode = normalize(quantize)
    if mode is None:
        return None
    if device.type != "cpu":
        raise ModelLoadError(
            f"--quantize {mode} runs on the CPU only (int8 kernels of PyTorch's x86 engine); on {device.type.upper()} "
            "use --quantize none with --dtype bfloat16 (the default there)"
        )
    if dtype != torch.float32:
        raise ModelLoadError(
            f"--quantize {mode} computes in float32 around its int8 matrix products: use --dtype auto or float32, "
            f"not {str(dtype).removeprefix('torch.')}"
        )
    engines = torch.backends.quantized.supported_engines
    if "x86" not in engines and "fbgemm" not in engines:
        raise ModelLoadError(f"--quantize {mode} needs PyTorch's x86 (fbgemm) engine, which this build lacks ({engines})")
    return mode


def int8_rows(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric int8 per row: (int8 rows, float32 scale per row), in chunks so the float
    temporaries stay small."""
    rows, width = weight.shape
    q = torch.empty((rows, width), dtype=torch.int8)
    scale = torch.empty(rows, dtype=torch.float32)
    with torch.no_grad():
        for lo in range(0, rows, _CHUNK_ROWS):
            part = weight[lo : lo + _CHUNK_ROWS].float()
            s = part.abs().amax(dim=1).clamp(min=1e-12) / 127.0
            q[lo : lo + _CHUNK_ROWS] = torch.round(part / s[:, None]).clamp(-127, 127).to(torch.int8)
            scale[lo : lo + _CHUNK_ROWS] = s
    return q, scale


class Int8Embedding(nn.Module):
    """An embedding table stored as int8 rows, each with its own scale; a lookup dequantizes only
    the rows it returns."""

    def __init__(self, qweight: torch.Tensor, scale: torch.Tensor, padding_idx: int | None = None):
        super().__init__()
        self.register_buffer("qweight", qweight)
        self.register_buffer("scale", scale)
        self.num_embeddings, self.embedding_dim = qweight.shape
        self.padding_idx = padding_idx

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.qweight[ids].float() * self.scale[ids].unsqueeze(-1)

    def extra_repr(self) -> str:
        return f"{self.num_embeddings}, {self.embedding_dim}, int8 rows"


def _engine() -> None:
    if torch.backends.quantized.engine not in ("x86", "fbgemm"):
        torch.backends.quantized.engine = "x86" if "x86" in torch.backends.quantized.supported_engines else "fbgemm"


@contextlib.contextmanager
def _quiet():
    """Without torch's notices that this eager API moves to torchao (see the module doc)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.filterwarnings("ignore", message=".*quantize_per_(tensor|channel).*")
        yield


def _vnni() -> bool:
    """Whether this CPU has int8 dot products that accumulate in 32 bits (AVX512-VNNI / AVX-VNNI)."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((line for line in f if line.startswith("flags")), "").split()
    except OSError:
        return False
    return "avx512_vnni" in flags or "avx_vnni" in flags


# torch's dynamic int8 Linear quantizes activations to 7 bits (reduce_range=True), which guards
# CPUs whose int8 products are summed in pairs into 16 bits (AVX2 / AVX512 without VNNI) against
# overflow. With VNNI nothing overflows and the 8th bit halves the activations' rounding error: on
# the demo model's held-out sets int8 WER came within -0.05 to +0.45 points of float32 with 8 bits,
# -0.86 to +1.13 with 7 (docs/performance.md, "CPU: quantized").
REDUCE_RANGE = not _vnni()


class Int8Linear(DynamicLinear):
    """torch.ao's dynamic int8 linear layer, its activations quantized to 8 bits where VNNI allows."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.ops.quantized.linear_dynamic(x, self._packed_params._packed_params, reduce_range=REDUCE_RANGE)


def _int8_linear(linear: nn.Linear) -> nn.Module:
    """The dynamically quantized twin of `linear` (weights per output channel)."""
    from torch.ao.quantization import per_channel_dynamic_qconfig

    _engine()
    linear.qconfig = per_channel_dynamic_qconfig
    with _quiet():
        return Int8Linear.from_float(linear)


def _int8_linear_from_rows(q: torch.Tensor, scale: torch.Tensor, bias: torch.Tensor | None) -> nn.Module:
    """A dynamically quantized linear layer whose weight is the int8 rows `q` with `scale` (a tied
    head built from the int8 embedding: one quantization of the shared matrix)."""
    _engine()
    out_features, in_features = q.shape
    with _quiet():
        weight = torch._make_per_channel_quantized_tensor(q, scale.double(), torch.zeros(out_features, dtype=torch.long), 0)
        layer = Int8Linear(in_features, out_features, bias_=bias is not None, dtype=torch.qint8)
        layer.set_weight_bias(weight, None if bias is None else bias.detach().float())
    return layer


def targets(model: nn.Module) -> dict[str, nn.Linear]:
    """The linear layers int8 replaces, by qualified name: the encoder's, the projector's, the
    language model's and the output head."""
    return {name: m for name, m in model.named_modules() if isinstance(m, nn.Linear)}


def quantize_linear(model: nn.Module, name: str) -> None:
    """Replace the (loaded) linear layer `name` of `model` by its int8 twin, in place."""
    parent_name, _, attr = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, attr, _int8_linear(getattr(parent, attr)))


def quantize_embedding(model: nn.Module) -> None:
    """Replace the (loaded) token embedding by int8 rows; its float weight is dropped."""
    embed = model.get_input_embeddings()
    if isinstance(embed, nn.Embedding):
        q, scale = int8_rows(embed.weight.detach())
        model.set_input_embeddings(Int8Embedding(q, scale, embed.padding_idx))


def finish(model: nn.Module, tied: bool) -> None:
    """Quantize what is left once every weight is loaded: the embedding, a head `tied` to it (from
    the embedding's int8 rows: its float matrix is gone by then) and every other linear layer."""
    head = model.get_output_embeddings()
    if tied and isinstance(head, nn.Linear):
        model.set_output_embeddings(nn.Identity())  # drops the head's reference to the float matrix
    quantize_embedding(model)
    embed = model.get_input_embeddings()
    if tied and isinstance(head, nn.Linear):
        if not isinstance(embed, Int8Embedding):
            raise ModelLoadError("int8: a tied output head needs the token embedding as an nn.Embedding")
        model.set_output_embeddings(_int8_linear_from_rows(embed.qweight, embed.scale, head.bias))
    del head
    for name in targets(model):
        quantize_linear(model, name)


def quantize_model(model: nn.Module, quantize: str | None) -> nn.Module:
    """`model` (weights loaded, tied as its config says) with `quantize` applied in place; None
    leaves it untouched."""
    if normalize(quantize) == INT8:
        finish(model, bool(getattr(model.config, "tie_word_embeddings", False)))
    return model


def quantized_parameters(model: nn.Module) -> int:
    """Weights held by int8 layers (not in `model.parameters()`); a tied head and embedding once."""
    tied = bool(getattr(getattr(model, "config", None), "tie_word_embeddings", False))
    n = 0
    for m in model.modules():
        if isinstance(m, Int8Embedding):
            n += 0 if tied else m.qweight.numel()
        elif isinstance(getattr(m, "_packed_params", None), nn.Module):  # a dynamically quantized Linear
            n += m.in_features * m.out_features + (m.out_features if m.bias() is not None else 0)
    return n
