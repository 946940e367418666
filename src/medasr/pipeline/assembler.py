"""Assembler: a plan's pieces and their results -> one `Transcript`, in one place for everyone.

The library, the CLI, the server (uploads, chat) and live streams' finals all build their
transcripts here, so the same audio gives the same segments, scores and text whatever asked.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence

from medasr.pipeline.engine import Result
from medasr.pipeline.segmenter import Plan
from medasr.records import Segment, Transcript


def assemble(plan: Plan, results: Sequence[Result | None], language: str | None, temperature: float = 0.0) -> Transcript:
    """One transcript from a plan and the results of its pieces (None: not transcribed).

    A clip sent whole is one segment spanning the clip. Pieces of a long recording give one
    segment each (on the original timeline; pieces that gave no text give none), and the text
    is their texts joined by single spaces. The language is the forced one, or the one detected
    for most audio. Scores: each segment's mean token log-probability and the model's
    no-speech probability; the transcript's confidence is exp(mean log-probability) over all
    its generated tokens; `logprobs` lists the transcript's tokens with their log-probabilities.
    """
    segments: list[Segment] = []
    detected: Counter = Counter()
    capped = False
    logprobs, total, count = [], 0.0, 0
    for piece, r in zip(plan.pieces, results):
        if r is None:
            continue
        capped = capped or r.hit_token_cap
        if r.language:
            detected[r.language] += piece.duration
        total += sum(r.logprobs)
        count += len(r.logprobs)
        text = r.text if plan.whole else " ".join(r.text.split())
        if not text:
            continue
        start, end = (0.0, plan.duration) if plan.whole else (piece.start, piece.end)
        segments.append(Segment(
            round(start, 3), round(end, 3), text, tokens=list(r.text_token_ids),
            avg_logprob=None if r.avg_logprob is None else round(r.avg_logprob, 6),
            no_speech_prob=r.no_speech_prob, temperature=temperature,
        ))  # fmt: skip
        logprobs.extend(r.text_tokens)
    lang = language or (detected.most_common(1)[0][0] if detected else "")
    text = segments[0].text if plan.whole and segments else " ".join(s.text for s in segments)
    confidence = round(math.exp(total / count), 6) if count else None
    return Transcript(plan.source, text, lang, round(plan.duration, 3), segments, hit_token_cap=capped,
                      logprobs=logprobs, confidence=confidence)  # fmt: skip


def failed(source: str, duration: float, error: str, code: str = "invalid_audio") -> Transcript:
    """The transcript of an input that could not be transcribed: no text, the error and its code."""
    return Transcript(source, "", "", duration, error=error, error_code=code)
