"""Word times: force-align a transcript to its audio with a Qwen3-ForcedAligner.

    from medasr.model.aligner import load_aligner
    from medasr.pipeline.align import Clip, align, align_clips, align_pieces
    aligner = load_aligner("demo")                       # or Qwen/Qwen3-ForcedAligner-0.6B
    words = align(aligner, samples, "Give metoprolol 25 milligrams.")   # any length of audio
    words = align_pieces(aligner, samples, segments)     # the transcriber's pieces (<= 30 s)
    per_piece = align_clips(aligner, [Clip(piece_samples, start, text), ...])  # pieces read one by one

What the aligner sees is exactly the official input (qwen-asr 0.0.6 `Qwen3ForcedAligner`):
the transcript split into units as its processor splits it (white space; each unit cleaned to
letters, digits and "'"; CJK characters one by one), the audio placeholder followed by each unit
and two `<timestamp>` slots, no chat template. transformers' `Qwen3ASRProcessor` builds it
(`prepare_forced_aligner_inputs`, with medasr's template for that layout) and decodes the answer
(`decode_forced_alignment`: argmax over bins x `timestamp_segment_time`, then the official
monotonic repair, seconds rounded to the millisecond). That is the raw output (`raw=True`).

On top of it, unless `raw`:
- times past the end of the piece's audio are set to its end;
- each unit gets back the punctuation and casing it had in the transcript ("xray" -> "x-ray,");
  a token with no letters or digits ("-", "&") joins the word before it;
- words of zero length (the aligner gave start == end, or several words the same instant) are
  widened to `min_word_s` each where the neighbouring words leave room, never overlapping them.

Audio goes to the aligner in pieces of at most `MAX_PIECE_S` (30 s), so long recordings never
exceed its window, and every time is on the original recording's timeline. `align_clips` takes
pieces with their own samples and text (what the transcriber produces; a streamed long file never
holds the whole signal), `align_pieces` the same as spans of one signal; `align` takes one transcript for a
whole recording, finds pieces of speech (`medasr.audio.vad`) and shares the words out among them in
proportion to their speech, cutting preferably at sentence ends.
"""

from __future__ import annotations

import logging
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch

from medasr.audio.vad import VadOptions
from medasr.audio.vad import pieces as speech_pieces
from medasr.defaults import MAX_PIECE_S, SAMPLE_RATE
from medasr.errors import AlignmentError
from medasr.model.aligner import LoadedAligner
from medasr.records import Word

log = logging.getLogger(__name__)

PIECE_TOLERANCE_S = 0.5  # pieces a little over MAX_PIECE_S (rounding of cut points) are accepted
SENTENCE_END = (".", "?", "!")
CLAUSE_END = (",", ";", ":", "—", "–", "-")


class PieceText(Protocol):
    """A stretch of the recording and its text (a `medasr.records.Segment` is one)."""

    start: float
    end: float
    text: str


@dataclass
class Unit:
    """One aligner unit: as the aligner sees it, and as it is written in the transcript."""

    text: str
    display: str
    sentence_end: bool = False
    clause_end: bool = False


# ---------------------------------------------------------------------------- text -> units
def aligner_language(language: str | None) -> str | None:
    """The language name the aligner's word splitter takes (None: white space and CJK rules)."""
    from transformers.models.qwen3_asr.processing_qwen3_asr import FORCED_ALIGNER_LANGUAGES

    from medasr.model.prompt import normalize_language

    try:
        name = normalize_language(language)
    except ValueError as err:
        raise AlignmentError(str(err)) from None
    if name is not None and name not in FORCED_ALIGNER_LANGUAGES:
        raise AlignmentError(
            f"the forced aligner does not support {name}; it aligns {', '.join(sorted(FORCED_ALIGNER_LANGUAGES))}"
        )
    return name


def split_units(processor, text: str, language: str | None = "English") -> list[Unit]:
    """The transcript's units as the official processor splits them, each with its written form."""
    units = processor.split_words_for_alignment(text, aligner_language(language))
    # Locate each unit's characters in the text, in order (units are the kept characters).
    spans: list[tuple[int, int]] = []
    pos = 0
    for unit in units:
        start = None
        for ch in unit:
            found = text.find(ch, pos)
            if found < 0:  # a splitter that rewrites characters: keep the unit as the aligner saw it
                return [Unit(u, u) for u in units]
            start = found if start is None else start
            pos = found + 1
        spans.append((start, pos))
    # Each unit's written form: its characters plus punctuation attached to them ("(CT)",
    # "daily."), plus tokens of punctuation alone that follow it ("pain —").
    starts = []
    for i, (a, _b) in enumerate(spans):
        lo = spans[i - 1][1] if i else 0
        gap = text[lo:a]
        if i == 0 or any(c.isspace() for c in gap):  # " (CT": all after the last space leads
            while a > lo and not text[a - 1].isspace():
                a -= 1
        else:  # glued to the unit before ("好，世"): only opening brackets and quotes lead
            while a > lo and unicodedata.category(text[a - 1]) in ("Ps", "Pi"):
                a -= 1
        starts.append(a)
    out: list[Unit] = []
    for i, (_a, b) in enumerate(spans):
        hi = starts[i + 1] if i + 1 < len(spans) else len(text)
        tail = b
        while tail < hi and not text[tail].isspace():
            tail += 1
        parts = [text[starts[i] : tail], *text[tail:hi].split()]
        if i == 0:
            parts = [*text[: starts[0]].split(), *parts]  # punctuation before the first unit
        display = " ".join(parts)
        end = display.rstrip("\"')]}»”’")
        out.append(Unit(units[i], display, end.endswith(SENTENCE_END), end.endswith(CLAUSE_END)))
    return out


# ---------------------------------------------------------------------------- the model
def _run(aligner: LoadedAligner, clips: list[np.ndarray], texts: list[str], language: str | None, batch_size: int) -> list[list[dict]]:
    """The official decoded output (units and their times, seconds from each clip's start)."""
    proc = aligner.processor
    out: list[list[dict] | None] = [None] * len(clips)
    order = sorted(range(len(clips)), key=lambda i: len(clips[i]))
    for at in range(0, len(order), max(1, batch_size)):
        group = order[at : at + max(1, batch_size)]
        rows, word_lists = [], []
        for i in group:
            # One clip per call: its features are its own (batch padding would alter the STFT tail).
            inputs, words = proc.prepare_forced_aligner_inputs(audio=clips[i], transcript=texts[i], language=language)
            rows.append(inputs)
            word_lists.append(words[0])
        batch = _collate(rows, proc.tokenizer.pad_token_id)
        batch = {k: v.to(aligner.device) for k, v in batch.items()}
        batch["input_features"] = batch["input_features"].to(aligner.dtype)
        with torch.inference_mode():
            logits = aligner.model(**batch).logits
        decoded = proc.decode_forced_alignment(
            logits.float(), batch["input_ids"], word_lists, aligner.timestamp_token_id, aligner.segment_ms
        )
        for i, items in zip(group, decoded):
            out[i] = items
    return out  # type: ignore[return-value]


def _collate(rows: list, pad_id: int) -> dict[str, torch.Tensor]:
    """Right-padded batch of single-clip inputs: each row computes what it computes alone."""
    n = len(rows)
    width = max(r["input_ids"].shape[1] for r in rows)
    frames = max(r["input_features"].shape[-1] for r in rows)
    ids = torch.full((n, width), pad_id, dtype=torch.long)
    attention = torch.zeros((n, width), dtype=torch.long)
    mel = torch.zeros((n, rows[0]["input_features"].shape[1], frames))
    mel_mask = torch.zeros((n, frames), dtype=torch.long)
    for i, r in enumerate(rows):
        k, f = r["input_ids"].shape[1], r["input_features"].shape[-1]
        ids[i, :k], attention[i, :k] = r["input_ids"][0], 1
        mel[i, :, :f] = r["input_features"][0]
        mel_mask[i, :f] = r["input_features_mask"][0]
    return {"input_ids": ids, "attention_mask": attention, "input_features": mel, "input_features_mask": mel_mask}


# ---------------------------------------------------------------------------- pieces
def capacity(aligner: LoadedAligner, seconds: float) -> int:
    """The most units `seconds` of audio can hold: one per time bin."""
    return int(seconds * 1000 / aligner.segment_ms)


@dataclass
class Clip:
    """One piece's own 16 kHz samples, where it starts on the recording's timeline, and its text."""

    samples: np.ndarray
    start: float
    text: str


def align_clips(
    aligner: LoadedAligner,
    clips: Sequence[Clip],
    language: str | None = "English",
    raw: bool = False,
    batch_size: int = 8,
    skip_bad: bool = False,
    min_word_s: float | None = None,
) -> list[list[Word]]:
    """The words of each clip (a piece of at most `MAX_PIECE_S` with its text), times on the
    recording's timeline: one list per clip, empty for a clip without words.

    A clip longer than the limit, or whose text has more units than its audio can hold (one per
    `timestamp_segment_time`), raises AlignmentError; with `skip_bad` it gets no words instead (and
    a warning is logged), so one bad piece does not cost the others their words.
    """
    language = aligner_language(language)
    min_word_s = aligner.segment_ms / 1000 if min_word_s is None else min_word_s
    out: list[list[Word]] = [[] for _ in clips]
    jobs = []  # (index, clip, its units)
    for i, clip in enumerate(clips):
        units = split_units(aligner.processor, clip.text, language)
        if not units:
            continue
        try:
            _check(aligner, clip, len(units))
        except AlignmentError as err:
            if not skip_bad:
                raise
            log.warning("no word times for the piece at %.2f s: %s", clip.start, err)
            continue
        jobs.append((i, clip, units))
    if not jobs:
        return out
    decoded = _run(aligner, [c.samples for _, c, _ in jobs], [" ".join(u.text for u in units) for _, _, units in jobs], language, batch_size)
    for (i, clip, units), items in zip(jobs, decoded):
        if [it["text"] for it in items] != [u.text for u in units]:  # cannot happen: same splitter, same text
            raise AlignmentError(f"the aligner's units differ from the transcript's at {clip.start:.2f} s")
        offset = float(clip.start)
        words = [
            Word(it["text"] if raw else u.display, round(offset + it["start_time"], 3), round(offset + it["end_time"], 3))
            for it, u in zip(items, units)
        ]
        if not raw:
            end = round(offset + len(clip.samples) / SAMPLE_RATE, 3)
            for w in words:  # a bin past the piece's audio (the head reaches 400 s) means its end
                w.start, w.end = min(w.start, end), min(w.end, end)
            widen(words, offset, end, min_word_s)
        out[i] = words
    return out


def _check(aligner: LoadedAligner, clip: Clip, n_units: int) -> None:
    seconds = len(clip.samples) / SAMPLE_RATE
    if seconds > MAX_PIECE_S + PIECE_TOLERANCE_S or seconds * 1000 > aligner.num_bins * aligner.segment_ms:
        raise AlignmentError(
            f"the piece at {clip.start:.2f} s is {seconds:.1f} s long: align pieces of at most "
            f"{MAX_PIECE_S:g} s (medasr.pipeline.align.align cuts a whole recording into such pieces)"
        )
    if n_units > capacity(aligner, seconds):
        raise AlignmentError(
            f"{n_units} words cannot be aligned to {seconds:.2f} s of audio (at {clip.start:.2f} s): "
            f"at most {capacity(aligner, seconds)} fit, one per {aligner.segment_ms:g} ms. "
            "Is the transcript for this audio?"
        )


def align_pieces(
    aligner: LoadedAligner,
    samples: np.ndarray,
    pieces: Sequence[PieceText],
    language: str | None = "English",
    raw: bool = False,
    batch_size: int = 8,
    skip_bad: bool = False,
) -> list[Word]:
    """Words of every piece of the whole 16 kHz recording `samples`, in order; each piece (start,
    end in seconds and its text: a `Segment` will do) is at most `MAX_PIECE_S` long. See
    `align_clips` for errors."""
    clips = [Clip(samples[round(p.start * SAMPLE_RATE) : round(p.end * SAMPLE_RATE)], float(p.start), p.text) for p in pieces]
    return [w for words in align_clips(aligner, clips, language, raw, batch_size, skip_bad) for w in words]


def widen(words: list[Word], lo: float, hi: float, min_s: float) -> None:
    """Give runs of zero-length words `min_s` each, inside [previous word's end, next word's start]
    (or [lo, hi] at the ends), centred on where the aligner put them; in place."""
    i = 0
    while i < len(words):
        if words[i].end - words[i].start > 1e-6:
            i += 1
            continue
        j = i
        while j < len(words) and words[j].end - words[j].start <= 1e-6:
            j += 1
        left = words[i - 1].end if i > 0 else lo
        right = words[j].start if j < len(words) else hi
        want = (j - i) * min_s
        a = max(left, words[i].start - want / 2)
        b = min(right, words[j - 1].end + want / 2)
        if b - a < want:  # one side is short of room: take it from the other
            a = max(left, b - want)
            b = min(right, a + want)
        if b > a:
            step = (b - a) / (j - i)
            for k in range(i, j):
                words[k].start = round(a + (k - i) * step, 3)
                words[k].end = round(a + (k - i + 1) * step, 3)
        i = j


# ---------------------------------------------------------------------------- whole recordings
def align(
    aligner: LoadedAligner,
    samples: np.ndarray,
    text: str,
    language: str | None = "English",
    raw: bool = False,
    vad: VadOptions | None = None,
    batch_size: int = 8,
) -> list[Word]:
    """Words of `text` on the whole 16 kHz recording `samples` (any length).

    An empty transcript (or one without letters or digits) gives no words. Raises
    AlignmentError for empty audio, audio without speech, or more words than the audio can hold.
    """
    language = aligner_language(language)
    units = split_units(aligner.processor, text, language)
    if not units:
        return []
    duration = len(samples) / SAMPLE_RATE
    if duration == 0:
        raise AlignmentError("the audio is empty: nothing to align the transcript to")
    if len(units) > capacity(aligner, duration):
        raise AlignmentError(
            f"the transcript has {len(units)} words but the audio is {duration:.2f} s long: at most "
            f"{capacity(aligner, duration)} words fit, one per {aligner.segment_ms:g} ms. Is it the transcript of this audio?"
        )
    options = VadOptions(max_piece_s=MAX_PIECE_S) if vad is None else vad
    found = speech_pieces(samples.astype(np.float32), options)
    if not found:
        raise AlignmentError(f"no speech found in the audio ({duration:.1f} s, speech detection: {options.method})")
    if duration <= MAX_PIECE_S:
        return align_pieces(aligner, samples, [_Piece(0.0, duration, text)], language, raw, batch_size)
    spans = [(p.start, p.end, sum(b - a for a, b in p.regions) or p.duration) for p in found]
    texts = share_out(units, [s for _, _, s in spans], [capacity(aligner, b - a) for a, b, _ in spans])
    chosen = [_Piece(a, b, t) for (a, b, _), t in zip(spans, texts) if t]
    log.info("aligning %d words in %d pieces of speech", len(units), len(chosen))
    return align_pieces(aligner, samples, chosen, language, raw, batch_size)


@dataclass
class _Piece:
    start: float
    end: float
    text: str


def share_out(units: list[Unit], speech_s: list[float], capacities: list[int] | None = None) -> list[str]:
    """The units' written forms shared out among pieces in proportion to each piece's speech,
    each cut moved to a nearby sentence end (else clause end) when there is one, and no piece
    given more units than its capacity (when given); one text per piece."""
    n, m = len(units), len(speech_s)
    caps = list(capacities) if capacities is not None else [n] * m
    weights = np.array([len(u.text) + 2.0 for u in units])  # ~ spoken length, with the gap after
    cum = np.concatenate([[0.0], np.cumsum(weights)])
    total_speech = float(sum(speech_s)) or 1.0
    bounds, done = [0], 0.0
    for k, s in enumerate(speech_s[:-1]):
        done += s
        target = cum[-1] * done / total_speech
        ideal = int(np.argmin(np.abs(cum - target)))
        reach = max(3, int(0.25 * n * s / total_speech))
        lo = max(bounds[-1], n - sum(caps[k + 1 :]))  # what the later pieces cannot hold stays here
        hi = min(n, bounds[-1] + caps[k])
        best, best_cost = max(lo, min(ideal, hi)), float("inf")
        for b in range(max(lo, ideal - reach), min(hi, ideal + reach) + 1):
            after = units[b - 1] if b > 0 else None
            penalty = 0.0 if after is None or after.sentence_end else 1.5 if after.clause_end else 3.0
            cost = abs(cum[b] - target) / weights.mean() + penalty
            if cost < best_cost:
                best, best_cost = b, cost
        bounds.append(best)
    bounds.append(n)
    return [" ".join(u.display for u in units[a:b]) for a, b in zip(bounds, bounds[1:])]
