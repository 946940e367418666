"""Batched Qwen3-ASR transcription with the real transformers model: prompt, generate, parse.

Everything that transcribes (CLI, Python API, server, evaluation, benchmarks) ends here.
Requests are sorted by duration and grouped into batches capped by count and by total audio
seconds, so padding wastes little; the audio encoder runs batched inside `generate`.

Batch invariance: each clip's log-mel features are computed on its own (the feature
extractor's batch padding changes the last STFT frames of shorter clips), then padded with
zeros and masked; prompts are left-padded with an attention mask. Transcribing N clips
together therefore gives the texts that transcribing them one by one gives.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from medasr.checkpoint import Loaded
from medasr.prompt import audio_token_count, parse_answer, prompt_text

MAX_NEW_TOKENS_CAP = 512  # the official transformers backend's limit
TOKENS_PER_SECOND = 20  # generous for English speech, also for small test vocabularies
MIN_NEW_TOKENS = 32


def default_max_new_tokens(duration_s: float) -> int:
    """A token budget that grows with the audio, so a looping model stops early on short clips."""
    return min(MAX_NEW_TOKENS_CAP, MIN_NEW_TOKENS + math.ceil(TOKENS_PER_SECOND * duration_s))


@dataclass
class Request:
    samples: np.ndarray  # mono float32 at 16 kHz
    context: str | None = None
    language: str | None = "English"  # None: the model detects the language


@dataclass
class Result:
    text: str
    language: str
    raw: str  # the decoded answer before parsing
    n_tokens: int
    hit_token_cap: bool


@dataclass
class Features:
    mel: torch.Tensor  # (128, frames padded to a multiple of 100)
    n_frames: int  # valid frames

    @property
    def n_audio_tokens(self) -> int:
        return audio_token_count(self.n_frames)


def clip_features(feature_extractor, samples: np.ndarray) -> tuple[torch.Tensor, int]:
    """Log-mel of one clip on its own (batch padding would alter its STFT tail) and its valid
    frame count. Training computes features here too, so it sees what inference sees."""
    out = feature_extractor(
        samples, sampling_rate=16000, padding="longest", return_attention_mask=True, return_tensors="pt"
    )
    return out["input_features"][0], int(out["attention_mask"][0].sum())


class Engine:
    def __init__(self, loaded: Loaded, batch_size: int = 16, max_batch_audio_s: float = 600.0):
        self.loaded = loaded
        self.model = loaded.model
        self.processor = loaded.processor
        self.tokenizer = loaded.processor.tokenizer
        self.feature_extractor = loaded.processor.feature_extractor
        self.device = loaded.device
        self.dtype = loaded.dtype
        self.batch_size = batch_size
        self.max_batch_audio_s = max_batch_audio_s
        self.pad_id = self.tokenizer.pad_token_id
        if self.pad_id is None:
            self.pad_id = self.model.generation_config.pad_token_id
        eos = self.model.generation_config.eos_token_id
        self.eos_ids = set(eos if isinstance(eos, (list, tuple)) else [eos])

    # ------------------------------------------------------------------ inputs
    def features(self, samples: np.ndarray) -> Features:
        return Features(*clip_features(self.feature_extractor, samples))

    def prompt_ids(self, context: str | None, language: str | None, n_audio_tokens: int) -> list[int]:
        text = prompt_text(context, language, n_audio_tokens)
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def batch_inputs(self, requests: Sequence[Request]) -> dict[str, torch.Tensor]:
        """Left-padded prompt ids and right-padded mel features for one batch."""
        feats = [self.features(r.samples) for r in requests]
        ids = [self.prompt_ids(r.context, r.language, f.n_audio_tokens) for r, f in zip(requests, feats)]
        longest = max(len(x) for x in ids)
        input_ids = torch.full((len(ids), longest), self.pad_id, dtype=torch.long)
        attention = torch.zeros((len(ids), longest), dtype=torch.long)
        for i, x in enumerate(ids):
            input_ids[i, longest - len(x) :] = torch.tensor(x)
            attention[i, longest - len(x) :] = 1
        frames = max(f.mel.shape[-1] for f in feats)
        mel = torch.zeros((len(feats), feats[0].mel.shape[0], frames), dtype=torch.float32)
        mel_mask = torch.zeros((len(feats), frames), dtype=torch.long)
        for i, f in enumerate(feats):
            mel[i, :, : f.mel.shape[-1]] = f.mel
            mel_mask[i, : f.n_frames] = 1
        return {
            "input_ids": input_ids.to(self.device),
            "attention_mask": attention.to(self.device),
            "input_features": mel.to(self.device, self.dtype),
            "input_features_mask": mel_mask.to(self.device),
        }

    # ------------------------------------------------------------------ batching
    def plan(self, durations: Sequence[float], batch_size: int | None = None) -> list[list[int]]:
        """Indices grouped into batches: sorted by duration, capped by count and audio seconds."""
        cap = batch_size or self.batch_size
        order = sorted(range(len(durations)), key=lambda i: durations[i], reverse=True)
        batches: list[list[int]] = []
        current: list[int] = []
        seconds = 0.0
        for i in order:
            if current and (len(current) >= cap or seconds + durations[i] > self.max_batch_audio_s):
                batches.append(current)
                current, seconds = [], 0.0
            current.append(i)
            seconds += durations[i]
        if current:
            batches.append(current)
        return batches

    @torch.inference_mode()
    def run(
        self,
        requests: Sequence[Request],
        batch_size: int | None = None,
        max_new_tokens: int | None = None,
        on_batch: Callable[[list[int], list[Result]], None] | None = None,
    ) -> list[Result]:
        """Transcribe all requests; `on_batch(indices, results)` is called as each batch finishes."""
        results: list[Result | None] = [None] * len(requests)
        durations = [len(r.samples) / 16000 for r in requests]
        for idx in self.plan(durations, batch_size):
            batch = [requests[i] for i in idx]
            budget = max_new_tokens or default_max_new_tokens(max(durations[i] for i in idx))
            out = self.generate(batch, budget)
            for i, r in zip(idx, out):
                results[i] = r
            if on_batch:
                on_batch(idx, out)
        return results  # type: ignore[return-value]

    def generate(self, batch: Sequence[Request], max_new_tokens: int) -> list[Result]:
        inputs = self.batch_inputs(batch)
        sequences = self.model.generate(
            **inputs,
            max_new_tokens=max_new_tokens,
            do_sample=False,
            num_beams=1,
            pad_token_id=self.pad_id,
        )
        new_tokens = sequences[:, inputs["input_ids"].shape[1] :].tolist()
        results = []
        for request, tokens in zip(batch, new_tokens):
            tokens = _trim(tokens, self.eos_ids)
            ended = bool(tokens) and tokens[-1] in self.eos_ids
            raw = self.tokenizer.decode(tokens, skip_special_tokens=True, clean_up_tokenization_spaces=False)
            language, text = parse_answer(raw, request.language)
            results.append(Result(text, language, raw, len(tokens), hit_token_cap=not ended and len(tokens) >= max_new_tokens))
        return results

    @torch.inference_mode()
    def prefill_logits(self, request: Request) -> torch.Tensor:
        """Logits of the first generated step (used to check parity with the official package)."""
        inputs = self.batch_inputs([request])
        return self.model(**inputs).logits[0, -1].float().cpu()


def _trim(tokens: list[int], eos_ids: set[int]) -> list[int]:
    """Cut after the first end-of-turn; drop the padding of rows that finished early."""
    for i, t in enumerate(tokens):
        if t in eos_ids:
            return tokens[: i + 1]
    return tokens
