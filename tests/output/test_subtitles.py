"""Readable subtitle cues (medasr.output.subtitles): limits of broadcast practice, cuts at sentence and
clause ends and pauses, never inside a word; word times when there are words, interpolation inside
segments when there are none."""

from __future__ import annotations

import pytest

from medasr.output.subtitles import MAX_CUE_S, MAX_LINE_CHARS, MIN_CUE_S, cues, interpolated_words, lines
from medasr.records import Segment, Word

DICTATION = (
    "The patient was started on 40 milligrams of atorvastatin once daily. Chest pain radiating to the "
    "left arm, no shortness of breath. No. Blood pressure 120 over 80, heart rate 72, oxygen saturation "
    "98 percent, and respiratory rate 16 breaths per minute on room air this morning. Follow up in the "
    "cardiology clinic in three months with a repeat echocardiogram and a lipid panel."
)


def timed(text: str, pause_after_sentence: float = 0.9, start: float = 0.5) -> list[Word]:
    """Words at a steady speaking rate (~13 characters/s), pauses after sentences."""
    out, t = [], start
    for w in text.split():
        d = 0.07 * len(w) + 0.08
        out.append(Word(w, round(t, 3), round(t + d, 3)))
        t += d + (pause_after_sentence if w.endswith(".") else 0.04)
    return out


def check_limits(cs, words=None):
    for c in cs:
        assert 1 <= len(c.text.split("\n")) <= 2 and all(len(line) <= MAX_LINE_CHARS for line in c.text.split("\n")), c
        assert c.end - c.start <= MAX_CUE_S + 1e-9, c
    assert all(a.end <= b.start + 1e-9 for a, b in zip(cs, cs[1:]))  # ordered, never overlapping
    if words is not None:  # never inside a word: the cues hold the words, in order, whole
        assert " ".join(c.text.replace("\n", " ") for c in cs) == " ".join(w.word for w in words)


def test_cues_from_words_meet_the_limits_and_cut_where_a_reader_expects():
    words = timed(DICTATION)
    cs = cues([], words)
    check_limits(cs, words)
    texts = [c.text.replace("\n", " ") for c in cs]
    assert texts[0] == "The patient was started on 40 milligrams of atorvastatin once daily."  # a sentence per cue
    assert "No." in texts[2] and texts[1].endswith("breath.")
    assert all(t.split()[-1].lower() not in ("the", "a", "of", "to", "in", "and") for t in texts)  # no dangling article
    long_sentence = [t for t in texts if "respiratory" in t or "saturation" in t]
    assert len(long_sentence) >= 2 and any(t.endswith(",") for t in long_sentence)  # cut at a clause end
    k = 0
    for c, t in zip(cs, texts):  # times come from the words: first word's start, last word's end (or later)
        n = len(t.split())
        assert c.start == words[k].start and c.end >= words[k + n - 1].end - 1e-9
        k += n


def test_pauses_end_cues_and_short_cues_stay_a_second_where_there_is_room():
    words = [Word("Give", 0.0, 0.3), Word("metoprolol", 0.35, 0.9), Word("now", 2.0, 2.2), Word("please.", 2.25, 2.6)]
    cs = cues([], words)
    assert [(c.start, c.end, c.text) for c in cs] == [(0.0, 1.0, "Give metoprolol"), (2.0, 3.0, "now please.")]
    tight = [Word("Yes.", 0.0, 0.2), Word("Stop", 0.4, 0.7), Word("here.", 0.7, 0.9)]  # a short sentence keeps company
    assert [c.text for c in cues([], tight)] == ["Yes. Stop here."]
    apart = [Word("Yes.", 0.0, 0.2), Word("Stop.", 0.7, 0.9)]
    c1, c2 = cues([], apart)
    assert c1.end == 0.7 and c2.end == pytest.approx(0.7 + MIN_CUE_S)  # held until the next cue starts


def test_lines_are_balanced_and_never_split_a_word():
    words = "Chest pain radiating to the left arm, no shortness of breath.".split()
    two = lines(words)
    assert len(two) == 2 and all(len(x) <= MAX_LINE_CHARS for x in two) and " ".join(two) == " ".join(words)
    assert two[0].endswith("arm,")  # after punctuation when that balances well enough
    assert lines(["Pneumonoultramicroscopicsilicovolcanoconiosis-related"]) == ["Pneumonoultramicroscopicsilicovolcanoconiosis-related"]


def test_without_words_sentences_are_interpolated_inside_their_segment():
    segs = [Segment(0.0, 36.0, DICTATION), Segment(40.0, 42.0, "Thank you."), Segment(50.0, 51.0, "  ")]
    pseudo = interpolated_words(segs[0])
    assert pseudo[0].start == 0.0 and pseudo[-1].end == pytest.approx(36.0, abs=0.2)
    cs = cues(segs)
    check_limits(cs)
    assert " ".join(c.text.replace("\n", " ") for c in cs) == DICTATION + " Thank you."
    assert not any(c.start < 40.0 < c.end for c in cs)  # no cue crosses a segment boundary
    assert cs[-1].start == 40.0 and cues([]) == [] and cues([Segment(0.0, 5.0, "")]) == []
