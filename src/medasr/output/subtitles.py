"""Readable subtitle cues (srt, vtt) from a transcript's words, or from its segments.

Broadcast practice (the project reference notes, alignment.md): a cue holds at most `MAX_LINES` lines of
`MAX_LINE_CHARS` characters and stays at most `MAX_CUE_S` on screen, at least `MIN_CUE_S` where
the next cue leaves room. Cues end at sentence ends and at pauses of `PAUSE_S` or more; a cue
that would grow past the limits is cut at its last clause end, else at its longest pause, else
before the word that does not fit, and never after an article or a preposition where another
cut will do. Lines are balanced and broken only between words; a single word longer than a line
stays whole.

With word times (a forced aligner ran: `Transcript.words`) every cue starts at its first word's
start and ends at its last word's end. Without them the only times are the segments' (pieces of
speech of up to 30 s): each segment's words are given times spread evenly by characters over the
segment, so cue boundaries inside a segment are APPROXIMATE (interpolated, not measured), while
cues never cross a segment boundary.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from medasr.records import Segment, Word

MAX_LINE_CHARS = 42
MAX_LINES = 2
MAX_CUE_S = 7.0
MIN_CUE_S = 1.0
PAUSE_S = 0.6  # a silence this long between words ends a cue
SENTENCE_END = (".", "?", "!")
CLAUSE_END = (",", ";", ":", "—", "–", "-")
_CLOSERS = "\"')]}»”’"
# Words a cue or a line should not end on: the next word belongs with them.
_LEAD_INS = frozenset(
    "a an the of to in on at for with by from and or but as per than this that these those his her "
    "its their our your my no not".split()
)


@dataclass
class Cue:
    start: float
    end: float
    text: str  # one or two lines joined by "\n"


def _clean(word: str) -> str:
    # One line per word: a blank line would end the cue, and "-->" would read as a timing line.
    return " ".join(word.split()).replace("-->", "->")


def _ends(word: str, marks: tuple[str, ...]) -> bool:
    return word.rstrip(_CLOSERS).endswith(marks)


def _lead_in(word: str) -> bool:
    return word.lower().strip(_CLOSERS + "\"'([{") in _LEAD_INS


def lines(words: Sequence[str], width: int = MAX_LINE_CHARS) -> list[str]:
    """`words` as one line, or two balanced lines cut between words (preferably after punctuation,
    not after an article); None-free: a text that fits in no two lines comes back as best it can."""
    text = " ".join(words)
    if len(text) <= width or len(words) < 2:
        return [text]
    best, best_cost = None, None
    for k in range(1, len(words)):
        a, b = " ".join(words[:k]), " ".join(words[k:])
        over = max(0, len(a) - width) + max(0, len(b) - width)
        cost = (over * 100, abs(len(a) - len(b)) - (12 if _ends(words[k - 1], SENTENCE_END + CLAUSE_END) else 0) + (12 if _lead_in(words[k - 1]) else 0))
        if best_cost is None or cost < best_cost:
            best, best_cost = [a, b], cost
    return best  # type: ignore[return-value]


def fits(words: Sequence[str]) -> bool:
    """Whether `words` fit in MAX_LINES lines of MAX_LINE_CHARS (two lines: some cut fits both)."""
    return all(len(line) <= MAX_LINE_CHARS for line in lines(words)) and len(lines(words)) <= MAX_LINES


# ---------------------------------------------------------------------------- cues from words
def cues_from_words(words: Sequence[Word], bounds: Sequence[tuple[float, float]] | None = None) -> list[Cue]:
    """Cues over timed words. `bounds`: stretches (start, end) no cue may cross (segments)."""
    items = [(w, _clean(w.word)) for w in words if _clean(w.word)]
    groups: list[list[tuple[Word, str]]] = []
    current: list[tuple[Word, str]] = []
    for i, (w, text) in enumerate(items):
        if current and _must_break(current, w, bounds):
            groups.append(current)
            current = []
        while current and not _room_for(current, w, text):
            keep = _cut(current)
            groups.append(current[:keep])
            current = current[keep:]
        current.append((w, text))
        nxt = items[i + 1][0] if i + 1 < len(items) else None
        if _ends(text, SENTENCE_END) and (nxt is None or not _too_short_alone(current, nxt)):
            groups.append(current)
            current = []
    if current:
        groups.append(current)
    return _timed(groups)


def _must_break(current, w: Word, bounds) -> bool:
    last = current[-1][0]
    if w.start - last.end >= PAUSE_S:
        return True
    if bounds:
        return _bound_index(last.start, bounds) != _bound_index(w.start, bounds)
    return False


def _bound_index(t: float, bounds) -> int:
    for i, (a, b) in enumerate(bounds):
        if a - 1e-6 <= t < b - 1e-6 or (i == len(bounds) - 1 and t >= a):
            return i
    return -1


def _room_for(current, w: Word, text: str) -> bool:
    return w.end - current[0][0].start <= MAX_CUE_S and fits([t for _, t in current] + [text])


def _too_short_alone(current, nxt: Word) -> bool:
    """A sentence shorter than MIN_CUE_S keeps the next words company, unless a pause follows."""
    span = current[-1][0].end - current[0][0].start
    return span < MIN_CUE_S and nxt.start - current[-1][0].end < PAUSE_S / 2


def _cut(current) -> int:
    """How many words of a full cue to show now: up to its last clause end, else its longest
    pause, else all; never ending on an article or preposition if another cut exists."""
    n = len(current)
    if n == 1:
        return 1
    candidates = [k for k in range(1, n) if not _lead_in(current[k - 1][1])] or list(range(1, n))
    clause = [k for k in candidates if _ends(current[k - 1][1], SENTENCE_END + CLAUSE_END) and k >= n // 3]
    if clause:
        return clause[-1]
    gaps = {k: current[k][0].start - current[k - 1][0].end for k in candidates}
    best = max(gaps, key=lambda k: (round(gaps[k], 2), k))
    if gaps[best] >= 0.15 and best >= n // 3:
        return best
    return candidates[-1] if candidates[-1] < n else n


def _timed(groups) -> list[Cue]:
    cues = []
    for g in groups:
        if g:
            start = g[0][0].start
            end = min(max(g[-1][0].end, start), start + MAX_CUE_S)  # a word alone longer than that: cut short
            cues.append(Cue(start, end, "\n".join(lines([t for _, t in g]))))
    # At least MIN_CUE_S on screen where the next cue leaves room; never overlapping it.
    for i, c in enumerate(cues):
        limit = cues[i + 1].start if i + 1 < len(cues) else c.start + MIN_CUE_S
        if c.end - c.start < MIN_CUE_S:
            c.end = max(c.end, min(c.start + MIN_CUE_S, limit))
    return cues


# ---------------------------------------------------------------------------- cues from segments
def interpolated_words(segment: Segment) -> list[Word]:
    """The segment's words with times spread over it in proportion to their characters
    (APPROXIMATE: used only where no aligner gave word times)."""
    tokens = segment.text.split()
    if not tokens:
        return []
    total = sum(len(t) + 1 for t in tokens)
    span = max(0.0, segment.end - segment.start)
    out, pos = [], 0
    for t in tokens:
        a = segment.start + span * pos / total
        pos += len(t) + 1
        out.append(Word(t, a, segment.start + span * (pos - 1) / total))
    return out


def cues(segments: Sequence[Segment], words: Sequence[Word] | None = None) -> list[Cue]:
    """Subtitle cues for a transcript: from its words when it has them, else from its segments."""
    if words:
        return cues_from_words(words)
    pseudo, bounds = [], []
    for s in segments:
        w = interpolated_words(s)
        if w:
            pseudo += w
            bounds.append((s.start, max(s.end, s.start)))
    return cues_from_words(pseudo, bounds)
