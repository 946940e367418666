"""Fine-tune (or train from scratch) a Qwen3-ASR model with the transformers Trainer.

Reads top to bottom: recipe -> data -> model + processor -> Trainer -> best model exported.
Runs as it is on one CPU or GPU, and under `torchrun` / `accelerate launch` (the Trainer picks up
the distributed environment; only the main process writes the tokenizer, reports and exports).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from medasr.errors import UserError
from medasr.train.data import Augment, DataReport, SpeechDataset, compounds, mix, parse_sources, read_sources
from medasr.train.recipe import Recipe, RecipeError, write_recipe

log = logging.getLogger(__name__)

TOKENIZER_DIR = "tokenizer"  # scratch runs keep their trained tokenizer here, so a resume reuses it


@dataclass
class TrainResult:
    output_dir: Path
    export_dir: Path | None
    best_checkpoint: str | None
    best_eval_loss: float | None
    global_step: int
    train_seconds: float
    data: DataReport


# ---------------------------------------------------------------------------- run-time choices
def resolve_precision(precision: str) -> str:
    """auto: bf16 on a GPU that supports it (the seed trains bf16 mixed), fp32 elsewhere."""
    if precision != "auto":
        if precision in ("bf16", "fp16") and not torch.cuda.is_available():
            log.warning("precision %s asked for on a machine without CUDA: training in fp32", precision)
            return "fp32"
        return precision
    if torch.cuda.is_available() and torch.cuda.is_bf16_supported():
        return "bf16"
    return "fp32"


def resolve_optim(optim: str) -> str:
    """Fused AdamW where this torch build and device run it; plain AdamW otherwise."""
    if optim != "adamw_torch_fused":
        return optim
    device = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        p = torch.nn.Parameter(torch.zeros(2, device=device))
        p.grad = torch.ones_like(p)
        torch.optim.AdamW([p], lr=1e-3, fused=True).step()
        return optim
    except Exception as err:  # e.g. a torch without the fused CPU kernel
        log.warning("fused AdamW is not available on %s (%s): using adamw_torch", device, err)
        return "adamw_torch"


def find_resume(recipe: Recipe) -> str | None:
    """The checkpoint to continue from: recipe.resume is auto, yes, no, or a checkpoint directory.

    auto and yes take the newest *complete* checkpoint in output_dir (`checkpoints.problem`):
    a folder left half-written or half-deleted by a kill is skipped, and said so."""
    from medasr.train import checkpoints

    choice = str(recipe.resume).strip()
    if choice.lower() in ("no", "false", "none", ""):
        return None
    if choice.lower() in ("auto", "yes", "true", "last"):
        last, skipped = checkpoints.newest_complete(Path(recipe.output_dir))
        for folder, why in skipped:
            log.warning("resume: skipping %s, an incomplete checkpoint: %s", folder, why)
        if last is None and choice.lower() != "auto":
            raise UserError(f"--resume: no complete checkpoint-* directory in {recipe.output_dir} to resume from")
        if last is not None and skipped:
            log.warning("resume: continuing from %s", last)
        return str(last) if last is not None else None
    path = Path(choice)
    if not path.is_dir():
        raise UserError(f"--resume {choice}: no such checkpoint directory")
    if (why := checkpoints.problem(path)) is not None:
        raise UserError(f"--resume {choice}: not a complete Trainer checkpoint: {why}")
    return str(path)


def _size(spec):
    from medasr.model.build import SIZES, Size

    if isinstance(spec, str):
        if spec not in SIZES:
            raise RecipeError(f"size: unknown size {spec!r} (known: {', '.join(SIZES)}), or give a mapping of Size fields")
        return SIZES[spec]
    if isinstance(spec, dict):
        names = {f.name for f in dataclasses.fields(Size)}
        if set(spec) != names:
            raise RecipeError(f"size: a mapping needs exactly the Size fields {', '.join(sorted(names))}")
        return Size(**{k: int(v) for k, v in spec.items()})
    raise RecipeError(f"size: expected a name or a mapping, got {spec!r}")


# ---------------------------------------------------------------------------- model
def build_from_scratch(recipe: Recipe, texts: list[str], args) -> tuple[torch.nn.Module, object]:
    """A Qwen3-ASR of `recipe.size` with a BPE tokenizer trained on the training texts."""
    from transformers import AutoTokenizer

    from medasr.model import build as modelbuild

    tok_dir = Path(recipe.output_dir) / TOKENIZER_DIR
    # The main process trains and saves the tokenizer; other ranks (and resumed runs) load it.
    with args.main_process_first(desc="tokenizer"):
        if (tok_dir / "tokenizer.json").exists():
            tokenizer = AutoTokenizer.from_pretrained(str(tok_dir))
        else:
            tokenizer = modelbuild.train_tokenizer(texts, vocab_size=recipe.vocab_size)
            if args.should_save:
                tokenizer.save_pretrained(str(tok_dir))
    config = modelbuild.make_config(tokenizer, _size(recipe.size))
    model = modelbuild.build_model(config, seed=recipe.seed)
    return model.train(), modelbuild.make_processor(tokenizer)


def load_pretrained(recipe: Recipe) -> tuple[torch.nn.Module, object]:
    """Either checkpoint format via medasr.model.checkpoint.load, in fp32 master weights."""
    from medasr.model.checkpoint import load

    loaded = load(recipe.init, device="cpu", dtype="float32")
    return loaded.model.train(), loaded.processor


def apply_lora(model, lora: dict):
    try:
        from peft import LoraConfig, get_peft_model
    except ImportError:
        raise UserError(
            "the recipe asks for LoRA but peft is not installed: pip install peft "
            "(or remove `lora` from the recipe for full fine-tuning)"
        ) from None
    options = {"r": 16, "lora_alpha": 32, "lora_dropout": 0.05, "target_modules": ["q_proj", "k_proj", "v_proj", "o_proj"]}
    renames = {"alpha": "lora_alpha", "dropout": "lora_dropout"}
    for key, value in lora.items():
        options[renames.get(key, key)] = value
    model = get_peft_model(model, LoraConfig(**options))
    model.print_trainable_parameters()
    return model


# ---------------------------------------------------------------------------- training
def training_arguments(recipe: Recipe, precision: str, optim: str):
    from transformers import TrainingArguments

    every_epoch = recipe.eval_steps == 0
    return TrainingArguments(
        output_dir=recipe.output_dir,
        learning_rate=recipe.learning_rate,
        lr_scheduler_type=recipe.lr_scheduler,
        warmup_steps=recipe.warmup_ratio,  # a float < 1 is a ratio of the total steps
        weight_decay=recipe.weight_decay,
        max_grad_norm=recipe.max_grad_norm,
        per_device_train_batch_size=recipe.per_device_batch_size,
        per_device_eval_batch_size=recipe.eval_batch_size or recipe.per_device_batch_size,
        gradient_accumulation_steps=recipe.gradient_accumulation,
        num_train_epochs=recipe.epochs,
        max_steps=recipe.max_steps,
        bf16=precision == "bf16",
        fp16=precision == "fp16",
        use_cpu=not torch.cuda.is_available(),
        activation_checkpointing=recipe.gradient_checkpointing,  # transformers 5's name for it
        activation_checkpointing_kwargs={"use_reentrant": False} if recipe.gradient_checkpointing else None,
        optim=optim,
        seed=recipe.seed,
        eval_strategy="epoch" if every_epoch else "steps",
        save_strategy="epoch" if every_epoch else "steps",
        eval_steps=None if every_epoch else recipe.eval_steps,
        save_steps=None if every_epoch else recipe.eval_steps,
        save_total_limit=recipe.save_total_limit,
        load_best_model_at_end=True,
        metric_for_best_model="eval_loss",
        greater_is_better=False,
        prediction_loss_only=True,
        logging_steps=recipe.logging_steps,
        logging_first_step=True,
        dataloader_num_workers=recipe.num_workers,
        remove_unused_columns=False,  # the collator reads Example objects, not columns
        label_names=["labels"],
        report_to="none",
    )


def augment(recipe: Recipe) -> Augment:
    noise = tuple(float(v) for v in recipe.noise_dbfs) if recipe.noise_dbfs else None
    return Augment(recipe.edge_silence_s, noise, recipe.noise_fraction, recipe.max_duration_s, recipe.seed)


def _trainer_class():
    from transformers import Trainer

    class SpeechTrainer(Trainer):
        """The stock Trainer plus two options: length-grouped batches from known clip durations
        (the stock group_by_length reads dataset columns), and the auxiliary CTC loss."""

        group_by_length = False
        ctc_weight = 0.0
        ctc_blank = 0

        def _save_checkpoint(self, model, trial):
            # Closed by a marker once every process has written its part (train/checkpoints.py),
            # so that a checkpoint cut short by a kill is never mistaken for a complete one.
            from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

            from medasr.train import checkpoints

            folder = Path(self._get_output_dir(trial=trial)) / f"{PREFIX_CHECKPOINT_DIR}-{self.state.global_step}"
            if self.args.should_save:
                checkpoints.begin_save(folder)
            super()._save_checkpoint(model, trial)
            self.accelerator.wait_for_everyone()
            if self.args.should_save and folder.is_dir():
                checkpoints.mark_complete(folder)

        def _get_train_sampler(self, train_dataset=None):
            if not self.group_by_length:
                return super()._get_train_sampler(train_dataset)
            from transformers.trainer_pt_utils import LengthGroupedSampler

            dataset = train_dataset if train_dataset is not None else self.train_dataset
            lengths = [int(100 * (u.duration or 0)) for u in dataset.utterances]
            return LengthGroupedSampler(self.args.train_batch_size * self.args.gradient_accumulation_steps, lengths=lengths)

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            ctc_labels = inputs.pop("ctc_labels", None)
            loss, outputs = super().compute_loss(model, inputs, return_outputs=True, num_items_in_batch=num_items_in_batch)
            # Training only: validation loss stays the plain answer loss, comparable across recipes.
            if self.ctc_weight and ctc_labels is not None and model.training:
                ctc = ctc_loss(
                    self.accelerator.unwrap_model(model), inputs["input_ids"], outputs.audio_hidden_states, ctc_labels, self.ctc_blank
                )
                # The answer loss is already normalised over the accumulated batch; a per-batch mean is not.
                loss = loss + self.ctc_weight * ctc / self.args.gradient_accumulation_steps
                self._ctc_logged = getattr(self, "_ctc_logged", []) + [ctc.item()]
            return (loss, outputs) if return_outputs else loss

        def log(self, logs, *args, **kwargs):
            # The logged training loss includes the weighted CTC term; show the CTC loss beside it.
            if "loss" in logs and getattr(self, "_ctc_logged", None):
                logs["ctc_loss"] = round(sum(self._ctc_logged) / len(self._ctc_logged), 4)
                self._ctc_logged = []
            super().log(logs, *args, **kwargs)

    return SpeechTrainer


def ctc_loss(model, input_ids: torch.Tensor, audio_embeds: torch.Tensor, ctc_labels: torch.Tensor, blank: int) -> torch.Tensor:
    """CTC of the text over the projected audio embeddings, scored by the decoder's own final norm
    and (tied) output head; `blank` is a token no text contains (the tokenizer's padding token).

    A training aid for models trained from scratch (joint CTC/attention training): it teaches the
    encoder token-aligned embeddings early, so the decoder finds the audio instead of first
    settling into a text-only language model. It adds no parameters: the checkpoint stays a plain
    Qwen3-ASR.
    """
    import torch.nn.functional as F

    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    config = base.config
    norm = base.model.language_model.norm
    counts = (input_ids == config.audio_token_id).sum(dim=1)
    logits = base.lm_head(norm(audio_embeds)).float().log_softmax(-1)
    pieces = torch.split(logits, counts.tolist())
    log_probs = torch.nn.utils.rnn.pad_sequence(pieces)  # (T, N, V)
    lengths = (ctc_labels != -100).sum(dim=1)
    targets = ctc_labels.clamp(min=0)
    return F.ctc_loss(log_probs, targets, counts, lengths, blank=blank, reduction="mean", zero_infinity=True)


def train(recipe: Recipe) -> TrainResult:
    from medasr.train.collator import Collator

    if recipe.threads:
        torch.set_num_threads(recipe.threads)
    if not recipe.train:
        raise RecipeError("the recipe has no training data: set `train` to one or more datasets")
    if not recipe.valid:
        raise RecipeError("the recipe has no validation data: set `valid` (best-checkpoint selection needs it)")
    precision = resolve_precision(recipe.precision)
    optim = resolve_optim(recipe.optim)
    args = training_arguments(recipe, precision, optim)
    out = Path(recipe.output_dir)

    # ---- data
    report = DataReport()
    train_sources = parse_sources(recipe.train, "train")
    valid_sources = parse_sources(recipe.valid, "eval")
    train_parts = read_sources(train_sources, recipe.max_duration_s, report)
    valid_parts = read_sources(valid_sources, recipe.max_duration_s, report)
    train_utts = mix(train_parts, [s.weight for s in train_sources], seed=recipe.seed)
    if recipe.concat_fraction:
        extra = compounds(train_utts, round(recipe.concat_fraction * len(train_utts)), recipe.max_duration_s, recipe.seed)
        report.kept["compounds"] = len(extra)
        report.hours["compounds"] = sum(c.duration for c in extra) / 3600
        train_utts = train_utts + extra
    valid_utts = [u for part in valid_parts for u in part]
    log.info("data: %s", report.summary())

    # ---- model
    if recipe.init == "scratch":
        model, processor = build_from_scratch(recipe, [u.text for part in train_parts for u in part], args)
    else:
        model, processor = load_pretrained(recipe)
    if recipe.lora:
        model = apply_lora(model, recipe.lora)
    tokenizer = processor.tokenizer
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else model.config.pad_token_id

    resume = find_resume(recipe)
    resolved = {"precision": precision, "optim": optim, "resume_from": resume, "data": report.summary(),
                "train_clips": len(train_utts), "valid_clips": len(valid_utts),
                "parameters": sum(p.numel() for p in model.parameters())}
    if args.should_save:
        write_recipe(recipe, out / "recipe.yaml", extra=resolved)
        (out / "data_report.json").write_text(json.dumps(dataclasses.asdict(report), indent=2), encoding="utf-8")
    if args.process_index == 0:
        print(f"medasr train: {report.summary()}", flush=True)

    trainer_class = _trainer_class()
    trainer_class.group_by_length = recipe.group_by_length
    trainer_class.ctc_weight = recipe.ctc_weight
    trainer_class.ctc_blank = pad_id
    trainer = trainer_class(
        model=model,
        args=args,
        train_dataset=SpeechDataset(train_utts, processor, augment(recipe)),
        eval_dataset=SpeechDataset(valid_utts, processor),
        data_collator=Collator(pad_id, recipe.padding_side, ctc=recipe.ctc_weight > 0),
        processing_class=processor,  # checkpoints carry the tokenizer, feature extractor and template
    )
    start = time.perf_counter()
    trainer.train(resume_from_checkpoint=resume)
    seconds = time.perf_counter() - start
    state = trainer.state

    export = None
    if trainer.is_world_process_zero():
        export = export_best(trainer.model, processor, recipe, resolved)
        summary = {
            "global_step": state.global_step,
            "best_checkpoint": state.best_model_checkpoint,
            "best_eval_loss": state.best_metric,
            "train_seconds_this_run": round(seconds, 1),
            "export_dir": str(export),
            "log_history": state.log_history,
        }
        (out / "train_summary.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")
    return TrainResult(out, export, state.best_model_checkpoint, state.best_metric, state.global_step, seconds, report)


def export_best(model, processor, recipe: Recipe, resolved: dict) -> Path:
    """The best model (the Trainer reloads it at the end) as a complete transformers checkpoint,
    plus the original qwen-asr layout on request; the recipe goes beside the weights."""
    from medasr.model.checkpoint import save_original, save_transformers

    if recipe.lora:
        model = model.merge_and_unload()  # a plain Qwen3-ASR again: loadable without peft
    model = model.to("cpu", torch.float32).eval()
    # The Trainer turns the KV cache off for gradient checkpointing; inference wants it back.
    for cfg in (model.config, getattr(model.config, "text_config", None)):
        if cfg is not None and hasattr(cfg, "use_cache"):
            cfg.use_cache = True
    dst = recipe.effective_export_dir()
    dst.mkdir(parents=True, exist_ok=True)
    save_transformers(model, processor, dst)
    write_recipe(recipe, dst / "recipe.yaml", extra=resolved)
    if recipe.export_original:
        original = dst.with_name(dst.name + "-original")
        save_original(model, processor, original)
        write_recipe(recipe, original / "recipe.yaml", extra=resolved)
    print(f"medasr train: best model written to {dst}", flush=True)
    return dst
