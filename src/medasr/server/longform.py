"""Audio longer than one piece: split it so its pieces share batches, then join the answers.

The cutting and the merging are the library's own (`medasr.transcribe.vad_options`,
`merge_pieces`), so the server answers what `medasr transcribe` would.
"""

from __future__ import annotations

import logging
import zlib
from dataclasses import dataclass

import numpy as np

from medasr.audio import SAMPLE_RATE
from medasr.engine import Result
from medasr.formats import verbose_json
from medasr.records import Segment, Transcript
from medasr.transcribe import MIN_PIECE_S, merge_pieces, vad_options
from medasr.vad import Piece, pieces_and_duration

log = logging.getLogger(__name__)


@dataclass
class Split:
    """What to send to the engine for one upload."""

    duration: float
    pieces: list[Piece] | None  # None: a short clip, sent whole
    sent: list[int]  # for each request, the index of its piece (pieces too short are not sent)
    samples: list[np.ndarray]  # for each request, its audio


def split(samples: np.ndarray, max_piece_s: float, method: str) -> Split:
    duration = len(samples) / SAMPLE_RATE
    if duration <= max_piece_s:
        return Split(duration, None, [0], [samples])
    try:
        found, _ = pieces_and_duration(samples, vad_options(method, max_piece_s))
    except Exception as err:  # e.g. silero's weights missing: still cut, at the quietest points
        log.warning("VAD %r failed (%s); cutting at quiet points instead", method, err)
        found, _ = pieces_and_duration(samples, vad_options("none", max_piece_s))
    sent = [k for k, p in enumerate(found) if p.duration >= MIN_PIECE_S]
    return Split(duration, found, sent, [found[k].slice(samples) for k in sent])


def piece_text(s: Split, r: Result) -> str:
    """A piece's text as it appears in the merged transcript."""
    return r.text if s.pieces is None else " ".join(r.text.split())


def merge(s: Split, results: list[Result], language: str | None) -> Transcript:
    if s.pieces is None:  # as the library does for a short clip: one segment spanning it
        (r,) = results
        segments = [Segment(0.0, round(s.duration, 3), r.text)] if r.text else []
        return Transcript("upload", r.text, r.language, round(s.duration, 3), segments, hit_token_cap=r.hit_token_cap)
    by_piece: list[Result | None] = [None] * len(s.pieces)
    for k, r in zip(s.sent, results):
        by_piece[k] = r
    return merge_pieces("upload", s.duration, s.pieces, by_piece, language)


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
