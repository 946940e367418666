"""Offline benchmark: how fast one process transcribes a set of clips.

Modes, all on the same loaded model and the same clips:
- "medasr": the public path (`ASR.transcribe`): decode, speech detection, requests longest
  first, continuous batching (a finished row is refilled at the next step), parse.
- "static" (baseline): the same path, but sorted batches run to completion one after another.
- "one-by-one" (baseline): the same path with one clip at a time.
- "pad-longest-32" (baseline): consecutive groups of 32 clips in the given order, each padded to
  its longest clip and sent whole to transformers' `generate` (no sorting, no speech detection).

Two clocks per mode (Open ASR Leaderboard style):
- model: wall time inside the model's forwards only (CUDA synchronised), after `warmup`
  batches of that mode that are not counted;
- end to end: wall time of the whole call (decode + features + model + parsing).
RTFx = audio seconds / seconds of a clock; samples/s = clips / end-to-end seconds;
row utilization = token-rows that carried a real token / token-rows computed.
"""

from __future__ import annotations

import resource
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import torch

from medasr.bench.results import rate
from medasr.bench.workload import Clip, Workload
from medasr.defaults import DEFAULT_VAD

MODES = ("medasr", "static", "one-by-one", "pad-longest-32")
BASELINES = MODES[1:]
PAD_LONGEST_BATCH = 32


@dataclass
class OfflineConfig:
    model: str = "demo"
    device: str = "auto"
    dtype: str = "auto"
    quantize: str | None = None  # "int8": CPU int8 linear layers (medasr.model.quantize)
    batch_size: int = 16
    warmup: int = 2  # batches of each mode run before its clocks start
    max_new_tokens: int | None = None
    random_weights: str | None = None  # "1.7b", "0.6b" or "tiny"
    tokens_per_second: float = 3.5  # forced output length with random weights
    baselines: Sequence[str] = ()
    baseline_limit: int | None = None  # baselines run on the first N clips only
    vad: str | None = None  # speech detection; None: off for noise workloads (no speech in them), else silero
    max_batch_audio_s: float | None = None  # the engine's cap on audio seconds per batch
    seed: int = 0
    threads: int | None = None  # torch intra-op threads (1 is steadiest on a shared CPU)
    compile: bool = False  # CUDA: the decode step compiled into a CUDA graph


def forced_length(tokens_per_second: float, cap: int | None = None) -> Callable[[float], int]:
    """Random weights never end by themselves: each answer is made round(rate x its audio
    seconds) tokens long (pad-to-longest batches: the batch's longest clip, as a real batch
    runs until its longest answer ends)."""

    def n(seconds: float) -> int:
        k = max(1, round(tokens_per_second * seconds))
        return min(k, cap) if cap else k

    return n


# ---------------------------------------------------------------------------------------------- modes


def _medasr(asr, clips: list[Clip], cfg: OfflineConfig, batch: int | None = None) -> list[str | None]:
    out = asr.transcribe([c.source for c in clips], batch_size=batch or cfg.batch_size,
                         max_new_tokens=cfg.max_new_tokens, errors="keep", vad=cfg.vad)  # fmt: skip
    return [None if t.error else t.text for t in out]


def _static(asr, clips: list[Clip], cfg: OfflineConfig) -> list[str | None]:
    mode, asr.engine.mode = asr.engine.mode, "static"
    try:
        return _medasr(asr, clips, cfg)
    finally:
        asr.engine.mode = mode


def _one_by_one(asr, clips: list[Clip], cfg: OfflineConfig) -> list[str | None]:
    return [_medasr(asr, [c], cfg, batch=1)[0] for c in clips]


@torch.inference_mode()
def _pad_longest(asr, clips: list[Clip], cfg: OfflineConfig) -> list[str | None]:
    from medasr.audio.decode import load_audio
    from medasr.errors import AudioError
    from medasr.pipeline.engine import Request, default_max_new_tokens

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
            results = iter(asr.engine.hf_generate(group, cfg.max_new_tokens or default_max_new_tokens(longest)))
        texts += [next(results).text if good else None for good in ok]
    return texts


RUNNERS: dict[str, tuple[Callable, Callable[[OfflineConfig], int]]] = {
    "medasr": (_medasr, lambda cfg: cfg.batch_size),
    "static": (_static, lambda cfg: cfg.batch_size),
    "one-by-one": (_one_by_one, lambda cfg: 1),
    "pad-longest-32": (_pad_longest, lambda cfg: PAD_LONGEST_BATCH),
}


# ---------------------------------------------------------------------------------------------- measuring


def load(cfg: OfflineConfig):
    """The ASR object to benchmark: a checkpoint, or random weights of a published size."""
    from medasr.model import quantize as quant
    from medasr.model.checkpoint import pick_device, pick_dtype
    from medasr.transcribe import ASR, load_model

    if cfg.threads:  # more threads than free cores makes every parallel op wait for the slowest
        torch.set_num_threads(cfg.threads)
    if cfg.random_weights:
        from medasr.bench import randomweights

        device = pick_device(cfg.device)
        dtype = pick_dtype(cfg.dtype, device)
        mode = quant.check(cfg.quantize, device, dtype)
        loaded = randomweights.build(cfg.random_weights, device, dtype, cfg.seed)
        quant.quantize_model(loaded.model, mode)
        loaded.quantize = mode
        asr = ASR(loaded, cfg.batch_size)
    else:
        asr = load_model(cfg.model, device=cfg.device, dtype=cfg.dtype, batch_size=cfg.batch_size, quantize=cfg.quantize)
    if cfg.max_batch_audio_s:
        asr.engine.max_batch_audio_s = cfg.max_batch_audio_s
    asr.engine.compile = cfg.compile
    asr.engine.timing = True
    return asr


def measure(asr, mode: str, clips: list[Clip], cfg: OfflineConfig) -> tuple[dict, list[str | None]]:
    """One mode over `clips`: its figures and its texts (None for a clip that failed)."""
    runner, per_batch = RUNNERS[mode]
    device = asr.loaded.device
    if cfg.warmup > 0:
        runner(asr, clips[: cfg.warmup * per_batch(cfg)], cfg)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
    before = replace(asr.engine.stats)
    t0 = time.perf_counter()
    texts = runner(asr, clips, cfg)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    e2e = time.perf_counter() - t0
    stats = asr.engine.stats.since(before)
    failure = sum(t is None for t in texts)
    audio_s = sum(c.duration for c, t in zip(clips, texts) if t is not None)
    figures = {
        "mode": mode,
        "total": len(clips),
        "success": len(clips) - failure,
        "failure": failure,
        "audio_s": round(audio_s, 3),
        "model_s": round(stats.model_s, 4),
        "e2e_s": round(e2e, 4),
        "rtfx_model": rate(audio_s, stats.model_s),
        "rtfx_e2e": rate(audio_s, e2e),
        "samples_per_s": rate(len(clips), e2e),
        "model_calls": stats.model_calls,  # forwards: prefills (audio encoder + prompt) and decode steps
        "prefills": stats.prefills,
        "decode_steps": stats.steps,
        "generated_tokens": stats.tokens,
        "tokens_per_s_model": rate(stats.tokens, stats.model_s),
        "row_utilization": round(stats.row_utilization, 4),
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
            f"to {cfg.tokens_per_second} tokens per audio second of each clip (pad-to-longest: of the batch's longest)"
        )
    device = asr.loaded.device
    if cfg.vad is None:  # noise holds no speech: with the detector on, nothing would reach the model
        cfg = replace(cfg, vad="none" if workload.description.get("audio") == "noise" else DEFAULT_VAD)
    if cfg.random_weights:
        asr.engine.forced_length = forced_length(cfg.tokens_per_second, cfg.max_new_tokens)
    runs = []
    for mode in ("medasr", *cfg.baselines):
        clips = workload.clips
        if mode != "medasr" and cfg.baseline_limit:
            clips = clips[: cfg.baseline_limit]
        log(f"bench offline: {mode} over {len(clips)} clips ({sum(c.duration for c in clips):.0f} s of audio)")
        figures, texts = measure(asr, mode, clips, cfg)
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
    from medasr.model.quantize import quantized_parameters

    return {
        "benchmark": "offline",
        "model": None if cfg.random_weights else cfg.model,
        "random_weights": cfg.random_weights,
        "tokens_per_second": cfg.tokens_per_second if cfg.random_weights else None,
        "parameters": n_parameters(asr.loaded.model) + quantized_parameters(asr.loaded.model),
        "device": str(device),
        "dtype": str(asr.loaded.dtype).removeprefix("torch."),
        "quantize": asr.loaded.quantize,
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
