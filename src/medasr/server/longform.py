"""Audio longer than one piece: split it so its pieces share batches, then join the answers."""

from __future__ import annotations

import logging
import zlib
from dataclasses import dataclass

import numpy as np

from medasr.audio import SAMPLE_RATE
from medasr.engine import Result
from medasr.formats import verbose_json
from medasr.records import Segment, Transcript

log = logging.getLogger(__name__)


@dataclass
class Span:
    """One piece to transcribe; times in seconds on the upload's timeline."""

    start: float
    end: float
    samples: np.ndarray


def split(samples: np.ndarray, max_piece_s: float, method: str) -> list[Span]:
    """One span for short audio; otherwise medasr.vad's pieces (silence between them dropped)."""
    duration = len(samples) / SAMPLE_RATE
    if duration <= max_piece_s:
        return [Span(0.0, duration, samples)]
    from medasr.vad import VadOptions, pieces

    try:
        found = pieces(samples, VadOptions(method=method, max_piece_s=max_piece_s))
    except Exception as err:  # e.g. silero's weights missing: still cut at quiet points
        log.warning("VAD %r failed (%s); cutting at the quietest points instead", method, err)
        found = pieces(samples, VadOptions(method="none", max_piece_s=max_piece_s))
    return [Span(p.start, p.end, p.slice(samples)) for p in found]


def merge(spans: list[Span], results: list[Result], duration: float, language: str | None) -> Transcript:
    segments = [Segment(round(s.start, 3), round(s.end, 3), r.text.strip()) for s, r in zip(spans, results) if r.text.strip()]
    detected = next((r.language for r in results if r.language), "")
    return Transcript(
        source="upload",
        text=" ".join(s.text for s in segments),
        language=language or detected,
        duration=round(duration, 3),
        segments=segments,
        hit_token_cap=any(r.hit_token_cap for r in results),
    )


def verbose(t: Transcript) -> dict:
    """OpenAI's verbose_json, with the per-segment fields its client types require."""
    out = verbose_json(t)
    out["language"] = (t.language or "").lower()
    for seg in out["segments"]:
        raw = seg["text"].encode()
        seg.setdefault("avg_logprob", 0.0)  # not computed: greedy decoding keeps no scores
        seg.setdefault("compression_ratio", round(len(raw) / max(1, len(zlib.compress(raw))), 3))
        seg.setdefault("no_speech_prob", 0.0)
    out["usage"] = {"type": "duration", "seconds": t.duration}
    return out
