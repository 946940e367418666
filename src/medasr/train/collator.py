"""Training examples and batches: the inference prompt plus the answer, loss on the answer only.

An example is the prompt the engine sends at inference (`medasr.model.prompt.prompt_text`, per-clip
log-mel from the processor's feature extractor, as `engine.py` computes it) followed by the answer
`language English<asr_text>` + text + `<|im_end|>`. Labels are -100 everywhere except on exactly
those answer tokens, whatever the padding side: each row's answer is located from its own lengths,
never from the padded width (the official recipe masks the first prompt-length positions of
left-padded rows, so part of the prompt of shorter rows leaks into the loss).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from medasr.model.prompt import IM_END, answer_prefix, audio_token_count, prompt_text
from medasr.pipeline.engine import clip_features

IGNORE = -100


@dataclass
class Example:
    """One encoded training pair: the clip's log-mel and its token ids."""

    mel: torch.Tensor  # (128, frames, padded to a multiple of 100 by the feature extractor)
    n_frames: int  # valid mel frames
    prompt_ids: list[int]  # system + user (audio placeholders) + assistant header
    answer_ids: list[int]  # answer prefix + text + end of turn: the only tokens with labels
    text_ids: list[int] | None = None  # the text alone (targets of the optional CTC loss)

    @property
    def input_ids(self) -> list[int]:
        return self.prompt_ids + self.answer_ids


def encode(
    processor,
    samples: np.ndarray,
    text: str,
    context: str | None = None,
    language: str = "English",
    forced_language: str | None = None,
) -> Example:
    """Features and token ids of one (audio, target text) pair.

    The prompt before the answer prefix, the prefix and the text are tokenized separately, so the
    answer boundary is exact; `prompt_ids + answer prefix ids` are the ids the engine feeds at
    inference (tests check that they equal the tokenized `prompt_text(context, language, n)`).
    With `forced_language` the prompt ends with that language's answer prefix, as inference with a
    forced language sends it, and the answer is the text and end of turn alone (no speech: just
    the end of turn).
    """
    tok = processor.tokenizer
    mel, n_frames = clip_features(processor.feature_extractor, samples)
    n_audio = audio_token_count(n_frames)
    prompt = tok(prompt_text(context, forced_language, n_audio), add_special_tokens=False)["input_ids"]
    prefix = [] if forced_language else tok(answer_prefix(language), add_special_tokens=False)["input_ids"]
    text_ids = tok(text, add_special_tokens=False)["input_ids"]
    end = tok(IM_END, add_special_tokens=False)["input_ids"]
    return Example(mel, n_frames, prompt, prefix + text_ids + end, text_ids)


class Collator:
    """Pads a list of Examples into a model batch.

    padding_side "right" (default) or "left"; position ids follow each row's own tokens, so both
    sides give the same loss. The mel features are right-padded with zeros and masked, as at
    inference. With `ctc=True` the batch also carries `ctc_labels` (each row's text ids, padded
    with -100) for the auxiliary CTC loss of `medasr.train.run`; the Trainer removes them before
    the model sees the batch.
    """

    def __init__(self, pad_token_id: int, padding_side: str = "right", ctc: bool = False):
        if padding_side not in ("left", "right"):
            raise ValueError(f"padding_side must be 'left' or 'right', got {padding_side!r}")
        self.pad_token_id = pad_token_id
        self.padding_side = padding_side
        self.ctc = ctc

    def __call__(self, examples: Sequence[Example]) -> dict[str, torch.Tensor]:
        n = len(examples)
        width = max(len(e.prompt_ids) + len(e.answer_ids) for e in examples)
        input_ids = torch.full((n, width), self.pad_token_id, dtype=torch.long)
        attention = torch.zeros((n, width), dtype=torch.long)
        labels = torch.full((n, width), IGNORE, dtype=torch.long)
        positions = torch.zeros((n, width), dtype=torch.long)
        for i, e in enumerate(examples):
            ids = e.input_ids
            start = width - len(ids) if self.padding_side == "left" else 0
            end = start + len(ids)
            input_ids[i, start:end] = torch.tensor(ids)
            attention[i, start:end] = 1
            positions[i, start:end] = torch.arange(len(ids))
            # The answer is the last len(answer_ids) real tokens of the row, wherever the row sits.
            labels[i, end - len(e.answer_ids) : end] = torch.tensor(e.answer_ids)
        frames = max(e.mel.shape[-1] for e in examples)
        mel = torch.zeros((n, examples[0].mel.shape[0], frames), dtype=torch.float32)
        mel_mask = torch.zeros((n, frames), dtype=torch.long)
        for i, e in enumerate(examples):
            mel[i, :, : e.mel.shape[-1]] = e.mel
            mel_mask[i, : e.n_frames] = 1
        batch = {
            "input_ids": input_ids,
            "attention_mask": attention,
            "position_ids": positions,
            "input_features": mel,
            "input_features_mask": mel_mask,
            "labels": labels,
        }
        if self.ctc:
            longest = max(len(e.text_ids or []) for e in examples)
            ctc_labels = torch.full((n, max(longest, 1)), IGNORE, dtype=torch.long)
            for i, e in enumerate(examples):
                if e.text_ids:
                    ctc_labels[i, : len(e.text_ids)] = torch.tensor(e.text_ids)
            batch["ctc_labels"] = ctc_labels
        return batch
