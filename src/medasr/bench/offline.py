"""Offline benchmark: how fast one process transcribes a set of clips.

Modes, all on the same loaded model and the same clips:
- "medasr": the public path (`ASR.transcribe`): decode, speech detection for clips over 30 s,
  batches sorted by duration, features, generate, parse.
- "one-by-one" (baseline): the same path with one clip per `generate` call.
- "pad-longest-32" (baseline): consecutive groups of 32 clips in the given order, each padded to
  its longest clip and sent whole to `Engine.generate` (no sorting, no speech detection).

Two clocks per mode (Open ASR Leaderboard style):
- model: wall time inside the model's `generate` only, CUDA synchronised before and after,
  after `warmup` batches of that mode that are not counted;
- end to end: wall time of the whole call (decode + features + model + parsing).
RTFx = audio seconds / seconds of a clock; samples/s = clips / end-to-end seconds.
"""

from __future__ import annotations

import resource
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Self

import torch

from medasr.bench.results import rate
from medasr.bench.workload import Clip, Workload

MODES = ("medasr", "one-by-one", "pad-longest-32")
BASELINES = MODES[1:]
PAD_LONGEST_BATCH = 32


@dataclass
class OfflineConfig:
    model: str = "demo"
    device: str = "auto"
    dtype: str = "auto"
    batch_size: int = 16
    warmup: int = 2  # batches of each mode run before its clocks start
    max_new_tokens: int | None = None
    random_weights: str | None = None  # "1.7b", "0.6b" or "tiny"
    tokens_per_second: float = 3.5  # forced output length with random weights
    baselines: Sequence[str] = ()
    baseline_limit: int | None = None  # baselines run on the first N clips only
    vad: str = "silero"
    max_batch_audio_s: float | None = None  # the engine's cap on audio seconds per batch
    seed: int = 0
    threads: int | None = None  # torch intra-op threads (1 is steadiest on a shared CPU)


class ModelTimer:
    """Times every `model.generate` call (CUDA synchronised) and counts what it generates.

    With `tokens_per_second`, each call's output length is forced to round(rate x the batch's
    longest clip) tokens (random weights never emit the end token; a real model's batch also
    runs until its longest answer ends).
    """

    def __init__(self, model, device: torch.device, tokens_per_second: float | None = None, cap: int | None = None):
        self.model, self.device, self.rate, self.cap = model, device, tokens_per_second, cap
        eos = model.generation_config.eos_token_id
        self.eos = set(eos if isinstance(eos, (list, tuple)) else [eos])
        self.reset()

    def reset(self) -> None:
        self.seconds, self.calls, self.tokens, self.steps = 0.0, 0, 0, 0

    def __enter__(self) -> Self:
        original = type(self.model).generate

        def timed(*args, **kwargs):
            if self.rate:
                seconds = int(kwargs["input_features_mask"].sum(dim=1).max()) / 100  # 100 mel frames per s
                n = max(1, round(self.rate * seconds))
                n = min(n, self.cap) if self.cap else n
                kwargs.update(max_new_tokens=n, min_new_tokens=n)
            self._sync()
            t0 = time.perf_counter()
            out = original(self.model, *args, **kwargs)
            self._sync()
            self.seconds += time.perf_counter() - t0
            self.calls += 1
            new = out[:, kwargs["input_ids"].shape[1] :]
            self.steps += new.shape[1]
            self.tokens += sum(_length(row, self.eos) for row in new.tolist())
            return out

        self.model.generate = timed  # an instance attribute: the engine calls it unchanged
        return self

    def __exit__(self, *exc) -> None:
        del self.model.generate

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)


def _length(tokens: list[int], eos: set[int]) -> int:
    for i, t in enumerate(tokens):
        if t in eos:
            return i + 1
    return len(tokens)


# ---------------------------------------------------------------------------------------------- modes


def _medasr(asr, clips: list[Clip], cfg: OfflineConfig, batch: int | None = None) -> list[str | None]:
    out = asr.transcribe([c.source for c in clips], batch_size=batch or cfg.batch_size,
                         max_new_tokens=cfg.max_new_tokens, errors="keep", vad=cfg.vad)  # fmt: skip
    return [None if t.error else t.text for t in out]


def _one_by_one(asr, clips: list[Clip], cfg: OfflineConfig) -> list[str | None]:
    return [_medasr(asr, [c], cfg, batch=1)[0] for c in clips]


@torch.inference_mode()
def _pad_longest(asr, clips: list[Clip], cfg: OfflineConfig) -> list[str | None]:
    from medasr.audio import load_audio
    from medasr.engine import Request, default_max_new_tokens
    from medasr.errors import AudioError

    texts: list[str | None] = []
    for start in range(0, len(clips), PAD_LONGEST_BATCH):
        group, ok = [], []
        for c in clips[start : start + PAD_LONGEST_BATCH]:
            try:
                group.append(Request(load_audio(c.source).samples))
                ok.append(True)
            except AudioError:
                ok.append(False)
        results = iter([])
        if group:
            longest = max(len(r.samples) for r in group) / 16000
            results = iter(asr.engine.generate(group, cfg.max_new_tokens or default_max_new_tokens(longest)))
        texts += [next(results).text if good else None for good in ok]
    return texts


RUNNERS: dict[str, tuple[Callable, Callable[[OfflineConfig], int]]] = {
    "medasr": (_medasr, lambda cfg: cfg.batch_size),
    "one-by-one": (_one_by_one, lambda cfg: 1),
    "pad-longest-32": (_pad_longest, lambda cfg: PAD_LONGEST_BATCH),
}


# ---------------------------------------------------------------------------------------------- measuring


def load(cfg: OfflineConfig):
    """The ASR object to benchmark: a checkpoint, or random weights of a published size."""
    from medasr.checkpoint import pick_device, pick_dtype
    from medasr.transcribe import ASR, load_model

    if cfg.threads:  # more threads than free cores makes every parallel op wait for the slowest
        torch.set_num_threads(cfg.threads)
    if cfg.random_weights:
        from medasr.bench import randomweights

        device = pick_device(cfg.device)
        asr = ASR(
            randomweights.build(cfg.random_weights, device, pick_dtype(cfg.dtype, device), cfg.seed), cfg.batch_size
        )
    else:
        asr = load_model(cfg.model, device=cfg.device, dtype=cfg.dtype, batch_size=cfg.batch_size)
    if cfg.max_batch_audio_s:
        asr.engine.max_batch_audio_s = cfg.max_batch_audio_s
    return asr


def measure(asr, mode: str, clips: list[Clip], cfg: OfflineConfig, timer: ModelTimer) -> tuple[dict, list[str | None]]:
    """One mode over `clips`: its figures and its texts (None for a clip that failed)."""
    runner, per_batch = RUNNERS[mode]
    device = asr.loaded.device
    if cfg.warmup > 0:
        runner(asr, clips[: cfg.warmup * per_batch(cfg)], cfg)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
    timer.reset()
    t0 = time.perf_counter()
    texts = runner(asr, clips, cfg)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    e2e = time.perf_counter() - t0
    failure = sum(t is None for t in texts)
    audio_s = sum(c.duration for c, t in zip(clips, texts) if t is not None)
    figures = {
        "mode": mode,
        "total": len(clips),
        "success": len(clips) - failure,
        "failure": failure,
        "audio_s": round(audio_s, 3),
        "model_s": round(timer.seconds, 4),
        "e2e_s": round(e2e, 4),
        "rtfx_model": rate(audio_s, timer.seconds),
        "rtfx_e2e": rate(audio_s, e2e),
        "samples_per_s": rate(len(clips), e2e),
        "model_calls": timer.calls,
        "decode_steps": timer.steps,  # generate's steps summed over calls (a batch steps until its longest row ends)
        "generated_tokens": timer.tokens,
        "tokens_per_s_model": rate(timer.tokens, timer.seconds),
        "peak_rss_mb": round(peak_rss_mb(), 1),
        "peak_gpu_mb": round(torch.cuda.max_memory_allocated(device) / 2**20, 1) if device.type == "cuda" else None,
    }
    return figures, texts


def peak_rss_mb() -> float:
    """The process's peak resident memory so far (it includes loading the model)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024  # bytes on macOS, KiB on Linux


def run(cfg: OfflineConfig, workload: Workload, accuracy: str | None = None, log=None) -> dict:
    """Every requested mode over the workload; accuracy: a normaliser name to add WER."""
    from medasr.bench.results import accuracy_table, environment

    log = log or (lambda msg: None)
    unknown = [b for b in cfg.baselines if b not in BASELINES]
    if unknown:
        from medasr.errors import UserError

        raise UserError(f"unknown baseline {unknown[0]!r}: use {', '.join(BASELINES)}")
    warnings = []
    t0 = time.perf_counter()
    asr = load(cfg)
    load_s = time.perf_counter() - t0
    if cfg.random_weights:
        warnings.append(
            f"RANDOM WEIGHTS ({cfg.random_weights}): speed only, the texts are meaningless; output length forced "
            f"to {cfg.tokens_per_second} tokens per audio second (the batch's longest clip)"
        )
    device = asr.loaded.device
    forced = cfg.tokens_per_second if cfg.random_weights else None
    timer = ModelTimer(asr.loaded.model, device, forced, cfg.max_new_tokens)
    runs = []
    with timer:
        for mode in ("medasr", *cfg.baselines):
            clips = workload.clips
            if mode != "medasr" and cfg.baseline_limit:
                clips = clips[: cfg.baseline_limit]
            log(f"bench offline: {mode} over {len(clips)} clips ({sum(c.duration for c in clips):.0f} s of audio)")
            figures, texts = measure(asr, mode, clips, cfg, timer)
            if accuracy and workload.has_references and not cfg.random_weights:
                figures["accuracy"] = accuracy_table([c.text for c in clips], texts, accuracy)
            runs.append(figures)
    base = runs[0]
    speedup = {
        r["mode"]: {
            "rtfx_model": rate(base["rtfx_model"], r["rtfx_model"]),
            "rtfx_e2e": rate(base["rtfx_e2e"], r["rtfx_e2e"]),
        }
        for r in runs[1:]
    }
    if accuracy and cfg.random_weights:
        warnings.append("no accuracy with random weights")
    elif accuracy and not workload.has_references:
        warnings.append("no accuracy: the clips have no reference texts")
    from medasr.bench.randomweights import n_parameters

    return {
        "benchmark": "offline",
        "model": None if cfg.random_weights else cfg.model,
        "random_weights": cfg.random_weights,
        "tokens_per_second": cfg.tokens_per_second if cfg.random_weights else None,
        "parameters": n_parameters(asr.loaded.model),
        "device": str(device),
        "dtype": str(asr.loaded.dtype).removeprefix("torch."),
        "batch_size": cfg.batch_size,
        "max_batch_audio_s": asr.engine.max_batch_audio_s,
        "warmup_batches": cfg.warmup,
        "max_new_tokens": cfg.max_new_tokens,
        "vad": cfg.vad,
        "load_s": round(load_s, 2),
        "workload": workload.summary(),
        "runs": runs,
        "speedup_vs_baseline": speedup,
        "warnings": warnings,
        "environment": environment(device),
    }
