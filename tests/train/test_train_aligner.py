"""Training data and loss of the demo forced aligner (medasr.train.aligner, aligner_data)."""

from __future__ import annotations

import random

import numpy as np
import torch

from medasr.audio.decode import SAMPLE_RATE
from medasr.train import aligner as T
from medasr.train.aligner_data import WINDOW_S, heldout_pool, heldout_templates, matches_any, speak_windows, training_pool


def test_held_out_templates_and_sentences_are_never_trained_on():
    from medasr.synth import sentences as synth

    held = heldout_templates(5)
    assert held == list(synth.TEMPLATES[4::5])
    train = training_pool(400, seed=0, held=held)
    test = heldout_pool(20, held, seed=2024)
    assert not set(train) & set(test)
    assert not any(matches_any(s, held) for s in train)  # no sentence a held-out template could make
    assert all(matches_any(s, held) and synth.split_of(s) == "heldout" for s in test)


def test_windows_hold_whole_sentences_with_their_word_times():
    pool = training_pool(200, seed=0, held=heldout_templates(5))
    windows = speak_windows(pool, random.Random(0), 3, "en-us", 175, 50, (0.3, 1.0), 0.5, None)
    assert len(windows) == 3
    for w in windows:
        assert len(w.samples) == int(WINDOW_S * SAMPLE_RATE)
        assert len(w.times) == len([t for t in w.text.split() if any(c.isalnum() for c in t)])
        assert all(0 < a < b <= WINDOW_S - 0.1 for a, b in w.times)
        first, last = int(w.times[0][0] * SAMPLE_RATE), int(w.times[-1][1] * SAMPLE_RATE)
        # silence before the first word and after the last (resampler ringing only)
        assert np.abs(w.samples[: first - 80]).max(initial=0) < 1e-4
        assert np.abs(w.samples[last + 80 :]).max(initial=0) < 1e-4


def test_loss_and_training_aids():
    from medasr.model import build as modelbuild

    tok = modelbuild.train_tokenizer(["the patient takes metoprolol"] * 5, vocab_size=300)
    model = modelbuild.build_aligner(modelbuild.make_aligner_config(tok, "tiny", classes=50), init_std=0.3)
    model.set_attn_implementation("eager")
    ids = torch.randint(0, 200, (2, 40))
    ids[:, 1:27] = model.config.audio_token_id
    labels = torch.full((2, 40), -100)
    labels[:, 30:36] = torch.randint(0, 20, (2, 6))
    batch = {"input_ids": ids, "labels": labels, "attention_mask": torch.ones_like(ids), "audio": torch.randn(52, 32)}
    plain = T._loss(model, batch)
    embeds = model.get_input_embeddings()(ids).masked_scatter(
        (ids == model.config.audio_token_id)[..., None], model.model.multi_modal_projector(batch["audio"])
    )
    assert torch.allclose(plain, model(inputs_embeds=embeds, labels=labels).loss)  # the model's own loss
    positions_only = T._loss(model, batch, position_weight=0.5, slot_weight=0.0)  # a stage that learns audio positions only
    assert torch.allclose(T._loss(model, batch, position_weight=0.5), plain + positions_only)
    aided = T._loss(model, batch, sigma_bins=1.5, position_weight=0.5, attention_weight=0.5)
    assert torch.isfinite(aided) and aided > T._loss(model, batch, sigma_bins=1.5)
    aided.backward()
    assert model.score.weight.grad is not None
    assert T.audio_token_bins(27).tolist()[:14] == list(range(13)) + [13] and T.audio_token_bins(26)[-2:].tolist() == [24, 24]


def test_cropped_pieces_keep_whole_words_on_their_own_timeline():
    audio = torch.arange(104 * 2, dtype=torch.float32)[:, None]  # two 8 s windows of 13 tokens per 1 s chunk
    units = ["a", "b", "c", "d", "e"]
    times = [(0.5, 0.9), (0.95, 1.6), (3.2, 3.8), (9.1, 9.7), (12.4, 13.5)]
    seen = set()
    for seed in range(40):
        cut, kept, kept_times = T._crop(audio, units, times, random.Random(seed))
        assert len(cut) % 13 == 0 and kept
        c0 = int(cut[0, 0]) // 13  # the first kept chunk
        assert cut[:, 0].tolist() == list(range(13 * c0, 13 * c0 + len(cut)))
        dropped = [t for u, t in zip(units, times) if u not in kept]
        assert all(not (c0 < a < c0 + len(cut) / 13) for a, _ in dropped)  # no word cut in two
        assert kept_times == [(a - c0, b - c0) for u, (a, b) in zip(units, times) if u in kept]
        assert all(0 <= a < b <= len(cut) / 13 for a, b in kept_times)
        seen.add((c0, len(cut) // 13))
    assert len(seen) > 10  # many lengths and leads
