"""Settings shared across medasr, defined once here. Light on purpose (no heavy imports), so
the CLI can show them in --help without loading torch."""

from pathlib import Path

ASSETS = Path(__file__).parent / "assets"  # the bundled demo model and aligner, evaluation texts

DEFAULT_MODEL = "yuriyvnv/Qwen3-ASR-1.7B-EN-Medical"
SAMPLE_RATE = 16000  # Qwen3-ASR's input rate: everything is resampled to it
MAX_PIECE_S = 30.0  # Qwen3-ASR is trained on clips of at most 30 s: longer audio is cut into pieces
MIN_AUDIO_S = 0.1  # shorter input is refused as too short (OpenAI's own minimum)
MIN_PIECE_S = 0.1  # a piece of a long recording shorter than this (a rounding tail) holds no words: not sent
VAD_METHODS = ("silero", "energy", "none")  # speech detection: model, loudness, or off
DEFAULT_VAD = "silero"
DEFAULT_ALIGNER = "Qwen/Qwen3-ForcedAligner-0.6B"  # word timestamps (forced alignment), loaded only when asked for


def default_aligner(model: str | Path) -> str:
    """The aligner for word timestamps when none is named: the bundled demo aligner with the
    bundled demo model (both offline, both trained on espeak-ng speech), else DEFAULT_ALIGNER."""
    name = str(model)
    return "demo" if name == "demo" or Path(name).resolve() == (ASSETS / "demo").resolve() else DEFAULT_ALIGNER


TIMESTAMPS = ("segment", "word")  # granularities: segments always; "word" runs the forced aligner too
# A context (the system turn: hotwords, prior notes) longer than this many tokens is refused
# before any model call. Qwen3-ASR's window (65,536 positions) would hold far more beside a 30 s
# piece (~405 tokens) and 512 new tokens; memory would not: the decoder's KV cache is as wide as
# its longest prompt for every row, and the prefill's attention grows with its square
# (docs/limits.md measures it). 1,024 tokens: ~700 words, hundreds of hotwords.
MAX_CONTEXT_TOKENS = 1024
LOW_CONFIDENCE = 0.5  # a word whose probability is below this is marked for review (`low_confidence`)
QUANTIZE = ("none", "int8")  # CPU weights: as loaded, or int8 linear layers with int8 activations (model/quantize.py)
