"""Time spent inside a model's forward passes, whatever code drives them.

Used by bench_peers on both sides (medasr's environment and the official qwen-asr venv), so it
imports nothing but torch. Hooks sit on the model and its top levels of submodules (audio
tower, language model, lm_head, ...): the clock runs while the outermost of them is inside its
forward. `model.generate`, a hand-written decode loop, or an engine that calls the submodules
directly are all timed the same way; what a driver does between forwards (sampling, cache
bookkeeping, building masks) is left out and shows up in the end-to-end time.
"""

from __future__ import annotations

import time

import torch

HOOK_DEPTH = 2  # the model, its children and grandchildren: every entry point a decoder uses


class ForwardClock:
    def __init__(self, model: torch.nn.Module, depth: int = HOOK_DEPTH):
        self.seconds = 0.0
        self.calls = 0  # outermost forwards (one per prefill or decode step)
        self._inside = 0
        self._t0 = 0.0
        self._handles = []
        for module in _modules(model, depth):
            self._handles.append(module.register_forward_pre_hook(self._enter))
            self._handles.append(module.register_forward_hook(self._leave))

    def _enter(self, *_args) -> None:
        if self._inside == 0:
            self._t0 = time.perf_counter()
        self._inside += 1

    def _leave(self, *_args) -> None:
        self._inside -= 1
        if self._inside == 0:
            self.seconds += time.perf_counter() - self._t0
            self.calls += 1

    def reset(self) -> None:
        self.seconds, self.calls = 0.0, 0

    def close(self) -> None:
        for h in self._handles:
            h.remove()


def _modules(model: torch.nn.Module, depth: int):
    level = [model]
    seen: set[int] = set()
    for _ in range(depth + 1):
        nxt = []
        for m in level:
            if id(m) in seen:
                continue
            seen.add(id(m))
            yield m
            nxt.extend(m.children())
        level = nxt


def parameter_digest(model: torch.nn.Module) -> dict:
    """Count and float64 sum of the distinct parameters: two loads of one checkpoint agree."""
    params = {id(p): p for p in model.parameters()}.values()
    total = absolute = 0.0
    for p in params:  # in float64 chunks of 1M: a whole float64 copy of the embedding would cost the
        for chunk in p.detach().reshape(-1).split(1 << 20):  # worker's peak memory 2.4 GB (0.6B)
            c = chunk.double()
            total += float(c.sum())
            absolute += float(c.abs().sum())
    return {"parameters": sum(p.numel() for p in params), "sum": total, "abs_sum": absolute}
