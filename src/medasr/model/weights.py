"""Build a model from safetensors files one tensor at a time, converting or quantizing each weight as
it arrives, so that loading never holds the checkpoint twice.

Why not a memory map: transformers' `from_pretrained` maps the file and converts from it, so every
page it reads stays resident beside the converted copy (0.6B in bfloat16: a 4.9 GB peak for 1.5 GB
of weights; int8 quantized after loading: the 3.1 GB of float32 pages plus the int8 ones). Here
each tensor is read with a plain read into its own buffer (the page cache is not part of the
process), converted or quantized, and its float32 buffer dropped before the next one: the peak is
the loaded model plus one tensor. Float32 checkpoints used as they are keep transformers' memory
map (`checkpoint.load`), which costs nothing extra.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from medasr.errors import ModelLoadError
from medasr.model import quantize as quant

_DTYPES = {
    "F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
    "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8,
    "BOOL": torch.bool,
}  # fmt: skip


@dataclass(frozen=True)
class Entry:
    file: Path
    dtype: torch.dtype
    shape: tuple[int, ...]
    start: int  # absolute byte offsets in the file
    end: int


def index(files: list[Path], rename: Callable[[str], str] = lambda k: k) -> dict[str, Entry]:
    """Every tensor of the safetensors `files`, under its (renamed) key, read from their headers only."""
    out: dict[str, Entry] = {}
    for file in files:
        if not file.exists():
            raise ModelLoadError(f"checkpoint {file.parent} is incomplete; missing: {file.name}")
        with open(file, "rb") as f:
            (size,) = struct.unpack("<Q", f.read(8))
            header = json.loads(f.read(size))
        for key, spec in header.items():
            if key == "__metadata__":
                continue
            if spec["dtype"] not in _DTYPES:
                raise ModelLoadError(f"{file}: tensor {key} has an unsupported dtype {spec['dtype']}")
            lo, hi = spec["data_offsets"]
            out[rename(key)] = Entry(file, _DTYPES[spec["dtype"]], tuple(spec["shape"]), 8 + size + lo, 8 + size + hi)
    return out


def read(entry: Entry) -> torch.Tensor:
    """One tensor, read into a buffer of its own."""
    buf = torch.empty(entry.end - entry.start, dtype=torch.uint8)
    with open(entry.file, "rb", buffering=0) as f:
        f.seek(entry.start)
        view = memoryview(buf.numpy())
        got = 0
        while got < len(view):
            n = f.readinto(view[got:])
            if not n:
                raise ModelLoadError(f"{entry.file} is truncated (tensor data ends early)")
            got += n
    return buf.view(entry.dtype).reshape(entry.shape)


def build(cls, config, tensors: dict[str, Entry], dtype: torch.dtype, quantize: str | None, where: str, what: str):
    """`cls(config)` holding the checkpoint's tensors, floats converted to `dtype` and, with
    `quantize`, each linear layer quantized as soon as its weights are in. Built on the meta
    device; buffers that are not in the checkpoint stay there for the caller to materialise. A
    missing or unexpected weight is a ModelLoadError naming `what` architecture it did not fit."""
    with torch.device("meta"):
        net = cls(config)
    expected = set(net.state_dict())
    tied = set(getattr(cls, "_tied_weights_keys", None) or {}) if getattr(config, "tie_word_embeddings", False) else set()
    missing, unexpected = sorted(expected - set(tensors) - tied), sorted(set(tensors) - expected)
    if missing or unexpected:
        raise ModelLoadError(
            f"weights in {where} do not match the {what} architecture of its config: "
            f"missing {missing[:5]}{'...' if len(missing) > 5 else ''}, "
            f"unexpected {unexpected[:5]}{'...' if len(unexpected) > 5 else ''}"
        )
    waiting: dict[str, int] = {}  # linear layer -> its weights still to come
    owner: dict[str, str] = {}
    if quantize:
        for name, linear in quant.targets(net).items():
            keys = [f"{name}.{p}" for p, _ in linear.named_parameters(recurse=False)]
            if all(k in tensors and k not in tied for k in keys):
                waiting[name] = len(keys)
                owner.update(dict.fromkeys(keys, name))
    for key in sorted(tensors, key=lambda k: (str(tensors[k].file), tensors[k].start)):  # in file order
        value = read(tensors[key])
        if value.is_floating_point() and value.dtype != dtype:
            value = value.to(dtype)
        module_name, _, attr = key.rpartition(".")
        module = net.get_submodule(module_name)
        if attr in module._parameters:
            module._parameters[attr] = nn.Parameter(value, requires_grad=module._parameters[attr].requires_grad)
        else:
            module._buffers[attr] = value
        del value
        name = owner.get(key)
        if name is not None:
            waiting[name] -= 1
            if not waiting[name]:
                quant.quantize_linear(net, name)
        elif quantize and module is net.get_input_embeddings():
            quant.quantize_embedding(net)  # its float matrix dropped now, before the layers arrive
    if quantize:
        quant.finish(net, bool(tied))  # a tied head from the embedding's int8 rows
    elif tied:
        net.tie_weights()
    return net


def release_memory() -> None:
    """Give the heap's free memory back to the system (glibc's malloc_trim; elsewhere nothing).
    Buffers freed after a load or a transcription (float32 tensors once converted, a finished
    call's KV cache) stay in the process's heap otherwise, counted in its resident memory until
    reused: 0.6B int8, 100-300 MB after loading and after each batched call."""
    if _LIBC is not None:
        _LIBC.malloc_trim(0)


def _libc():
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return libc if hasattr(libc, "malloc_trim") else None
    except OSError:
        return None


_LIBC = _libc()
