"""Synthetic speech with exact word times (libespeak-ng word and phoneme events)."""

from __future__ import annotations

import numpy as np
import pytest

from medasr.audio.decode import SAMPLE_RATE
from medasr.errors import UserError
from medasr.synth.words import SILENCE_DBFS, speak_timed


def _peak(samples, a, b):
    return float(np.abs(samples[int(a * SAMPLE_RATE) : int(b * SAMPLE_RATE)]).max(initial=0.0))


def test_every_written_word_gets_its_time_on_the_audio():
    text = "Repeat the ultrasound of the cervical spine in 2.5 weeks, then stop x-ray -- now."
    s = speak_timed(text, "en-us", 175, 50)
    assert [w.text for w in s.words] == [t for t in text.split() if t != "--"]  # "--" has no letters: no time
    assert all(0.0 <= w.start < w.end <= s.duration for w in s.words)
    assert all(a.end <= b.start for a, b in zip(s.words, s.words[1:]))
    quiet = 10 ** (SILENCE_DBFS / 20)
    assert all(_peak(s.samples, w.start, w.end) > 100 * quiet for w in s.words)  # each span holds sound
    # espeak-ng speaks "of the" as one word event: "the" gets its own start from the phonemes
    the = [w for w in s.words if w.text == "the"]
    assert len(the) == 2 and all(w.end - w.start > 0.03 for w in the)
    # the pause after "weeks," is silence between the two words' spans
    weeks, then = next((a, b) for a, b in zip(s.words, s.words[1:]) if a.text == "weeks,")
    assert then.start - weeks.end > 0.05 and _peak(s.samples, weeks.end + 0.004, then.start - 0.004) <= quiet


def test_voices_speeds_and_bad_input():
    slow = speak_timed("Give metoprolol now.", "en-gb+f3", 140, 35)
    fast = speak_timed("Give metoprolol now.", "en-us", 185, 65)
    assert slow.duration > fast.duration and len(slow.words) == len(fast.words) == 3
    with pytest.raises(UserError, match="no voice"):
        speak_timed("Hello.", "xx-nonexistent")
    with pytest.raises(ValueError, match="empty"):
        speak_timed("   ")
