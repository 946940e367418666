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

import contextlib
import math
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from medasr.defaults import MAX_CONTEXT_TOKENS
from medasr.errors import BadContext, ContextTooLong
from medasr.model.checkpoint import Loaded
from medasr.model.prompt import ASR_TEXT, audio_token_count, parse_answer, prompt_text
from medasr.records import TokenLogprob

MAX_NEW_TOKENS_CAP = 512  # the official transformers backend's limit
TOKENS_PER_SECOND = 20  # generous for English speech, also for small test vocabularies
MIN_NEW_TOKENS = 32
DECODE_MODES = ("continuous", "static")
# Mel frames (100 per second) the audio encoder takes in one call. Its convolutions run every 1 s
# chunk of a call at once, and their first layer's output is large (0.6B / 1.7B: 480 channels x 64
# x 50 floats, 6 MB per chunk, twice that with its activation; 16 clips of 30 s in one call held
# ~6 GB). On a CPU one 8 s window per call costs no speed and bounds that to ~0.1 GB; a GPU wants
# its calls large.
ENCODE_FRAMES = {"cpu": 800, "cuda": 24000}


def default_max_new_tokens(duration_s: float) -> int:
    """A token budget that grows with the audio, so a looping model stops early on short clips."""
    return min(MAX_NEW_TOKENS_CAP, MIN_NEW_TOKENS + math.ceil(TOKENS_PER_SECOND * duration_s))


@dataclass
class Request:
    samples: np.ndarray  # mono float32 at 16 kHz
    context: str | None = None
    language: str | None = "English"  # None: the model detects the language
    max_new_tokens: int | None = None  # None: default_max_new_tokens(duration)
    temperature: float = 0.0  # 0: greedy; above: sampled from the model's distribution at that temperature
    seed: int | None = None  # for sampling; None: a fresh seed

    @property
    def duration(self) -> float:
        return len(self.samples) / 16000


@dataclass
class Result:
    text: str
    language: str
    raw: str  # the decoded answer before parsing
    n_tokens: int  # generated tokens, end of turn included
    hit_token_cap: bool
    token_ids: list[int] = field(default_factory=list)  # generated ids, end of turn included
    logprobs: list[float] = field(default_factory=list)  # the model's log-probability of each (temperature 1)
    no_speech_prob: float | None = None  # the model's probability of answering `language None`
    prompt_tokens: int = 0
    text_tokens: list[TokenLogprob] = field(default_factory=list)  # the transcript's own tokens and scores
    text_token_ids: list[int] = field(default_factory=list)

    @property
    def finish_reason(self) -> str:
        return "length" if self.hit_token_cap else "stop"

    @property
    def avg_logprob(self) -> float | None:
        return sum(self.logprobs) / len(self.logprobs) if self.logprobs else None


@dataclass
class EngineStats:
    """What an engine has computed so far (benchmarks read differences of these).

    computed / useful: token-rows the model ran against those that carried a real token (a
    prompt token or a generated one); padding and finished rows kept in a batch are the gap.
    """

    computed: int = 0
    useful: int = 0
    prefills: int = 0  # forwards that encoded audio and prompts
    steps: int = 0  # decode steps
    tokens: int = 0  # tokens generated
    model_s: float = 0.0  # wall time inside the model's forwards (CUDA synchronised when timing)

    @property
    def row_utilization(self) -> float:
        return self.useful / self.computed if self.computed else 1.0

    @property
    def model_calls(self) -> int:
        return self.prefills + self.steps

    def since(self, before: EngineStats) -> EngineStats:
        return EngineStats(*(getattr(self, f) - getattr(before, f) for f in
                             ("computed", "useful", "prefills", "steps", "tokens", "model_s")))  # fmt: skip


@dataclass
class Features:
    mel: torch.Tensor  # (128, frames padded to a multiple of 100)
    n_frames: int  # valid frames

    @property
    def n_audio_tokens(self) -> int:
        return audio_token_count(self.n_frames)


def clip_features(feature_extractor, samples: np.ndarray, device: torch.device | str = "cpu") -> tuple[torch.Tensor, int]:
    """Log-mel of one clip on its own (batch padding would alter its STFT tail) and its valid
    frame count, computed on `device`. Training computes features here too, so it sees what
    inference sees."""
    out = feature_extractor(
        samples, sampling_rate=16000, padding="longest", return_attention_mask=True, return_tensors="pt",
        device=str(device),
    )  # fmt: skip
    return out["input_features"][0], int(out["attention_mask"][0].sum())


def _byte_level_alphabet() -> dict[str, int]:
    """Byte-level BPE's characters -> the bytes they stand for (the GPT-2 scheme Qwen's tokenizers
    use): printable Latin-1 bytes stand for themselves, every other byte for chr(256 + k), k
    counting those bytes in order."""
    printable = [*range(0x21, 0x7F), *range(0xA1, 0xAD), *range(0xAE, 0x100)]
    char = {b: chr(b) for b in printable}
    for k, b in enumerate(b for b in range(256) if b not in char):
        char[b] = chr(256 + k)
    return {c: b for b, c in char.items()}


_BYTE_OF = _byte_level_alphabet()


class Engine:
    """The model, its processor and the token bookkeeping around them. Decoding runs in
    `medasr.pipeline.decoder.Decoder` (continuous batching), driven by a `Scheduler`
    (`medasr.pipeline.scheduler.run_requests` for a plain list of requests); the engine knows
    nothing of either."""

    def __init__(self, loaded: Loaded, batch_size: int = 16, max_batch_audio_s: float = 600.0, mode: str = "continuous",
                 max_context_tokens: int = MAX_CONTEXT_TOKENS):  # fmt: skip
        if mode not in DECODE_MODES:
            raise ValueError(f"unknown decode mode {mode!r}: use {', '.join(DECODE_MODES)}")
        if max_context_tokens < 0:
            raise ValueError("max_context_tokens must not be negative")
        self.max_context_tokens = max_context_tokens  # the one context limit (check_context)
        self._contexts_ok: dict[str, None] = {}  # contexts already checked (a live stream repeats its own)
        self._contexts_lock = threading.Lock()
        self.loaded = loaded
        self.model = loaded.model
        self.processor = loaded.processor
        self.tokenizer = loaded.processor.tokenizer
        self.feature_extractor = loaded.processor.feature_extractor
        self.device = loaded.device
        self.dtype = loaded.dtype
        self.batch_size = batch_size
        self.max_batch_audio_s = max_batch_audio_s
        self.mode = mode
        self.compile = False  # CUDA: compile the decode step into a CUDA graph (static shapes)
        self.stats = EngineStats()
        self.timing = False  # synchronise CUDA around forwards so stats.model_s is exact (benchmarks)
        # Benchmarks with random weights (which never end by themselves): each answer is made exactly
        # forced_length(audio seconds) tokens long, the end of turn suppressed before that.
        self.forced_length: Callable[[float], int] | None = None
        self.pad_id = self.tokenizer.pad_token_id
        if self.pad_id is None:
            self.pad_id = self.model.generation_config.pad_token_id
        eos = self.model.generation_config.eos_token_id
        self.eos_ids = set(eos if isinstance(eos, (list, tuple)) else [eos])
        self._slots: dict[str, int | None] = {}
        _channels_last_convs(self.model)
        self._window = _encoder_window(self.model)
        self.encode_frames = ENCODE_FRAMES["cuda" if self.device.type == "cuda" else "cpu"]
        ids = lambda text: self.tokenizer(text, add_special_tokens=False)["input_ids"]
        self._language_head = ids("language")  # what an auto-language answer starts with
        self._none = ids(" None")
        self._asr_text_id = self.tokenizer.convert_tokens_to_ids(ASR_TEXT)

    # ------------------------------------------------------------------ inputs
    def check_context(self, context: str | None) -> None:
        """The one context rule, applied before any model call (the scheduler refuses a request
        that breaks it; front ends call it first for an early answer): a context must be valid
        Unicode text of at most `max_context_tokens` tokens. Raises BadContext / ContextTooLong."""
        if not context or context in self._contexts_ok:
            return
        try:
            context.encode("utf-8")
        except UnicodeEncodeError as err:
            raise BadContext(f"the context is not valid text: it holds a lone surrogate ({context[err.start:err.end]!r} "
                             f"at character {err.start})") from None  # fmt: skip
        limit = self.max_context_tokens
        # No token spells more than a few dozen characters: a longer text is over the limit
        # without paying for its tokenization.
        n = None if len(context) > 64 * max(limit, 1) else len(self.tokenizer(context, add_special_tokens=False)["input_ids"])
        if n is None or n > limit:
            size = f"{n:,} tokens" if n is not None else f"{len(context):,} characters"
            raise ContextTooLong(f"the context is {size}, over the limit of {limit:,} tokens (--max-context-tokens): "
                                 "shorten the prompt or hotword list")  # fmt: skip
        with self._contexts_lock:  # called from the server's threads and the event loop alike
            if len(self._contexts_ok) >= 64:
                self._contexts_ok.clear()
            self._contexts_ok[context] = None

    def features(self, samples: np.ndarray) -> Features:
        return Features(*clip_features(self.feature_extractor, samples, self.device))

    def prompt_ids(self, context: str | None, language: str | None, n_audio_tokens: int) -> list[int]:
        text = prompt_text(context, language, n_audio_tokens)
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def prompts(self, requests: Sequence[Request]) -> tuple[list[Features], torch.Tensor, torch.Tensor]:
        """Each clip's features on its own, and the left-padded prompt ids and attention mask."""
        feats = [self.features(r.samples) for r in requests]
        ids = [self.prompt_ids(r.context, r.language, f.n_audio_tokens) for r, f in zip(requests, feats)]
        longest = max(len(x) for x in ids)
        input_ids = torch.full((len(ids), longest), self.pad_id, dtype=torch.long)
        attention = torch.zeros((len(ids), longest), dtype=torch.long)
        for i, x in enumerate(ids):
            input_ids[i, longest - len(x) :] = torch.tensor(x)
            attention[i, longest - len(x) :] = 1
        return feats, input_ids.to(self.device), attention.to(self.device)

    def batch_inputs(self, requests: Sequence[Request]) -> dict[str, torch.Tensor]:
        """Left-padded prompt ids and right-padded mel features for one batch (the model's own
        forward and `generate` take these)."""
        feats, input_ids, attention = self.prompts(requests)
        mel, mel_mask = _stack(feats, max(f.mel.shape[-1] for f in feats))
        return {
            "input_ids": input_ids,
            "attention_mask": attention,
            "input_features": mel.to(self.device, self.dtype),
            "input_features_mask": mel_mask.to(self.device),
        }

    def encode_audio(self, feats: Sequence[Features]) -> torch.Tensor:
        """The projected audio embeddings of every clip, concatenated in order (what fills the
        prompts' audio placeholders). The encoder convolves 1 s chunks and attends within windows
        of `n_window_infer` frames, so its output for a clip is the concatenation of its outputs
        for the clip's windows, each encoded alone. Windows of equal length are encoded together,
        at most `encode_frames` per call: no chunk is padded to another's (the convolutions are
        most of a small model's cost), and their large activations stay bounded however long
        and however many the clips."""
        parts = [w for f in feats for w in _windows(f, self._window)]
        groups: dict[int, list[int]] = {}
        for j, w in enumerate(parts):
            groups.setdefault(w.mel.shape[-1], []).append(j)
        out: list[torch.Tensor | None] = [None] * len(parts)
        for frames, same in groups.items():
            per_call = max(1, self.encode_frames // frames)
            for k in range(0, len(same), per_call):
                members = same[k : k + per_call]
                mel, mask = _stack([parts[j] for j in members], frames)
                embeds = self.model.model.get_audio_features(mel.to(self.device, self.dtype), mask.to(self.device)).pooler_output
                for j, part in zip(members, torch.split(embeds, [parts[j].n_audio_tokens for j in members])):
                    out[j] = part
        return torch.cat(out)  # type: ignore[arg-type]

    # ------------------------------------------------------------------ no-speech score
    # The model answers `language None<asr_text>` when it hears no speech; the probability it
    # gives that answer is its no-speech score. With a forced language the prompt holds
    # `language English<asr_text>`, so the prefill's logits at those positions give it for free;
    # an auto-language answer gives it while it writes its language. Where " None" and the
    # language take several tokens, the score follows the None path until it parts from the
    # path taken (exact wherever " None" is one token, as in the Qwen vocabulary).
    def language_slot(self, request: Request) -> tuple[int, int] | None:
        """For a forced language: (tokens before the prompt's end of the one that predicts the
        language name, how many further positions the None path shares), or None if unknown."""
        lang = request.language
        if not lang or not self._none:
            return None
        if lang not in self._slots:
            head = self.prompt_ids(None, None, 1) + self._language_head
            full = self.prompt_ids(None, lang, 1)
            name = self.tokenizer(" " + lang, add_special_tokens=False)["input_ids"]
            shared = _common_prefix(name, self._none)
            ok = full[: len(head)] == head and full[len(head) : len(head) + len(name)] == name and shared < len(self._none)
            self._slots[lang] = (len(full) - len(head), shared) if ok else None
        return self._slots[lang]

    def none_path(self, logits: torch.Tensor, tokens_so_far: int) -> float:
        """The probability of the None answer's next token (`tokens_so_far` of it already taken)."""
        return float(torch.softmax(logits.float(), dim=-1)[self._none[tokens_so_far]])

    def result(self, request: Request, tokens: list[int], logprobs: list[float], budget: int, prompt_tokens: int,
               no_speech_prob: float | None) -> Result:  # fmt: skip
        tokens = _trim(tokens, self.eos_ids)
        logprobs = logprobs[: len(tokens)]
        ended = bool(tokens) and tokens[-1] in self.eos_ids
        raw = self.tokenizer.decode(tokens, skip_special_tokens=True, clean_up_tokenization_spaces=False)
        language, text = parse_answer(raw, request.language)
        capped = not ended and len(tokens) >= budget
        # the transcript's tokens: after `<asr_text>` when the model wrote its language, before the end of turn
        first = tokens.index(self._asr_text_id) + 1 if request.language is None and self._asr_text_id in tokens else 0
        last = len(tokens) - 1 if ended else len(tokens)
        ids = tokens[first:last] if (request.language or first) else []
        scores = [
            TokenLogprob(piece, round(lp, 6), raw_bytes)
            for (piece, raw_bytes), lp in zip(self._pieces(ids), logprobs[first:last])
        ] if logprobs else []  # fmt: skip
        return Result(text, language, raw, len(tokens), capped, tokens, logprobs, no_speech_prob, prompt_tokens, scores, ids)

    def _pieces(self, ids: list[int]) -> list[tuple[str, list[int]]]:
        """Each token's own text and its exact UTF-8 bytes (OpenAI's logprobs shape). A token that
        is part of a multi-byte character decodes to U+FFFD; its bytes are still its own, so the
        bytes of consecutive tokens join into the text (word probabilities rely on this)."""
        out = []
        for i, name in zip(ids, self.tokenizer.convert_ids_to_tokens(ids)):
            piece = self.tokenizer.decode([i], skip_special_tokens=False, clean_up_tokenization_spaces=False)
            raw = piece.encode("utf-8")
            if isinstance(name, str) and name and all(c in _BYTE_OF for c in name):
                exact = bytes(_BYTE_OF[c] for c in name)
                if "\ufffd" in piece or exact.decode("utf-8", "replace") == piece:  # a byte-level token
                    raw = exact
            out.append((piece, list(raw)))
        return out

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

    @contextlib.contextmanager
    def timed(self):
        """Add the wall time of the block to stats.model_s (synchronising CUDA when timing)."""
        sync = self.timing and self.device.type == "cuda"
        if sync:
            torch.cuda.synchronize(self.device)
        t0 = time.perf_counter()
        try:
            yield
        finally:
            if sync:
                torch.cuda.synchronize(self.device)
            self.stats.model_s += time.perf_counter() - t0

    @torch.inference_mode()
    def hf_generate(self, batch: Sequence[Request], max_new_tokens: int) -> list[Result]:
        """The reference path: transformers' `generate` on one left-padded batch (greedy)."""
        inputs = self.batch_inputs(batch)
        forced = {}
        if self.forced_length:
            longest = max(r.duration for r in batch)
            max_new_tokens = self.forced_length(longest)
            forced = {"min_new_tokens": max_new_tokens}
        with self.timed():
            sequences = self.model.generate(
                **inputs, max_new_tokens=max_new_tokens, do_sample=False, num_beams=1, pad_token_id=self.pad_id, **forced
            )
        width = inputs["input_ids"].shape[1]
        new_tokens = sequences[:, width:].tolist()
        results = [self.result(r, t, [], max_new_tokens, 0, None) for r, t in zip(batch, new_tokens)]
        steps = len(new_tokens[0]) if new_tokens else 0
        self.stats.prefills += 1
        self.stats.steps += max(steps - 1, 0)
        self.stats.computed += len(batch) * (width + max(steps - 1, 0))
        self.stats.useful += int(inputs["attention_mask"].sum()) + sum(r.n_tokens - 1 for r in results if r.n_tokens)
        self.stats.tokens += sum(r.n_tokens for r in results)
        return results

    @torch.inference_mode()
    def prefill_logits(self, request: Request) -> torch.Tensor:
        """Logits of the first generated step (used to check parity with the official package)."""
        inputs = self.batch_inputs([request])
        return self.model(**inputs).logits[0, -1].float().cpu()


def _windows(f: Features, window: int | None) -> list[Features]:
    """A clip's features cut at the encoder's attention windows (the padding past its last one dropped)."""
    if window is None or f.mel.shape[-1] <= window:
        return [f]
    return [Features(f.mel[:, s : s + window], min(window, f.n_frames - s)) for s in range(0, f.n_frames, window)]


def _encoder_window(model) -> int | None:
    """The audio encoder's attention window in mel frames, where it holds whole 1 s chunks (it
    does in every published config: 800 frames of 100-frame chunks); None: encode clips whole."""
    audio = getattr(model.config, "audio_config", None)
    window, half = getattr(audio, "n_window_infer", None), getattr(audio, "n_window", None)
    return window if window and half and window % (2 * half) == 0 else None


def _stack(feats: Sequence[Features], frames: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Features right-padded to `frames` with zeros, and their valid-frame mask."""
    mel = torch.zeros((len(feats), feats[0].mel.shape[0], frames), dtype=torch.float32, device=feats[0].mel.device)
    mask = torch.zeros((len(feats), frames), dtype=torch.long)
    for i, f in enumerate(feats):
        mel[i, :, : f.mel.shape[-1]] = f.mel
        mask[i, : f.n_frames] = 1
    return mel, mask


def _channels_last_convs(model) -> None:
    """The audio encoder's 2-D convolutions (over half the CPU time of a small model) run ~1.2-1.5x
    faster on oneDNN (and cuDNN) with channels-last weights; outputs agree to ~1e-6."""
    tower = getattr(getattr(model, "model", None), "audio_tower", None)
    for conv in (getattr(tower, name, None) for name in ("conv2d1", "conv2d2", "conv2d3")):
        if isinstance(conv, torch.nn.Conv2d):
            conv.to(memory_format=torch.channels_last)


def _common_prefix(a: list[int], b: list[int]) -> int:
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    return n


def _trim(tokens: list[int], eos_ids: set[int]) -> list[int]:
    """Cut after the first end-of-turn; drop the padding of rows that finished early."""
    for i, t in enumerate(tokens):
        if t in eos_ids:
            return tokens[: i + 1]
    return tokens
