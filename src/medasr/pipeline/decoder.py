"""Iteration-level decoding (continuous batching) for Qwen3-ASR with the real transformers model.

Up to `max_rows` sequences are in flight. `admit` prefills new requests (audio encoder and
prompt, batched among themselves) and places them beside the running ones; `step` runs one
decode step for every running row and returns the rows that finished. A request therefore never
waits for a whole batch: it joins at the next step, and a finished row's place is taken at once.

The KV cache (`SlotCache`) is one tensor per layer and K/V of shape (rows, kv_heads, columns,
head_dim). All rows share one column clock `t`: a decode step writes every row's new K/V at
column t. A row's prompt is written right-aligned before the clock, at [t - L, t), so rows of
different lengths line up; each row attends to columns [start, t] through an explicit mask, and
its RoPE positions are its own (keys are stored already rotated), so where a row sits in the
cache changes nothing it computes. Rows are kept dense at the front (a finished row's place is
filled by the last row, a one-row copy), so a step computes only live rows.

On CUDA the decode step can run with static shapes (`static=True`): rows bucketed to powers of
two, the full column capacity read with a mask, writes by index tensors, so that
`torch.compile(mode="reduce-overhead")` captures it as a CUDA graph and only a few shapes are
ever compiled. On CPU the step reads just the columns in use.

Texts are those of one-by-one decoding (tested): padding is masked, positions are per row, and
each clip's features are computed on their own (`engine.clip_features`).
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field

import torch

from medasr.model.weights import release_memory
from medasr.pipeline.engine import Engine, Request, Result, default_max_new_tokens

# An empty decoder starts its clock at the first prompts' width, and a new cache holds them plus
# HEADROOM columns of answer (or their budget, when smaller): a cache as wide as a 30 s prompt
# whatever the clips wasted most of it on short ones (0.6B: 229 kB per row and column). A longer
# prompt joining later shifts the rows right; the answers' columns grow by half when needed.
HEADROOM = 128
KEEP_COLUMNS = 768  # an idle decoder keeps a cache up to this wide (a 30 s prompt and its answer), frees a wider one
COLUMN_QUANTUM = 256  # cache capacity grows in multiples of this (few distinct shapes on CUDA)
# One prefill holds clips whose longest is at most this times the shortest: padding a prompt to a
# longer one is computed for nothing (8 LibriSpeech-like clips of 4-13.5 s at batch 16: 1.8x the
# prefill work in one group), while a few groups of similar clips cost hardly more than one.
PREFILL_SPREAD = 1.3
MIN_SPREAD_S = 2.0


@dataclass
class _Row:
    key: Hashable
    request: Request
    start: int  # first cache column of its prompt
    pos: int  # position id of the next token it feeds
    budget: int  # max new tokens
    prompt_tokens: int
    tokens: list[int] = field(default_factory=list)
    logprobs: list[float] = field(default_factory=list)
    no_speech_prob: float | None = None
    generator: torch.Generator | None = None
    none_step: int = -1  # auto language: how far its answer has followed `language None` (-1: not begun)
    min_tokens: int = 0  # the end of turn is suppressed before this many tokens (forced lengths)
    none_prob: float = 1.0


class SlotCache:
    """The KV cache for rows of different lengths on one column clock; see the module doc.

    transformers' attention layers call `update(key, value, layer_idx)`; what it writes and
    returns depends on the mode set before each forward: `prefill(rows, column)` writes the new
    rows' prompts at [column, column + L) and returns their own K/V; `decode(column, lo, hi)`
    writes every row's one new token at `column` and returns columns [lo, hi).
    """

    is_compileable = True

    def __init__(self, layers: int, rows: int, kv_heads: int, head_dim: int, columns: int, dtype, device,
                 max_rows: int | None = None):  # fmt: skip
        shape = (rows, kv_heads, columns, head_dim)
        self.max_rows = max(rows, max_rows or rows)  # rows grow up to this as prefills need them
        self.keys = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(layers)]
        self.values = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(layers)]
        self._mode = "decode"
        self._rows: torch.Tensor | None = None
        self._column: torch.Tensor | int = 0
        self._n = rows
        self._lo, self._hi = 0, columns

    @property
    def columns(self) -> int:
        return self.keys[0].shape[2]

    @property
    def rows(self) -> int:
        return self.keys[0].shape[0]

    def prefill(self, rows: torch.Tensor, column: int) -> None:
        self._mode, self._rows, self._column = "prefill", rows, column
        self.ensure_rows(int(rows.max()) + 1)

    def ensure_rows(self, needed: int) -> None:
        """At least `needed` rows (in powers of two, up to max_rows): a cache is as large as the rows
        in flight have been, not as the batch size allows (0.6B: 229 kB per row and column)."""
        if needed <= self.rows:
            return
        if needed > self.max_rows:
            raise ValueError(f"{needed} cache rows asked for, {self.max_rows} at most")
        rows = min(self.max_rows, _bucket(needed))

        def taller(t):
            out = t.new_zeros((rows, *t.shape[1:]))
            out[: t.shape[0]] = t
            return out

        for i in range(len(self.keys)):  # one layer at a time: the old and new caches are never both whole
            self.keys[i] = taller(self.keys[i])
            self.values[i] = taller(self.values[i])
        release_memory()  # the old layers' memory, freed into the heap, back to the system

    def decode(self, column: torch.Tensor, n: int, lo: int, hi: int) -> None:
        self._mode, self._column, self._n, self._lo, self._hi = "decode", column, n, lo, hi

    def update(self, key: torch.Tensor, value: torch.Tensor, layer_idx: int, *args, **kwargs):
        k, v = self.keys[layer_idx], self.values[layer_idx]
        if self._mode == "prefill":
            c = self._column
            k[self._rows, :, c : c + key.shape[2]] = key
            v[self._rows, :, c : c + key.shape[2]] = value
            return key, value
        n = self._n
        k[:n].index_copy_(2, self._column, key)
        v[:n].index_copy_(2, self._column, value)
        return k[:n, :, self._lo : self._hi], v[:n, :, self._lo : self._hi]

    def get_seq_length(self, layer_idx: int = 0) -> int:
        return self._hi

    def shift(self, by: int) -> None:
        """Move every row's columns by `by` (negative: left), keeping the capacity."""
        cols = self.columns
        for t in (*self.keys, *self.values):
            if by > 0:
                t[:, :, by:] = t[:, :, : cols - by].clone()
            elif by < 0:
                t[:, :, : cols + by] = t[:, :, -by:].clone()

    def grow(self, columns: int) -> None:
        def wider(t):
            out = t.new_zeros((t.shape[0], t.shape[1], columns, t.shape[3]))
            out[:, :, : t.shape[2]] = t
            return out

        for i in range(len(self.keys)):  # layer by layer: the old cache is freed as the new one fills
            self.keys[i] = wider(self.keys[i])
            self.values[i] = wider(self.values[i])
        release_memory()

    def move_row(self, src: int, dst: int) -> None:
        for t in (*self.keys, *self.values):
            t[dst] = t[src]


def _bucket(n: int) -> int:
    return 1 << max(0, math.ceil(math.log2(max(n, 1))))


class Decoder:
    """Sequences in flight on one model; `admit` new ones, `step` all of them (module doc).

    static: CUDA-graph-friendly decode steps (bucketed rows, full-capacity reads); compile: wrap
    the decode step in torch.compile (static shapes implied); compile_options: torch.compile's
    arguments (default: CUDA graphs, `mode="reduce-overhead"`).
    """

    def __init__(self, engine: Engine, max_rows: int = 16, static: bool = False, compile: bool = False,
                 compile_options: dict | None = None):  # fmt: skip
        self.engine = engine
        self.model = engine.model
        self.max_rows = max_rows
        self.static = static or compile
        self.cache: SlotCache | None = None
        self.rows: list[_Row] = []
        self.t = 0  # the column clock
        self.stats = engine.stats  # shared by all decoders of the engine
        text = self.model.config.text_config
        self._shape = (text.num_hidden_layers, text.num_key_value_heads, getattr(text, "head_dim", None)
                       or text.hidden_size // text.num_attention_heads)  # fmt: skip
        self._lm = self.model.model.language_model
        self._step_fn = None  # None: the eager step (a bound method kept here would make a cycle, and the
        # cache of a finished decoder would wait for the garbage collector)
        if compile:
            options = compile_options or {"mode": "reduce-overhead"}
            self._step_fn = torch.compile(self._decode_forward, dynamic=False, **options)

    @classmethod
    def for_engine(cls, engine: Engine, max_rows: int | None = None) -> Decoder:
        """A fresh decoder on the engine's model: static shapes on CUDA (for CUDA graphs),
        compiled when the engine asks for it."""
        cuda = engine.device.type == "cuda"
        return cls(engine, max_rows=max_rows or engine.batch_size, static=cuda, compile=cuda and engine.compile)

    # ------------------------------------------------------------------ state
    @property
    def active(self) -> int:
        return len(self.rows)

    @property
    def free(self) -> int:
        return self.max_rows - len(self.rows)

    def in_flight(self) -> list[Hashable]:
        return [r.key for r in self.rows]

    @torch.inference_mode()  # moving cache rows writes inference tensors
    def drop(self, keys: set) -> int:
        """Stop decoding the rows with these keys (their clients left); returns how many."""
        gone = [i for i, r in enumerate(self.rows) if r.key in keys]
        for i in reversed(gone):
            self._remove(i)
        return len(gone)

    # ------------------------------------------------------------------ admit
    @torch.inference_mode()
    def admit(self, items: Sequence[tuple[Hashable, Request]]) -> list[tuple[Hashable, Result]]:
        """Prefill `items` (at most `free` of them) and add them to the running rows.

        Prompts of one prefill are padded to the longest, so items are prefilled in groups of
        similar length (`_similar_lengths`): a 4 s clip beside a 13 s one would otherwise cost a
        13 s prefill. Returns the ones already finished by their first token (an immediate end of
        turn, or a budget of one token)."""
        if not items:
            return []
        if len(items) > self.free:
            raise ValueError(f"{len(items)} requests for {self.free} free rows")
        done: list[tuple[Hashable, Result]] = []
        rows = len(self.rows) + len(items)  # the cache grows its rows once for all the groups
        groups = _similar_lengths(items)
        # every group's audio is encoded before the cache grows for their rows, so the encoder's
        # activations and the grown cache never add up at the peak (the embeddings are small)
        inputs = [self._encode([r for _, r in group]) for group in groups]
        for group, prepared in zip(groups, inputs):
            done += self._prefill(group, rows, *prepared)
        return done

    def _encode(self, requests: list[Request]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """A group's prompt ids, attention mask and audio embeddings."""
        feats, ids, attention = self.engine.prompts(requests)
        with self.engine.timed():
            audio = self.engine.encode_audio(feats)
        return ids, attention, audio

    def _prefill(self, items: Sequence[tuple[Hashable, Request]], rows: int, ids: torch.Tensor, attention: torch.Tensor,
                 audio: torch.Tensor) -> list[tuple[Hashable, Result]]:  # fmt: skip
        engine = self.engine
        requests = [r for _, r in items]
        b, width = ids.shape
        # forced lengths (benchmarks) are both a row's budget and its minimum
        forced = [engine.forced_length(r.duration) if engine.forced_length else 0 for r in requests]
        budgets = [f or r.max_new_tokens or default_max_new_tokens(r.duration) for f, r in zip(forced, requests)]
        self._ensure_cache(width, min(HEADROOM, max(budgets)))
        self.cache.ensure_rows(rows)
        if not self.rows:
            self.t = width
        elif self.t < width:  # a prompt longer than the clock allows: make room on the left
            by = width - self.t
            self._ensure_columns(self.t + by + 1)
            self.cache.shift(by)
            for r in self.rows:
                r.start += by
            self.t += by
        first = len(self.rows)
        slots = torch.arange(first, first + b, device=engine.device)
        column = self.t - width
        pad = (attention == 0).sum(dim=1)
        positions = (attention.cumsum(dim=1) - 1).clamp(min=0)
        mask = self._prefill_mask(attention)
        self.cache.prefill(slots, column)
        with engine.timed():
            # the prompts' audio placeholders get the audio embeddings (as the model's own forward
            # does), encoded without padding clips to one another (Engine.encode_audio)
            embeds = self._lm.embed_tokens(ids)
            embeds[ids == self.model.config.audio_token_id] = audio.to(embeds.dtype)
            hidden = self._lm(
                inputs_embeds=embeds, attention_mask={"full_attention": mask}, position_ids=positions,
                cache=self.cache, use_cache=True,
            ).last_hidden_state  # fmt: skip
        self.stats.computed += b * width
        self.stats.useful += int(attention.sum())
        self.stats.prefills += 1
        logits = self.model.lm_head(hidden[:, -1]).float()
        new_rows = []
        for i, (key, req) in enumerate(items):
            row = _Row(
                key, req, start=column + int(pad[i]), pos=width - int(pad[i]), budget=budgets[i],
                prompt_tokens=width - int(pad[i]), generator=_generator(req), min_tokens=forced[i],
            )  # fmt: skip
            slot = engine.language_slot(req)
            if slot is not None:  # forced language: the prompt's own positions give the score
                offset, shared = slot
                at = width - 1 - offset
                path = self.model.lm_head(hidden[i, at : at + shared + 1]).float()
                row.no_speech_prob = round(math.prod(engine.none_path(path[j], j) for j in range(shared + 1)), 6)
            new_rows.append(row)
        self.rows.extend(new_rows)
        self._pick(list(range(first, first + b)), logits)
        return self._collect_finished()

    def _prefill_mask(self, attention: torch.Tensor) -> torch.Tensor:
        """(b, 1, L, L) additive mask: causal, no padding keys; padding queries see themselves
        (a fully masked row would give NaN, and NaN times a zero weight is still NaN)."""
        b, width = attention.shape
        causal = torch.ones(width, width, dtype=torch.bool, device=attention.device).tril()
        allowed = causal[None] & attention.bool()[:, None, :]
        allowed |= torch.eye(width, dtype=torch.bool, device=attention.device)[None]
        return self._additive(allowed[:, None])

    def _additive(self, allowed: torch.Tensor) -> torch.Tensor:
        dtype = self.engine.dtype
        return torch.zeros(allowed.shape, dtype=dtype, device=allowed.device).masked_fill(~allowed, torch.finfo(dtype).min)

    # ------------------------------------------------------------------ step
    @torch.inference_mode()
    def step(self) -> list[tuple[Hashable, Result]]:
        """One decode step for every running row; returns the rows that finished."""
        if not self.rows:
            return []
        self._ensure_columns(self.t + 1)
        n = len(self.rows)
        device = self.engine.device
        rows = _bucket(n) if self.static else n
        rows = min(rows, self.cache.rows)
        pad = rows - n  # padding rows see only their own column
        tokens = torch.tensor([r.tokens[-1] for r in self.rows] + [self.engine.pad_id] * pad, dtype=torch.long)
        positions = torch.tensor([r.pos for r in self.rows] + [0] * pad, dtype=torch.long)
        starts = torch.tensor([r.start for r in self.rows] + [self.t] * pad, dtype=torch.long)
        if self.static:
            lo, hi = 0, self.cache.columns
        else:
            lo, hi = min(r.start for r in self.rows), self.t + 1
        cols = torch.arange(lo, hi)
        allowed = (cols[None, :] >= starts[:, None]) & (cols[None, :] <= self.t)
        mask = self._additive(allowed[:, None, None, :].to(device))
        column = torch.tensor([self.t], device=device)
        self.cache.decode(column, rows, lo, hi)
        with self.engine.timed():
            logits = (self._step_fn or self._decode_forward)(tokens.to(device)[:, None], positions.to(device)[:, None], mask)
        self.t += 1
        self.stats.computed += rows
        self.stats.useful += n
        self.stats.steps += 1
        for r in self.rows:
            r.pos += 1
        logits = logits[:n]
        self._pick(list(range(n)), logits if logits.dtype == torch.float32 else logits.float())
        return self._collect_finished()

    def _decode_forward(self, tokens: torch.Tensor, positions: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        embeds = self._lm.embed_tokens(tokens)
        hidden = self._lm(
            inputs_embeds=embeds, attention_mask={"full_attention": mask}, position_ids=positions,
            cache=self.cache, use_cache=True,
        ).last_hidden_state  # fmt: skip
        return self.model.lm_head(hidden[:, -1])

    # ------------------------------------------------------------------ tokens
    def _pick(self, indices: list[int], logits: torch.Tensor) -> None:
        """Choose each row's next token (greedy, or sampled at its temperature) and keep its log-prob."""
        early = [j for j, i in enumerate(indices) if len(self.rows[i].tokens) < self.rows[i].min_tokens]
        if early:  # forced lengths: no end of turn yet
            logits[torch.tensor(early)[:, None], torch.tensor(sorted(self.engine.eos_ids))[None, :]] = float("-inf")
        # torch's fused log-softmax beats logit - logsumexp on the CPU (16 x 151,936: 4.5 against
        # 6.4 ms); the chosen entries are read with one gather and one transfer
        logprobs = torch.log_softmax(logits, dim=-1)
        greedy = logits.argmax(dim=-1).tolist()
        chosen = []
        for j, i in enumerate(indices):
            r = self.rows[i]
            token = greedy[j]
            if r.request.temperature > 0:
                probs = torch.softmax(logits[j] / r.request.temperature, dim=-1).cpu()
                token = int(torch.multinomial(probs, 1, generator=r.generator))
            if r.no_speech_prob is None and r.request.language is None:
                self._follow_none(r, logits[j], token)
            chosen.append(token)
        picked = logprobs.gather(1, torch.tensor(chosen, device=logits.device)[:, None])[:, 0]
        for i, token, lp in zip(indices, chosen, picked.tolist()):
            self.rows[i].tokens.append(token)
            self.rows[i].logprobs.append(lp)
        self.stats.tokens += len(indices)

    def _follow_none(self, r: _Row, logits: torch.Tensor, token: int) -> None:
        """Auto language: once the answer has written `language`, multiply up the probability
        of ` None` along the answer until it parts from it (Engine's no-speech score)."""
        engine = self.engine
        if r.none_step < 0:
            if r.tokens != engine._language_head or not engine._none:
                return
            r.none_step = 0
        r.none_prob *= engine.none_path(logits, r.none_step)
        if token == engine._none[r.none_step] and r.none_step + 1 < len(engine._none):
            r.none_step += 1
        else:
            r.no_speech_prob = round(r.none_prob, 6)

    def _collect_finished(self) -> list[tuple[Hashable, Result]]:
        done = []
        for i in reversed(range(len(self.rows))):
            r = self.rows[i]
            ended = r.tokens[-1] in self.engine.eos_ids
            if ended or len(r.tokens) >= r.budget:
                done.append((r.key, self.engine.result(r.request, r.tokens, r.logprobs, r.budget, r.prompt_tokens,
                                                        r.no_speech_prob)))  # fmt: skip
                self._remove(i)
        done.reverse()
        return done

    def _remove(self, i: int) -> None:
        last = len(self.rows) - 1
        if i != last:
            self.cache.move_row(last, i)
            self.rows[i] = self.rows[last]
        self.rows.pop()
        if not self.rows:
            self.t = 0
            if self.cache is not None and self.cache.columns > KEEP_COLUMNS:
                self.cache = None  # grown for a long prompt or answer: give the memory back (made again at the next admit)

    # ------------------------------------------------------------------ memory
    def _ensure_cache(self, width: int, headroom: int) -> None:
        if self.cache is None:
            layers, kv_heads, head_dim = self._shape
            columns = _round_up(width + headroom, COLUMN_QUANTUM)
            self.cache = SlotCache(layers, 1, kv_heads, head_dim, columns, self.engine.dtype, self.engine.device, self.max_rows)
        self._ensure_columns(max(self.t, width) + 1)

    def _ensure_columns(self, needed: int) -> None:
        """Make column `needed - 1` writable: first reclaim the columns no row reads any more,
        then grow."""
        if needed <= self.cache.columns:
            return
        if self.rows:
            lo = min(r.start for r in self.rows)
            if lo > 0 and needed - lo <= self.cache.columns:
                self.cache.shift(-lo)
                for r in self.rows:
                    r.start -= lo
                self.t -= lo
                return
        self.cache.grow(_round_up(max(needed, self.cache.columns * 3 // 2), COLUMN_QUANTUM))


def _similar_lengths(items: Sequence[tuple[Hashable, Request]]) -> list[list[tuple[Hashable, Request]]]:
    """Items by duration, longest first, cut into groups whose longest clip is at most
    PREFILL_SPREAD times the shortest (clips under MIN_SPREAD_S count as that long: a prompt's
    fixed tokens dominate theirs)."""
    groups: list[list[tuple[Hashable, Request]]] = []
    for item in sorted(items, key=lambda it: it[1].duration, reverse=True):
        if groups and groups[-1][0][1].duration <= PREFILL_SPREAD * max(item[1].duration, MIN_SPREAD_S):
            groups[-1].append(item)
        else:
            groups.append([item])
    return groups


def _round_up(n: int, q: int) -> int:
    return -(-n // q) * q


def _generator(request: Request) -> torch.Generator | None:
    if request.temperature <= 0:
        return None
    g = torch.Generator()
    g.manual_seed(request.seed if request.seed is not None else torch.seed())
    return g
