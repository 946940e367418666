"""Train a forced aligner on synthetic speech with exact word times: the demo aligner.

Reads top to bottom: recipe -> model (from the demo ASR model) -> encoder outputs of 8 s windows
of synthetic speech, made once -> training pieces of 1-4 windows -> loop -> export.

Data (`medasr.train.aligner_data`): template sentences of the synth train split, minus every
sentence a held-out template could make, spoken by libespeak-ng with word events (exact word
times), `windows_per_speaker` windows per voice/variant/speed/pitch draw, noise on a share of the
speakers. A training piece is a run of 1-4 windows (8-32 s) of one speaker, so it starts and ends
in silence like the pieces long recordings are cut into.

Model. A `Qwen3ASRForTokenClassification` whose audio encoder, projector, embeddings and first
`decoder_layers` decoder layers start from the demo ASR model (which already maps audio to
tokens); the head over `classes` bins of `segment_ms` is new. The encoder stays frozen (and has
no dropout), so its output for a window never changes: it is computed once per window and kept
in OUTPUT_DIR/cache; the projector, decoder and head train on it. The input is the official one
(the audio placeholder, each unit and two `<timestamp>` slots); targets are each word's start and
end bin (rounded), cross-entropy at the slots only.

One caveat of reusing window encodings: the log-mel floor (clip maximum - 8, in log10 units) of a
multi-window piece is each window's own rather than the piece's, which changes silent frames
only; single windows are exactly what inference computes.

    nice -n 10 python -m medasr.train.aligner recipes/demo-aligner.yaml    # resumes if interrupted
"""

from __future__ import annotations

import dataclasses
import json
import logging
import random
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
import yaml

from medasr.errors import UserError
from medasr.train.aligner_data import WINDOW_S, WINDOW_TOKENS, Spoken, heldout_templates, speak_windows, training_pool

log = logging.getLogger(__name__)
IGNORE = -100


@dataclass
class AlignerRecipe:
    # ---- data
    speakers: int = 60  # voice/variant/speed/pitch draws
    windows_per_speaker: int = 10  # 8 s windows each: pieces of 1-4 consecutive windows
    max_piece_windows: int = 4  # 32 s: every bin of the head gets targets
    pool_sentences: int = 6000  # distinct sentences drawn from the synth train split
    pause_s: tuple[float, float] = (0.3, 2.0)
    edge_silence_s: float = 1.0
    noise_dbfs: tuple[float, float] = (-75.0, -45.0)
    noise_fraction: float = 0.5
    speeds: tuple[int, int] = (140, 185)
    pitches: tuple[int, int] = (35, 65)
    heldout_every: int = 5  # templates 4, 9, 14, ... of synth.TEMPLATES are held out

    # ---- model
    init: str = "demo"  # the ASR checkpoint the encoder, projector, embeddings and decoder start from
    decoder_layers: int = 2
    freeze_encoder: bool = True  # keep the ASR model's audio encoder as it is (half the cost of a step)
    classes: int = 400  # time bins: 32 s at 80 ms, above the 30 s piece limit
    segment_ms: float = 80.0

    # ---- optimisation
    learning_rate: float = 5e-4
    slot_weight: float = 1.0  # weight of the word-time loss; 0 with position_weight > 0: a stage that only learns audio positions
    crop_fraction: float = 0.0  # share of pieces cut to a random run of whole 1 s chunks (any length, any lead; see _crop)
    sigma_bins: float = 0.0  # > 0: targets spread as a Gaussian of this width (bins) around the true bin
    position_weight: float = 0.0  # > 0: also predict every audio token's own bin (see _loss)
    attention_weight: float = 0.0  # > 0: guide one attention head to the audio of each slot's time (see _loss)
    warmup_ratio: float = 0.05
    batch_size: int = 8
    epochs: float = 1.0
    seed: int = 0
    threads: int | None = None

    # ---- checkpoints, outputs
    save_steps: int = 100
    logging_steps: int = 20
    cache_dir: str | None = None  # encoded windows (default OUTPUT_DIR/cache): valid for every stage, the encoder is frozen
    output_dir: str = "runs/demo-aligner"
    export_dir: str = "src/medasr/assets/demo-aligner"
    export_dtype: str = "float16"  # halves the shipped file; loaded as float32
    heldout_templates: list[str] = field(default_factory=list)  # filled in by the run (written with the export)

    @classmethod
    def from_yaml(cls, path: str | Path, overrides: dict | None = None) -> AlignerRecipe:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
        data.update(overrides or {})
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise UserError(f"{path}: unknown recipe keys {unknown}; known: {sorted(names)}")
        recipe = cls()
        for f in dataclasses.fields(cls):
            if f.name in data:
                default = getattr(recipe, f.name)
                value = data[f.name]
                if isinstance(default, tuple):
                    value = tuple(type(d)(v) for d, v in zip(default, value))
                elif isinstance(default, (int, float)) and not isinstance(default, bool) and value is not None:
                    value = type(default)(value)
                setattr(recipe, f.name, value)
        return recipe


# ---------------------------------------------------------------------------- model
def init_model(recipe: AlignerRecipe):
    """The starting aligner: a trained aligner (`init` is one: a later stage), or one built on an
    ASR model (its encoder, projector, embeddings and first decoder layers; a new head)."""
    from medasr.model.aligner import load_aligner
    from medasr.model.checkpoint import is_aligner, resolve

    if is_aligner(resolve(recipe.init)):
        aligner = load_aligner(recipe.init, device="cpu", dtype="float32")
        layers = aligner.model.config.text_config.num_hidden_layers
        if (layers, aligner.num_bins, aligner.segment_ms) != (recipe.decoder_layers, recipe.classes, recipe.segment_ms):
            raise UserError(
                f"{recipe.init} has {layers} decoder layers and {aligner.num_bins} bins of {aligner.segment_ms:g} ms; "
                "the recipe asks for others"
            )
        log.info("aligner: continuing from %s", aligner.path)
        return aligner.model.float().train(), aligner.processor
    return init_from_asr(recipe)


def init_from_asr(recipe: AlignerRecipe):
    """An aligner whose encoder, projector, embeddings and first decoder layers are the ASR model's."""
    from transformers import Qwen3ASRConfig, Qwen3ASRForTokenClassification

    from medasr.model.build import make_aligner_processor
    from medasr.model.checkpoint import load

    asr = load(recipe.init, device="cpu", dtype="float32")
    d = asr.model.config.to_dict()
    for key in ("id2label", "label2id", "transformers_version", "architectures"):
        d.pop(key, None)
    text = d["text_config"]
    if not 1 <= recipe.decoder_layers <= text["num_hidden_layers"]:
        raise UserError(f"decoder_layers must be 1-{text['num_hidden_layers']} for {recipe.init}")
    text["num_hidden_layers"] = recipe.decoder_layers
    text["layer_types"] = text["layer_types"][: recipe.decoder_layers]
    text["tie_word_embeddings"] = False
    config = Qwen3ASRConfig(
        **{**d, "tie_word_embeddings": False},
        num_labels=recipe.classes,
        timestamp_segment_time=recipe.segment_ms,
        architectures=["Qwen3ASRForTokenClassification"],
    )
    torch.manual_seed(recipe.seed)
    model = Qwen3ASRForTokenClassification(config)
    source = asr.model.state_dict()
    state = model.state_dict()
    copied = [k for k in state if k in source and source[k].shape == state[k].shape]
    model.load_state_dict({**state, **{k: source[k] for k in copied}})
    log.info("aligner: %d of %d tensors from %s; new: %s", len(copied), len(state), recipe.init, sorted(set(state) - set(copied)))
    return model, make_aligner_processor(asr.processor.tokenizer, recipe.segment_ms)


# ---------------------------------------------------------------------------- window cache
def _speaker(recipe: AlignerRecipe, k: int, pool: list[str]) -> list[Spoken]:
    """Speaker k's windows, made from (seed, k) alone: the same on every run and after a resume."""
    from medasr.synth.sentences import DEFAULT_VOICES, VARIANTS

    rng = random.Random(f"aligner:{recipe.seed}:{k}")
    voice = rng.choice(DEFAULT_VOICES) + rng.choice(VARIANTS)
    noise = recipe.noise_dbfs if rng.random() < recipe.noise_fraction else None
    return speak_windows(
        pool, rng, recipe.windows_per_speaker, voice, rng.randint(*recipe.speeds), rng.randint(*recipe.pitches),
        recipe.pause_s, recipe.edge_silence_s, noise,
    )


def _encode_window(model, processor, window: Spoken) -> dict:
    """The frozen encoder's output for one window, and its units with their times."""
    from medasr.pipeline.engine import clip_features

    mel, n = clip_features(processor.feature_extractor, window.samples)
    mask = torch.zeros(1, mel.shape[-1], dtype=torch.long)
    mask[0, :n] = 1
    with torch.no_grad():
        hidden = model.model.audio_tower(input_features=mel[None], input_features_mask=mask).last_hidden_state
    units = processor.split_words_for_alignment(window.text, "English")
    if hidden.shape[0] != WINDOW_TOKENS or len(units) != len(window.times):
        raise UserError(f"window of {hidden.shape[0]} tokens, {len(units)} units for {len(window.times)} timed words")
    return {"audio": hidden.to(torch.float16), "units": units, "times": window.times}


def build_cache(recipe: AlignerRecipe, model, processor, pool: list[str]) -> list[list[dict]]:
    """Every speaker's encoded windows, made once; one file per speaker, so an interrupted run resumes."""
    cache = Path(recipe.cache_dir or Path(recipe.output_dir) / "cache")
    cache.mkdir(parents=True, exist_ok=True)
    speakers, started = [], time.time()
    for k in range(recipe.speakers):
        path = cache / f"speaker-s{recipe.seed}-{k:04d}.pt"  # made from (seed, k) alone
        if not path.exists():
            windows = [_encode_window(model, processor, w) for w in _speaker(recipe, k, pool)]
            torch.save(windows, path.with_suffix(".partial"))
            path.with_suffix(".partial").replace(path)
            if (k + 1) % 5 == 0:
                log.info("encoded %d of %d speakers (%.0f s)", k + 1, recipe.speakers, time.time() - started)
        speakers.append(torch.load(path))
    return speakers


def pieces(speakers: list[list[dict]], max_windows: int) -> list[tuple[int, int, int]]:
    """Every run of 1..max_windows consecutive windows of one speaker: (speaker, first, count)."""
    return [(k, a, n) for k, ws in enumerate(speakers) for n in range(1, max_windows + 1) for a in range(len(ws) - n + 1)]


def piece_example(speakers, piece: tuple[int, int, int], tokenizer, recipe: AlignerRecipe, rng: random.Random | None = None) -> dict:
    """Input ids (the official aligner prompt), targets and encoder output of one piece; with `rng`,
    a share `crop_fraction` of pieces is cropped (see `_crop`)."""
    from medasr.model.build import TIMESTAMP
    from medasr.model.prompt import AUDIO_END, AUDIO_PAD, AUDIO_START

    k, a, n = piece
    windows = speakers[k][a : a + n]
    units, times = [], []
    for i, w in enumerate(windows):
        units += w["units"]
        times += [(i * WINDOW_S + s, i * WINDOW_S + e) for s, e in w["times"]]
    audio = torch.cat([w["audio"] for w in windows])
    if rng is not None and rng.random() < recipe.crop_fraction:
        audio, units, times = _crop(audio, units, times, rng)
    bins = [min(recipe.classes - 1, round(t * 1000 / recipe.segment_ms)) for pair in times for t in pair]
    text = AUDIO_START + AUDIO_PAD * len(audio) + AUDIO_END + "".join(u + TIMESTAMP * 2 for u in units)
    ids = torch.tensor(tokenizer(text, add_special_tokens=False)["input_ids"])
    labels = torch.full_like(ids, IGNORE)
    labels[ids == tokenizer.convert_tokens_to_ids(TIMESTAMP)] = torch.tensor(bins)
    return {"input_ids": ids, "labels": labels, "audio": audio}


def _crop(audio: torch.Tensor, units: list[str], times: list[tuple[float, float]], rng: random.Random):
    """The piece cut to whole 1 s chunks [c0, c1) that no word straddles, keeping the words inside.

    Without it every training piece is 8, 16, 24 or 32 s long and starts with at most
    `edge_silence_s` of silence, and the aligner learns those shapes instead of looking at the
    audio (a 4 s clip padded to 8 s got ~2.5x smaller errors; speech moved 2 s later moved its
    times by half that). Cropped pieces have any length and lead. Approximation: the cached
    encoder output of a chunk saw its whole 8 s window, where inference on the cropped clip would
    let it attend to the kept chunks only."""
    chunks = len(audio) // ENCODER_CHUNK_TOKENS
    free = [c for c in range(chunks + 1) if not any(s - 0.05 < c < e + 0.05 for s, e in times)]
    starts = [c for c in free if any(s >= c for s, _ in times)]
    if not starts:
        return audio, units, times
    c0 = rng.choice(starts)
    ends = [c for c in free if c > c0 and any(s >= c0 and e <= c for s, e in times)]
    c1 = rng.choice(ends)
    keep = [i for i, (s, e) in enumerate(times) if s >= c0 and e <= c1]
    cut = audio[c0 * ENCODER_CHUNK_TOKENS : c1 * ENCODER_CHUNK_TOKENS]
    return cut, [units[i] for i in keep], [(times[i][0] - c0, times[i][1] - c0) for i in keep]


def _batch(examples: list[dict], pad_id: int) -> dict[str, torch.Tensor]:
    n, width = len(examples), max(len(e["input_ids"]) for e in examples)
    ids = torch.full((n, width), pad_id, dtype=torch.long)
    labels = torch.full((n, width), IGNORE, dtype=torch.long)
    attention = torch.zeros((n, width), dtype=torch.long)
    for i, e in enumerate(examples):  # right padding: each row computes what it computes alone
        k = len(e["input_ids"])
        ids[i, :k], labels[i, :k], attention[i, :k] = e["input_ids"], e["labels"], 1
    return {"input_ids": ids, "labels": labels, "attention_mask": attention, "audio": torch.cat([e["audio"] for e in examples])}


ENCODER_CHUNK_TOKENS = 13  # audio tokens per 1 s chunk of the encoder (100 mel frames, 8x downsampled)


def audio_token_bins(n_tokens: int) -> torch.Tensor:
    """The 80 ms bin holding each audio token's centre: 13 tokens per 1 s chunk, each 8 mel frames
    (80 ms) of it, the 13th the last 4 frames."""
    j = torch.arange(n_tokens)
    chunk, offset = j // ENCODER_CHUNK_TOKENS, j % ENCODER_CHUNK_TOKENS
    centre_ms = 1000 * chunk + 80 * offset + torch.where(offset < 12, 40, 20)
    return torch.div(centre_ms, 80, rounding_mode="floor")


def _loss(
    model, batch: dict, sigma_bins: float = 0.0, position_weight: float = 0.0, attention_weight: float = 0.0, slot_weight: float = 1.0
) -> torch.Tensor:
    """The aligner's forward with the cached encoder output in place of the encoder; cross-entropy
    at the `<timestamp>` slots, against the true bin or (sigma_bins > 0) a Gaussian around it, which
    also rewards near misses (the bins are ordered).

    Two training aids, neither adding a parameter (the checkpoint stays a plain aligner). Without
    them the decoder never learns to look at the audio: RoPE gives it relative positions only and
    the encoder positions within 1 s chunks only, so it placed words by their order and length
    instead (a first run did: shifting the speech by 2 s hardly moved its times).
    - position_weight: the same loss at every audio token against the bin it starts in, so that
      each audio token's absolute time becomes readable by the head;
    - attention_weight: head 0 of the last decoder layer is asked to attend, from each slot, to the
      audio tokens within one bin of the slot's true time (guided attention, as TTS aligners use),
      so that the slot can read that time there."""
    embeds = model.get_input_embeddings()(batch["input_ids"])
    audio = model.model.multi_modal_projector(batch["audio"].float())
    is_audio = batch["input_ids"] == model.config.audio_token_id
    embeds = embeds.masked_scatter(is_audio[..., None], audio.to(embeds.dtype))
    out = model(inputs_embeds=embeds, attention_mask=batch["attention_mask"], output_attentions=attention_weight > 0)
    logits = out.logits
    mask = batch["labels"] != IGNORE
    loss = slot_weight * _ce(logits[mask], batch["labels"][mask], sigma_bins)
    if position_weight > 0:
        targets = torch.cat([audio_token_bins(int(n)) for n in is_audio.sum(1)]).clamp(max=logits.shape[-1] - 1)
        loss = loss + position_weight * _ce(logits[is_audio], targets, sigma_bins)
    if attention_weight > 0:
        attn = out.attentions[-1][:, 0]  # (batch, query, key) of head 0, last layer
        key_bins = torch.full(is_audio.shape, -10, dtype=torch.long)  # each audio key's bin (-10: not audio)
        for row in range(key_bins.shape[0]):
            key_bins[row, is_audio[row]] = audio_token_bins(int(is_audio[row].sum()))
        near = (key_bins[:, None, :] - batch["labels"][:, :, None]).abs() <= 1  # (batch, query, key)
        on_target = (attn * near).sum(-1)[mask]
        loss = loss + attention_weight * -torch.log(on_target + 1e-6).mean()
    return loss


def _ce(logits: torch.Tensor, target: torch.Tensor, sigma_bins: float) -> torch.Tensor:
    logp = torch.log_softmax(logits.float(), dim=-1)
    if sigma_bins <= 0:
        return -logp.gather(1, target[:, None]).mean()
    bins = torch.arange(logp.shape[-1], dtype=torch.float32)
    soft = torch.softmax(-((bins[None, :] - target[:, None].float()) ** 2) / (2 * sigma_bins**2), dim=-1)
    return -(soft * logp).sum(-1).mean()


def _plan(all_pieces: list, epochs: int, batch_size: int, seed: int) -> list[list[tuple]]:
    """Shuffled batches of pieces with the same window count (little padding), epoch after epoch."""
    rng = random.Random(seed)
    plan = []
    for _ in range(epochs):
        order = list(all_pieces)
        rng.shuffle(order)
        by_size: dict[int, list] = {}
        for piece in order:
            by_size.setdefault(piece[2], []).append(piece)
        batches = [g[i : i + batch_size] for g in by_size.values() for i in range(0, len(g), batch_size)]
        rng.shuffle(batches)
        plan += batches
    return plan


# ---------------------------------------------------------------------------- run
def train_aligner(recipe: AlignerRecipe, export_only: bool = False) -> Path:
    """Train (resuming from OUTPUT_DIR/last.pt), then export to recipe.export_dir.
    `export_only`: export the last checkpoint as it is (a run stopped early)."""
    if recipe.threads:
        torch.set_num_threads(recipe.threads)
    if not recipe.freeze_encoder:
        raise UserError("this trainer keeps the encoder frozen (its outputs are cached): set freeze_encoder: true")
    recipe.heldout_templates = recipe.heldout_templates or heldout_templates(recipe.heldout_every)
    out = Path(recipe.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "recipe.yaml").write_text(yaml.safe_dump(_plain(recipe), sort_keys=False), encoding="utf-8")
    model, processor = init_model(recipe)
    if recipe.attention_weight > 0:
        model.set_attn_implementation("eager")  # attention weights for the guide; the same function as sdpa
    for p in model.model.audio_tower.parameters():
        p.requires_grad_(False)
    pool = training_pool(recipe.pool_sentences, recipe.seed, recipe.heldout_templates)
    log.info("training pool: %d sentences (held-out templates: %d)", len(pool), len(recipe.heldout_templates))
    if export_only:
        state = torch.load(out / "last.pt", weights_only=False)
        model.load_state_dict(state["model"])
        log.info("exporting step %d", state["step"])
        export(model.eval(), processor, recipe, state["seconds"], state["step"])
        return Path(recipe.export_dir)
    speakers = build_cache(recipe, model, processor, pool)
    all_pieces = pieces(speakers, recipe.max_piece_windows)
    plan = _plan(all_pieces, max(1, round(recipe.epochs)), recipe.batch_size, recipe.seed)
    log.info("%d windows, %d pieces, %d steps", sum(map(len, speakers)), len(all_pieces), len(plan))
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=recipe.learning_rate, weight_decay=0.0)
    warmup = max(1, int(recipe.warmup_ratio * len(plan)))
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min((s + 1) / warmup, max(0.0, (len(plan) - s) / max(1, len(plan) - warmup)))
    )
    step, spent = 0, 0.0
    last = out / "last.pt"
    if last.exists():
        state = torch.load(last, weights_only=False)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        schedule.load_state_dict(state["schedule"])
        step, spent = state["step"], state["seconds"]
        log.info("resuming at step %d of %d", step, len(plan))
    model.train()
    started, running = time.time() - spent, []
    pad = processor.tokenizer.pad_token_id
    while step < len(plan):
        crop_rng = random.Random(f"crop:{recipe.seed}:{step}")  # the same pieces after a resume
        batch = [piece_example(speakers, piece, processor.tokenizer, recipe, crop_rng) for piece in plan[step]]
        loss = _loss(model, _batch(batch, pad), recipe.sigma_bins, recipe.position_weight, recipe.attention_weight, recipe.slot_weight)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        schedule.step()
        optimizer.zero_grad(set_to_none=True)
        running.append(float(loss.detach()))
        step += 1
        if step % recipe.logging_steps == 0 or step == len(plan):
            log.info("step %d/%d loss %.3f lr %.2e (%.0f s)", step, len(plan), sum(running) / len(running), schedule.get_last_lr()[0], time.time() - started)
            running = []
        if step % recipe.save_steps == 0 or step == len(plan):
            state = {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "schedule": schedule.state_dict(),
                     "step": step, "seconds": time.time() - started}  # fmt: skip
            torch.save(state, last.with_suffix(".partial"))
            last.with_suffix(".partial").replace(last)
    model.eval()
    export(model, processor, recipe, time.time() - started, step)
    return Path(recipe.export_dir)


def export(model, processor, recipe: AlignerRecipe, train_seconds: float, steps: int) -> None:
    """The trained aligner in the transformers format, weights in `export_dtype`, with its recipe."""
    from medasr.model.aligner import save_aligner_transformers

    dst = Path(recipe.export_dir)
    if dst.exists():
        shutil.rmtree(dst)
    dst.mkdir(parents=True)
    dtype = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32}[recipe.export_dtype]
    model = model.to(dtype).eval()
    save_aligner_transformers(model, processor, dst)
    config = json.loads((dst / "config.json").read_text(encoding="utf-8"))
    config["dtype"] = "float32"  # stored in float16 to halve the file; loaded and run in float32
    (dst / "config.json").write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    import hashlib

    from medasr.model.checkpoint import resolve

    init = resolve(recipe.init) / "model.safetensors"
    meta = {
        **_plain(recipe),
        "init_sha256": hashlib.sha256(init.read_bytes()).hexdigest() if init.exists() else None,  # the ASR model it started from
        "trained_steps": steps,
        "train_seconds": round(train_seconds, 1),
    }
    (dst / "recipe.yaml").write_text(yaml.safe_dump(meta, sort_keys=False), encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    """`python -m medasr.train.aligner RECIPE.yaml [--set KEY=VALUE ...]`: train, resume, export."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m medasr.train.aligner", description=main.__doc__)
    parser.add_argument("recipe", help="YAML recipe (recipes/demo-aligner.yaml)")
    parser.add_argument("--export-only", action="store_true", help="export the last checkpoint without training further")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a recipe field (YAML value)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    overrides = {}
    for item in args.set:
        key, _, value = item.partition("=")
        overrides[key.strip()] = yaml.safe_load(value)
    print(train_aligner(AlignerRecipe.from_yaml(args.recipe, overrides), export_only=args.export_only))
    return 0


def _plain(recipe: AlignerRecipe) -> dict:
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in dataclasses.asdict(recipe).items()}


if __name__ == "__main__":
    raise SystemExit(main())
