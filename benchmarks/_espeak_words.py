"""Where each word of an espeak-ng rendering ends, from espeak-ng's own word events.

`medasr.synth.sentences.render` runs the espeak-ng command line; its library (libespeak-ng, which the
command uses) synthesises the same samples and reports, for every word, the sample where it
begins. A word ends where its sound does: the last audible sample before the next word begins
(the last word: before the end of the clip). Times are in seconds from the start of the clip;
espeak-ng renders at 22.05 kHz and `render` resamples to 16 kHz with a linear-phase filter, so
times carry over.
"""

from __future__ import annotations

import ctypes
import ctypes.util

import numpy as np

AUDIBLE = 300  # int16 amplitude (~ -40 dBFS): quieter samples between words are silence
_WORD = 1  # espeakEVENT_WORD
_SYNCHRONOUS = 2  # AUDIO_OUTPUT_SYNCHRONOUS


class _Id(ctypes.Union):
    _fields_ = [("number", ctypes.c_int), ("name", ctypes.c_char_p), ("string", ctypes.c_char * 8)]


class _Event(ctypes.Structure):
    _fields_ = [("type", ctypes.c_int), ("unique_identifier", ctypes.c_uint), ("text_position", ctypes.c_int),
                ("length", ctypes.c_int), ("audio_position", ctypes.c_int), ("sample", ctypes.c_int),
                ("user_data", ctypes.c_void_p), ("id", _Id)]  # fmt: skip


_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.POINTER(_Event))


class EspeakWords:
    def __init__(self, voice: str = "en-us", speed: int = 175, pitch: int = 50):
        name = ctypes.util.find_library("espeak-ng") or "libespeak-ng.so.1"
        self.lib = ctypes.CDLL(name)
        self.rate = self.lib.espeak_Initialize(_SYNCHRONOUS, 0, None, 0)
        if self.rate <= 0:
            raise RuntimeError("libespeak-ng failed to initialise")
        self._chunks: list[np.ndarray] = []
        self._words: list[tuple[int, int]] = []  # (text position, first sample)
        self._cb = _CALLBACK(self._collect)  # kept referenced: the library calls it later
        self.lib.espeak_SetSynthCallback(self._cb)
        self.lib.espeak_SetVoiceByName(voice.encode())
        self.lib.espeak_SetParameter(1, int(speed), 0)  # espeakRATE
        self.lib.espeak_SetParameter(3, int(pitch), 0)  # espeakPITCH

    def _collect(self, wav, n, events) -> int:
        if wav and n > 0:
            self._chunks.append(np.ctypeslib.as_array(wav, (n,)).copy())
        i = 0
        while events[i].type != 0:
            if events[i].type == _WORD:
                self._words.append((events[i].text_position, events[i].sample))
            i += 1
        return 0

    def word_ends(self, text: str) -> list[tuple[str, float]]:
        """(word, end in seconds) for every white-space separated word of `text`."""
        self._chunks, self._words = [], []
        data = text.encode()
        self.lib.espeak_Synth(ctypes.create_string_buffer(data), len(data) + 1, 0, 0, 0, 0, None, None)
        self.lib.espeak_Synchronize()
        wav = np.abs(np.concatenate(self._chunks).astype(np.int32)) if self._chunks else np.zeros(0, np.int32)
        # the words of the text by character offset (espeak counts from 1, in bytes)
        tokens, pos = [], 0
        for word in text.split():
            at = data.index(word.encode(), pos)
            tokens.append((word, at + 1, at + 1 + len(word.encode())))
            pos = at + len(word.encode())
        onsets = sorted(self._words, key=lambda w: w[1])
        out = []
        for word, lo, hi in tokens:
            mine = [s for p, s in onsets if lo <= p < hi]
            if not mine:
                continue  # spoken as part of a neighbour (rare): no time of its own
            later = [s for p, s in onsets if p >= hi and s > mine[-1]]
            stop = later[0] if later else len(wav)
            loud = np.nonzero(wav[mine[-1] : stop] > AUDIBLE)[0]
            end = mine[-1] + (loud[-1] + 1 if len(loud) else 0)
            out.append((word, end / self.rate))
        return out
