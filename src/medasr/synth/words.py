"""Synthetic speech with exact word times, for training and measuring forced aligners.

espeak-ng reports, while it synthesises, a *word event* at the output sample where each word's
phonemes begin (libespeak-ng's `espeakEVENT_WORD`, with the word's character position in the
text). Read through ctypes in synchronous mode, these give word starts on the sample grid of the
audio itself, for whole sentences spoken with natural coarticulation (rendering words one by one
and joining them would give isolated-word prosody that the demo models never hear otherwise).

A written word (a whitespace token such as "2.5" or "x-ray") may be spoken as several words
("two point five"): its start is its first event's. Its end is the last sound before the next
word's start: espeak-ng's pauses are digitally silent, so trailing silence (below
`SILENCE_DBFS` in 2 ms windows; quiet fricatives reach -60 dBFS) is trimmed from each word, and leading silence (a pause before a
sentence, a stop's closure after one) from its start. Times are in seconds on the returned 16 kHz
signal. The `espeak-ng` command line (`medasr.synth.sentences`) drives the same library with the same
voice, speed and pitch settings.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import threading
from dataclasses import dataclass, field

import numpy as np

from medasr.audio.decode import SAMPLE_RATE
from medasr.errors import UserError

SILENCE_DBFS = -66.0  # quieter than this within a 2 ms window counts as silence (pauses are ~-80)
_WINDOW_S = 0.002
# speak_lib.h
_AUDIO_OUTPUT_SYNCHRONOUS = 2
_EVENT_LIST_TERMINATED, _EVENT_WORD, _EVENT_PHONEME = 0, 1, 7
_INITIALIZE_PHONEME_EVENTS = 1
_POS_CHARACTER, _CHARS_UTF8 = 1, 1
_RATE, _PITCH = 1, 3


class _Event(ctypes.Structure):
    _fields_ = [
        ("type", ctypes.c_int),
        ("unique_identifier", ctypes.c_uint),
        ("text_position", ctypes.c_int),  # 1-based position of the word in the text, in code points
        ("length", ctypes.c_int),
        ("audio_position", ctypes.c_int),  # milliseconds
        ("sample", ctypes.c_int),  # output sample index (at the library's rate)
        ("user_data", ctypes.c_void_p),
        ("id", ctypes.c_char * 8),
    ]


class _Voice(ctypes.Structure):
    _fields_ = [
        ("name", ctypes.c_char_p),
        ("languages", ctypes.c_char_p),
        ("identifier", ctypes.c_char_p),
        ("gender", ctypes.c_ubyte),
        ("age", ctypes.c_ubyte),
        ("variant", ctypes.c_ubyte),
        ("xx1", ctypes.c_ubyte),
        ("score", ctypes.c_int),
        ("spare", ctypes.c_void_p),
    ]


_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.POINTER(_Event))


@dataclass
class TimedWord:
    text: str  # the whitespace-separated token as written, punctuation included
    start: float  # seconds
    end: float


@dataclass
class TimedSpeech:
    text: str
    samples: np.ndarray  # 16 kHz mono float32
    words: list[TimedWord] = field(default_factory=list)

    @property
    def duration(self) -> float:
        return len(self.samples) / SAMPLE_RATE


class _Espeak:
    """libespeak-ng in synchronous mode. The library keeps global state: one synthesis at a time."""

    def __init__(self):
        name = ctypes.util.find_library("espeak-ng") or "libespeak-ng.so.1"
        try:
            self.lib = ctypes.CDLL(name)
        except OSError as err:
            raise UserError(
                "libespeak-ng is not installed (apt-get install libespeak-ng1 espeak-ng): it is needed "
                "to synthesise speech with word times"
            ) from err
        self.rate = self.lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, None, _INITIALIZE_PHONEME_EVENTS)
        self.lib.espeak_TextToPhonemes.restype = ctypes.c_char_p
        if self.rate <= 0:
            raise UserError("libespeak-ng failed to initialise (is espeak-ng-data installed?)")
        self.lock = threading.Lock()
        self._chunks: list[np.ndarray] = []
        self._events: list[tuple[int, int]] = []
        self._phonemes: list[int] = []
        self._callback = _CALLBACK(self._collect)  # kept referenced: the library calls it
        self.lib.espeak_SetSynthCallback(self._callback)

    def _collect(self, wav, n, events) -> int:
        if n > 0 and wav:
            self._chunks.append(np.ctypeslib.as_array(wav, shape=(n,)).copy())
        i = 0
        while events[i].type != _EVENT_LIST_TERMINATED:
            if events[i].type == _EVENT_WORD and events[i].text_position > 0:
                self._events.append((events[i].text_position, events[i].sample))
            elif events[i].type == _EVENT_PHONEME:
                self._phonemes.append(events[i].sample)
            i += 1
        return 0

    def _set_voice(self, voice: str) -> None:
        # As the espeak-ng command line does: by name ("en-us+f3"), else by language ("en-gb").
        if self.lib.espeak_SetVoiceByName(voice.encode("utf-8")) == 0:
            return
        spec = _Voice()
        spec.languages = voice.encode("utf-8")
        if self.lib.espeak_SetVoiceByProperties(ctypes.byref(spec)) != 0:
            raise UserError(f"espeak-ng has no voice {voice!r} (see `espeak-ng --voices=en`)")

    def phoneme_count(self, word: str, voice: str) -> int:
        """How many phonemes espeak-ng gives `word` on its own (stress marks are not phonemes)."""
        with self.lock:
            self._set_voice(voice)
            text = ctypes.c_char_p(word.encode("utf-8"))
            out = self.lib.espeak_TextToPhonemes(ctypes.byref(text), _CHARS_UTF8, ord("|") << 8) or b""
        units = out.decode("utf-8", "replace").replace("'", "").replace(",", "").replace("|", " ").split()
        return len(units)

    def synth(self, text: str, voice: str, speed: int, pitch: int) -> tuple[np.ndarray, list[tuple[int, int]], list[int]]:
        """int16 samples at `self.rate`, (1-based char position, sample) per word event, and the
        sample of each phoneme event."""
        with self.lock:
            self._set_voice(voice)
            self.lib.espeak_SetParameter(_RATE, int(speed), 0)
            self.lib.espeak_SetParameter(_PITCH, int(pitch), 0)
            self._chunks, self._events, self._phonemes = [], [], []
            data = text.encode("utf-8") + b"\0"
            self.lib.espeak_Synth(data, len(data), 0, _POS_CHARACTER, 0, _CHARS_UTF8, None, None)
            self.lib.espeak_Synchronize()
            wav = np.concatenate(self._chunks) if self._chunks else np.zeros(0, np.int16)
            return wav, list(self._events), sorted(self._phonemes)


_ENGINE: _Espeak | None = None


def _engine() -> _Espeak:
    global _ENGINE
    if _ENGINE is None:
        _ENGINE = _Espeak()
    return _ENGINE


def _tokens(text: str) -> list[tuple[int, int]]:
    """(start, end) character spans of the whitespace-separated tokens."""
    spans, i = [], 0
    while i < len(text):
        if text[i].isspace():
            i += 1
            continue
        j = i
        while j < len(text) and not text[j].isspace():
            j += 1
        spans.append((i, j))
        i = j
    return spans


def speak_timed(text: str, voice: str = "en-us", speed: int = 175, pitch: int = 50) -> TimedSpeech:
    """`text` spoken by espeak-ng, resampled to 16 kHz, with each written word's start and end.

    Tokens without letters or digits ("-", "&") get no time and are left out of `words`.
    espeak-ng speaks some function words together with the word before ("of the", "in the") and
    reports one word event for both; the later word then starts at its own first phoneme,
    counted back from the end of the group by the phonemes espeak-ng gives it alone.
    Raises UserError when a word cannot be timed that way.
    """
    import soxr

    if not text.strip():
        raise ValueError("speak_timed: empty text")
    engine = _engine()
    wav, events, phonemes = engine.synth(text, voice, speed, pitch)
    samples = soxr.resample(wav.astype(np.float32) / 32768.0, engine.rate, SAMPLE_RATE).astype(np.float32)
    scale = SAMPLE_RATE / engine.rate

    spans = _tokens(text)
    starts: list[int | None] = [None] * len(spans)  # at the library's rate until the end
    for position, sample in events:
        k = next((k for k, (a, b) in enumerate(spans) if a <= position - 1 < b), None)
        if k is not None and (starts[k] is None or sample < starts[k]):
            starts[k] = sample
    timed = [k for k, (a, b) in enumerate(spans) if any(c.isalnum() for c in text[a:b])]
    heads = [k for k in timed if starts[k] is not None]
    if not heads or heads[0] != timed[0]:
        raise UserError(f"espeak-ng gave no word event for the first word of {text!r}")
    for i, head in enumerate(heads):
        merged = [k for k in timed if head < k < (heads[i + 1] if i + 1 < len(heads) else len(spans))]
        if merged:
            group_end = starts[heads[i + 1]] if i + 1 < len(heads) else len(wav)
            _split_group(engine, text, spans, starts, head, merged, phonemes, group_end, voice)

    loud = _loud_windows(samples)
    at = [(k, round(starts[k] * scale)) for k in timed]
    words = []
    for i, (k, start) in enumerate(at):
        limit = at[i + 1][1] if i + 1 < len(at) else len(samples)
        a, b = _sounding(loud, start, limit)
        words.append(TimedWord(text[spans[k][0] : spans[k][1]], float(a / SAMPLE_RATE), float(b / SAMPLE_RATE)))
    return TimedSpeech(text, samples, words)


def _split_group(engine, text, spans, starts, head, merged, phonemes, group_end, voice) -> None:
    """Start times for the words spoken inside the word event of `head`, from its phonemes."""
    inside = [p for p in phonemes if starts[head] <= p < group_end]
    need = [engine.phoneme_count(text[spans[k][0] : spans[k][1]], voice) for k in merged]
    if any(n == 0 for n in need) or sum(need) >= len(inside):
        raise UserError(f"cannot time {[text[spans[k][0]:spans[k][1]] for k in merged]} inside {text!r}")
    pos = len(inside)
    for k, n in zip(reversed(merged), reversed(need)):
        pos -= n
        starts[k] = inside[pos]


def _loud_windows(samples: np.ndarray) -> np.ndarray:
    """Per 2 ms window: True where the peak is above SILENCE_DBFS."""
    hop = int(_WINDOW_S * SAMPLE_RATE)
    n = len(samples) // hop * hop
    peaks = np.abs(samples[:n]).reshape(-1, hop).max(axis=1) if n else np.zeros(0)
    tail = np.abs(samples[n:]).max(initial=0.0)
    return np.append(peaks, tail) > 10 ** (SILENCE_DBFS / 20)


def _sounding(loud: np.ndarray, start: int, limit: int) -> tuple[int, int]:
    """The first and last sounding sample of [start, limit): silence trimmed at both ends."""
    hop = int(_WINDOW_S * SAMPLE_RATE)
    # Whole windows only: the one holding `limit` may already hold the next word's onset.
    a, b = start // hop, max(start // hop + 1, limit // hop)
    idx = np.flatnonzero(loud[a:b])
    if len(idx) == 0:  # all silent (cannot happen for a spoken word): keep the event's span
        return start, max(start, limit)
    return max(start, (a + idx[0]) * hop), min(limit, (a + idx[-1] + 1) * hop)
