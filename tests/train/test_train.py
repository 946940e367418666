"""Training: answer-only labels under both padding sides, the recipe and its overrides, a short
real CPU training run that checkpoints, transcribes and resumes, and the bundled demo model."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import TOKENIZER_TEXTS

from medasr.errors import UserError
from medasr.model.prompt import IM_END, answer_prefix, prompt_text
from medasr.records import Utterance
from medasr.train.collator import IGNORE, Collator, encode
from medasr.train.recipe import Recipe, RecipeError, load_recipe


@pytest.fixture(scope="module")
def processor():
    from medasr.model import build as modelbuild

    return modelbuild.make_processor(modelbuild.train_tokenizer(TOKENIZER_TEXTS * 10, vocab_size=400))


def _examples(processor):
    rng = np.random.default_rng(0)
    texts = ["No.", "The patient takes metoprolol twice daily.", "Chest pain radiating to the left arm since this morning."]
    seconds = [2.3, 0.7, 4.1]  # audio lengths do not follow text lengths: rows differ in both
    contexts = [None, "metoprolol, apixaban", None]
    return [
        encode(processor, (0.1 * rng.standard_normal(int(16000 * s))).astype(np.float32), t, c)
        for t, s, c in zip(texts, seconds, contexts)
    ], texts, contexts


# ---------------------------------------------------------------------------- collator
@pytest.mark.parametrize("side", ["left", "right"])
def test_labels_cover_exactly_the_answer(processor, side):
    tok = processor.tokenizer
    examples, texts, _ = _examples(processor)
    batch = Collator(tok.pad_token_id, side)(examples)
    assert len({len(e.input_ids) for e in examples}) == 3  # a batch of different lengths
    for i, (e, text) in enumerate(zip(examples, texts)):
        labels, ids, mask = batch["labels"][i], batch["input_ids"][i], batch["attention_mask"][i]
        labelled = (labels != IGNORE).nonzero().flatten().tolist()
        real = mask.nonzero().flatten().tolist()
        # exactly the answer: the last len(answer) real tokens, contiguous, nothing else
        assert labelled == real[len(real) - len(e.answer_ids) :]
        assert labels[labelled].tolist() == ids[labelled].tolist() == e.answer_ids
        answer = tok.decode(labels[labelled].tolist(), skip_special_tokens=False)
        assert answer == answer_prefix("English") + text + IM_END
        # padding and the whole prompt are masked, on whichever side the padding is
        assert all(labels[j] == IGNORE for j in range(len(labels)) if j not in labelled)
        assert ids[real].tolist() == e.input_ids
        padded = [j for j in range(len(mask)) if not mask[j]]
        if padded:
            assert (padded[0] == 0) == (side == "left")


def test_prompt_is_the_inference_prompt(processor):
    """Prompt + answer prefix are token for token what the engine sends at inference."""
    tok = processor.tokenizer
    examples, _, contexts = _examples(processor)
    for e, context in zip(examples, contexts):
        n_audio = sum(1 for t in e.prompt_ids if t == tok.convert_tokens_to_ids("<|audio_pad|>"))
        inference = tok(prompt_text(context, "English", n_audio), add_special_tokens=False)["input_ids"]
        prefix = len(tok(answer_prefix("English"), add_special_tokens=False)["input_ids"])
        assert e.prompt_ids + e.answer_ids[:prefix] == inference


def test_left_and_right_padding_give_the_same_loss(processor):
    from medasr.model import build as modelbuild

    model = modelbuild.build_model(modelbuild.make_config(processor.tokenizer, "tiny"), seed=1)
    examples, _, _ = _examples(processor)
    pad = processor.tokenizer.pad_token_id
    with torch.no_grad():
        left = model(**Collator(pad, "left")(examples)).loss
        right = model(**Collator(pad, "right")(examples)).loss
    assert torch.isfinite(left) and abs(left.item() - right.item()) < 1e-4


def test_ctc_aid_targets_the_text_and_reaches_the_encoder(processor):
    from medasr.model import build as modelbuild
    from medasr.train.run import ctc_loss

    tok = processor.tokenizer
    examples, texts, _ = _examples(processor)
    batch = Collator(tok.pad_token_id, "left", ctc=True)(examples)
    for row, text in zip(batch["ctc_labels"], texts):
        assert tok.decode(row[row != IGNORE].tolist()) == text
    model = modelbuild.build_model(modelbuild.make_config(tok, "tiny"), seed=1).train()
    ctc_labels = batch.pop("ctc_labels")
    out = model(**batch)
    loss = ctc_loss(model, batch["input_ids"], out.audio_hidden_states, ctc_labels, tok.pad_token_id)
    assert torch.isfinite(loss) and loss > 0
    loss.backward()
    assert model.model.audio_tower.conv2d1.weight.grad.abs().sum() > 0


# ---------------------------------------------------------------------------- targets
def test_targets_written_form_and_drops(tmp_path):
    from medasr.train.data import DataReport, mix, targets

    utts = [
        Utterance("a", "x.wav", "the patient presented with chest pain", 3.0),
        Utterance("b", "y.wav", "   ", 2.0),
        Utterance("c", "z.wav", "TAVI is indicated...", 31.0),
        Utterance("d", "w.wav", "What is the dosage?", 30.0),
    ]
    report = DataReport()
    kept = targets(utts, "set", report, max_duration_s=30.0)
    assert [u.text for u in kept] == ["The patient presented with chest pain.", "What is the dosage?"]
    assert (report.kept["set"], report.dropped_empty["set"], report.dropped_long["set"]) == (2, 1, 1)
    mixed = mix([kept, kept[:1]], [1.0, 2.0])
    assert len(mixed) == 4 and mixed.count(kept[0]) == 3
    assert len(mix([kept * 5], [0.5])) == 5


def test_compounds_join_clips_with_pauses(synth_clips, processor):
    from medasr.data import read_dataset
    from medasr.train.data import DataReport, SpeechDataset, compounds, targets

    utts = targets(read_dataset(synth_clips, "train"), "synth", DataReport(), 30.0)
    extra = compounds(utts, 5, 12.0, seed=0)
    assert extra and all(len(c.parts) >= 2 and c.duration <= 12.0 for c in extra)
    c = extra[0]
    assert c.text == " ".join(u.text for u in c.parts)
    example = SpeechDataset([c], processor)[0]
    assert abs(example.n_frames / 100 - c.duration) < 0.1  # parts and pauses, end to end
    assert processor.tokenizer.decode(example.text_ids) == c.text


def test_augment_adds_edge_silence_and_faint_noise_reproducibly(synth_clips, processor):
    from medasr.data import read_dataset
    from medasr.train.data import Augment, DataReport, SpeechDataset, targets

    sr, speech = 16000, np.full(3 * 16000, 0.25, np.float32)
    aug = Augment(edge_silence_s=1.0, noise_dbfs=(-70.0, -50.0), noise_fraction=0.5, max_s=30.0, seed=3)
    noisy = 0
    for i in range(200):
        out = aug(speech, i)
        assert np.array_equal(out, aug(speech, i))  # the same clip every epoch and after a resume
        inside = np.flatnonzero(np.abs(out - 0.25) < 0.05)
        lead, tail = inside[0], len(out) - 1 - inside[-1]
        assert len(inside) == len(speech) and lead <= sr and tail <= sr  # speech kept whole, <= 1 s each side
        noise = out[lead : lead + len(speech)] - 0.25
        if np.all(noise == 0):
            assert np.all(out[:lead] == 0) and np.all(out[len(out) - tail :] == 0)  # clean: only zeros added
            continue
        noisy += 1
        assert -70.5 < 20 * np.log10(np.sqrt(np.mean(noise**2))) < -49.5
    assert 70 < noisy < 130  # noise_fraction 0.5 of 200
    # silence is never added past max_s
    assert len(Augment(edge_silence_s=5.0, max_s=4.0)(speech, 0)) <= 4 * sr + 1

    utt = targets(read_dataset(synth_clips, "train"), "synth", DataReport(), 30.0)[:1]
    plain = SpeechDataset(utt, processor)[0]
    padded = SpeechDataset(utt, processor, Augment(edge_silence_s=1.0, seed=1))[0]
    assert padded.n_frames > plain.n_frames and padded.answer_ids == plain.answer_ids
    assert SpeechDataset(utt, processor, Augment()).augment is None  # nothing to do: no augmentation pass


def test_nonspeech_clips_answer_nothing_and_never_join_compounds(synth_clips, processor):
    from medasr.data import read_dataset
    from medasr.train.data import DataReport, SpeechDataset, compounds, targets

    tok = processor.tokenizer
    wav = str(next((synth_clips / "audio").glob("*.wav")))
    quiet = [Utterance(f"q{i}", wav, "", 2.0, "nonspeech", "warfarin, apixaban" if i else "", "None") for i in range(2)]
    report = DataReport()
    kept = targets(quiet + [Utterance("e", wav, " ", 2.0)], "mix", report, 30.0)
    assert [u.id for u in kept] == ["q0", "q1"] and report.dropped_empty["mix"] == 1  # empty speech text still dropped
    dataset = SpeechDataset(kept, processor)
    # even index: language detection on, the answer is `language None<asr_text>` and the end of turn
    auto = dataset[0]
    assert tok.decode(auto.answer_ids, skip_special_tokens=False) == answer_prefix("None") + IM_END
    assert auto.prompt_ids == tok(prompt_text(None, None, _audio_tokens(auto)), add_special_tokens=False)["input_ids"]
    # odd index: asked as `medasr transcribe` asks (language forced), the answer is the end of turn alone
    forced = dataset[1]
    assert tok.decode(forced.answer_ids, skip_special_tokens=False) == IM_END and forced.text_ids == []
    assert forced.prompt_ids == tok(prompt_text("warfarin, apixaban", "English", _audio_tokens(forced)),
                                    add_special_tokens=False)["input_ids"]
    batch = Collator(tok.pad_token_id, ctc=True)([auto, forced])
    assert (batch["ctc_labels"] == IGNORE).all()  # CTC target: all blanks
    speech = targets(read_dataset(synth_clips, "train"), "synth", DataReport(), 30.0)
    for c in compounds(speech + kept * 20, 30, 20.0, seed=1):
        assert all(u.language != "None" for u in c.parts)


def _audio_tokens(example) -> int:
    from medasr.model.prompt import audio_token_count

    return audio_token_count(example.n_frames)


# ---------------------------------------------------------------------------- recipe
def test_recipe_defaults_are_the_seeds():
    r = Recipe()
    assert r.learning_rate == 2e-5
    assert r.lr_scheduler == "linear"
    assert r.warmup_ratio == 0.02
    assert r.per_device_batch_size == 64 and r.gradient_accumulation == 3
    assert r.epochs == 3
    assert r.precision == "auto"  # bf16 where supported
    assert r.gradient_checkpointing is True
    assert r.optim == "adamw_torch_fused"
    assert r.max_duration_s == 30.0
    assert r.init == "Qwen/Qwen3-ASR-1.7B"  # the seed's base model


def test_set_overrides_parse_types(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text("learning_rate: 1e-3\nepochs: 2\ntrain: [a.jsonl]\n")  # plain YAML reads 1e-3 as a string
    r = load_recipe(path, [
        "epochs=5", "warmup_ratio=0.1", "gradient_checkpointing=false", "eval_batch_size=none",
        "max_steps=1e3", "lora.r=8", "lora.target_modules=[q_proj, v_proj]", "size.layers=3",
        "train=[a.jsonl, {path: b, weight: 2}]", "output_dir=runs/x=y",
    ])
    assert r.learning_rate == 1e-3 and isinstance(r.learning_rate, float)
    assert r.epochs == 5.0 and isinstance(r.epochs, float)
    assert r.max_steps == 1000 and isinstance(r.max_steps, int)
    assert r.warmup_ratio == 0.1 and r.gradient_checkpointing is False and r.eval_batch_size is None
    assert r.lora == {"r": 8, "target_modules": ["q_proj", "v_proj"]}
    assert r.size["layers"] == 3 and r.size["hidden"] == 32  # the named size, one field changed
    assert r.train == ["a.jsonl", {"path": "b", "weight": 2}]
    assert r.output_dir == "runs/x=y"
    for bad in (["noise_dbfs=[-40, -60]"], ["noise_dbfs=[-60]"], ["noise_dbfs=[-60, 3]"], ["noise_fraction=2"], ["edge_silence_s=-1"]):
        with pytest.raises(RecipeError, match=bad[0].split("=")[0]):
            load_recipe(None, bad)
    assert load_recipe(None, ["noise_dbfs=[-75, -45]"]).noise_dbfs == [-75, -45]
    for bad in (["epochs=many"], ["gradient_checkpointing=maybe"], ["nonsense=1"], ["per_device_batch_size=2.5"], ["noequals"]):
        with pytest.raises(RecipeError):
            load_recipe(None, bad)


def test_recipe_file_round_trip(tmp_path):
    from medasr.train.recipe import write_recipe

    r = load_recipe(Path(__file__).parents[2] / "recipes" / "demo.yaml")
    assert r.init == "scratch" and r.learning_rate == 1e-3
    again = load_recipe(write_recipe(r, tmp_path / "r.yaml", extra={"optim": "adamw_torch"}))
    assert again == r


def test_lora_without_peft_is_a_clear_error(monkeypatch):
    from medasr.train.run import apply_lora

    monkeypatch.setitem(sys.modules, "peft", None)
    with pytest.raises(UserError, match="pip install peft"):
        apply_lora(torch.nn.Linear(2, 2), {"r": 4})


# ---------------------------------------------------------------------------- a real run
@pytest.fixture(scope="module")
def synth_clips(tmp_path_factory) -> Path:
    from medasr.synth import sentences as synth

    out = tmp_path_factory.mktemp("synth")
    synth.synthesize(out, 12, seed=3, voices=["en-us"], jobs=2, progress=False)
    return out


def _tiny_run(data: Path, out: Path, steps: int, extra: list[str] = ()) -> Recipe:
    return load_recipe(None, [
        "init=scratch", "size=tiny", "vocab_size=300", f"train=[{data}]", f"valid=[{data}]",
        f"max_steps={steps}", "per_device_batch_size=6", "gradient_accumulation=1", "eval_steps=4",
        "learning_rate=3e-3", "warmup_ratio=0", "logging_steps=1", "threads=2", f"output_dir={out}",
        "gradient_checkpointing=true", "precision=auto", *extra,
    ])


def test_short_training_run_checkpoints_transcribes_and_resumes(synth_clips, tmp_path):
    from medasr.train import train
    from medasr.transcribe import load_model

    out = tmp_path / "run"
    first = train(_tiny_run(synth_clips, out, 8))
    assert first.global_step == 8
    losses = [h["loss"] for h in json.loads((out / "train_summary.json").read_text())["log_history"] if "loss" in h]
    assert losses[-1] < losses[0]
    evals = [h["eval_loss"] for h in json.loads((out / "checkpoint-8" / "trainer_state.json").read_text())["log_history"] if "eval_loss" in h]
    assert evals[-1] < evals[0]
    for ckpt in (out / "checkpoint-8", first.export_dir):
        for name in ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", "processor_config.json"):
            assert (ckpt / name).exists(), f"{ckpt} lacks {name}"
        asr = load_model(str(ckpt), device="cpu")
        result = asr.transcribe(sorted((synth_clips / "audio").glob("*.wav"))[:2], max_new_tokens=8)
        assert len(result) == 2 and all(t.error is None for t in result)
    assert (out / "recipe.yaml").exists() and (first.export_dir / "recipe.yaml").exists()

    # Interrupted after step 8, asked for 12: it continues from checkpoint-8, not from step 0.
    second = train(_tiny_run(synth_clips, out, 12))
    assert second.global_step == 12
    state = json.loads((out / "checkpoint-12" / "trainer_state.json").read_text())
    steps = [h["step"] for h in state["log_history"] if "loss" in h]
    assert steps == sorted(steps) and steps.count(1) == 1  # one history, not restarted
    assert "checkpoint-8" in (out / "recipe.yaml").read_text()  # resume_from is recorded


# ---------------------------------------------------------------------------- the demo model
def test_demo_model_transcribes_heldout_speech():
    from medasr.model.checkpoint import DEMO_DIR
    from medasr.train.demo import run_demo, set_sentences

    if not (DEMO_DIR / "config.json").exists():
        pytest.fail(f"no demo model in {DEMO_DIR}: rebuild it (docs/demo-model.md)")
    weights = DEMO_DIR / "model.safetensors"
    assert weights.stat().st_size <= 25 * 1024 * 1024
    texts = set_sentences("legacy", 2)  # held-out sentences of its 41 templates
    from medasr.synth import sentences as synth

    assert all(synth.split_of(t) == "heldout" for t in texts)
    results, wer = run_demo("demo", sentences=texts, voices=("en", "en-us"))
    assert len(results) == 4
    assert wer <= 0.25, [(r.reference, r.hypothesis) for r in results]


# ---------------------------------------------------------------------------- killed mid-save
def test_killed_during_a_checkpoint_save_the_same_command_continues(synth_clips, tmp_path):
    """kill -9 while `medasr train` writes a checkpoint; the same command then skips the half-written
    folder, says so, and continues from the newest complete one (before: it failed on every rerun)."""
    import random
    import shutil
    import signal
    import subprocess
    import time

    from medasr.train import checkpoints
    from medasr.train.run import find_resume

    out = tmp_path / "run"
    sets = ["init=scratch", "size=tiny", "vocab_size=300", f"train=[{synth_clips}]", f"valid=[{synth_clips}]", "max_steps=4",
            "per_device_batch_size=6", "gradient_accumulation=1", "eval_steps=1", "learning_rate=3e-3", "warmup_ratio=0",
            "threads=1", "gradient_checkpointing=false", f"output_dir={out}"]  # fmt: skip
    cmd = [sys.executable, "-m", "medasr", "train", *[x for s in sets for x in ("--set", s)]]
    rng = random.Random(7)
    for attempt in range(3):  # a kill can land just after a save ends: then try the next save
        target = out / f"checkpoint-{attempt + 2}"
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        while not (target.is_dir() and not (target / checkpoints.MARKER).exists()):
            assert proc.poll() is None, proc.communicate()[1][-3000:]
            time.sleep(0.001)
        time.sleep(rng.uniform(0, 0.02))  # somewhere inside the save
        proc.send_signal(signal.SIGKILL)
        proc.communicate()
        if not (target / checkpoints.MARKER).exists():
            break
    else:
        pytest.fail("no kill landed inside a checkpoint save in three tries")
    good = out / f"checkpoint-{attempt + 1}"
    assert checkpoints.problem(target) is not None and checkpoints.problem(good) is None

    # what a kill can leave, on copies of the complete checkpoint
    def broken(name, damage) -> str | None:
        copy = tmp_path / "copies" / name
        shutil.copytree(good, copy)
        damage(copy)
        return checkpoints.problem(copy)

    def cut(file):
        return lambda d: (d / file).write_bytes((d / file).read_bytes()[: (d / file).stat().st_size // 2])

    assert "trainer_state.json" in broken("no-state", lambda d: (d / "trainer_state.json").unlink())
    assert "trainer_state.json" in broken("cut-state", cut("trainer_state.json"))
    assert "model.safetensors" in broken("cut-weights", cut("model.safetensors"))
    assert "optimizer.pt" in broken("cut-optimizer", cut("optimizer.pt"))
    assert "rng_state.pth is missing" in broken("half-deleted", lambda d: (d / "rng_state.pth").unlink())
    # no marker (older medasr, or a kill between the save and its marker): judged by its contents
    assert broken("unmarked", lambda d: (d / checkpoints.MARKER).unlink()) is None
    assert "optimizer" in broken("unmarked-no-optimizer", lambda d: [(d / n).unlink() for n in (checkpoints.MARKER, "optimizer.pt")])
    with pytest.raises(UserError, match="not a complete Trainer checkpoint"):
        find_resume(load_recipe(None, [f"output_dir={out}", f"resume={target}"]))

    again = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    assert f"skipping {target}, an incomplete checkpoint" in again.stderr and f"continuing from {good}" in again.stderr
    state = json.loads((out / "checkpoint-4" / "trainer_state.json").read_text())
    assert state["global_step"] == 4 and [h["step"] for h in state["log_history"] if "eval_loss" in h] == [1, 2, 3, 4]
    assert f"resume_from: {good}" in (out / "recipe.yaml").read_text()  # continued, not restarted
    assert checkpoints.problem(out / "checkpoint-4") is None and (out / "checkpoint-4" / checkpoints.MARKER).exists()
