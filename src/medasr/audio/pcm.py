"""Live PCM in: 16-bit little-endian mono bytes at any rate -> 16 kHz float32 blocks.

One decoder for every live source (the realtime WebSocket, `medasr stream -` on stdin): samples
are scaled as soundfile reads a 16-bit WAV (x / 32768), so 16 kHz PCM streamed gives exactly the
samples `medasr transcribe` reads from the same WAV; other rates go through soxr's streaming
resampler at the quality the file loader uses, its filter state carried across blocks so block
joins are seamless. A block may end in the middle of a sample: the odd byte waits for the next.
"""

from __future__ import annotations

import numpy as np

from medasr.defaults import SAMPLE_RATE

SCALE = 1.0 / 32768.0
RATES = (8000, 16000, 22050, 24000, 32000, 44100, 48000)  # live PCM rates taken (OpenAI's: 24000; browsers': their device's)


class PcmDecoder:
    def __init__(self, rate: int):
        if not 1000 <= rate <= 384_000:
            raise ValueError(f"unsupported sample rate {rate} Hz")
        self.rate = rate
        self._odd = b""
        self._resampler = self._new_resampler()

    def _new_resampler(self):
        if self.rate == SAMPLE_RATE:
            return None
        import soxr

        return soxr.ResampleStream(self.rate, SAMPLE_RATE, 1, dtype="float32", quality="HQ")

    def __call__(self, data: bytes) -> np.ndarray:
        """The 16 kHz samples that `data` completes (the resampler holds back a few ms)."""
        data = self._odd + data
        whole = len(data) - len(data) % 2
        self._odd = data[whole:]
        samples = np.frombuffer(data[:whole], dtype="<i2").astype(np.float32) * np.float32(SCALE)
        if self._resampler is None:
            return samples
        return self._resampler.resample_chunk(samples, last=False)

    def flush(self) -> np.ndarray:
        """What the resampler still holds (call at a commit or the end of input); the next block
        starts a fresh filter. A dangling odd byte is dropped."""
        self._odd = b""
        if self._resampler is None:
            return np.zeros(0, np.float32)
        tail = self._resampler.resample_chunk(np.zeros(0, np.float32), last=True)
        self._resampler = self._new_resampler()
        return tail


def to_pcm16(samples: np.ndarray) -> bytes:
    """Float samples in [-1, 1] -> 16-bit little-endian PCM (for clients sending audio)."""
    return (np.clip(np.asarray(samples, np.float32), -1.0, 1.0 - SCALE) * 32768.0).round().astype("<i2").tobytes()
