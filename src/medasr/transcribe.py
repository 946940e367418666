"""The public transcription API: load a model once, transcribe any audio sources in batches.

    import medasr
    asr = medasr.load_model("demo")            # hub id, local directory or "demo"
    for t in asr.transcribe(["a.wav", "b.mp3"], context="metoprolol, atorvastatin"):
        print(t.source, t.text)
"""

from __future__ import annotations

from collections.abc import Callable

from medasr.audio import Audio, describe, load_audio
from medasr.checkpoint import DEFAULT_MODEL, Loaded, load
from medasr.engine import Engine, Request, Result
from medasr.errors import AudioError
from medasr.prompt import normalize_language
from medasr.records import Segment, Transcript


class ASR:
    """A loaded model with its engine. Create it with `load_model`."""

    def __init__(self, loaded: Loaded, batch_size: int = 16):
        self.loaded = loaded
        self.engine = Engine(loaded, batch_size=batch_size)

    @property
    def name(self) -> str:
        return str(self.loaded.path)

    def transcribe(
        self,
        audio,
        language: str | None = "English",
        context: str | None = None,
        batch_size: int | None = None,
        max_new_tokens: int | None = None,
        errors: str = "raise",
        on_result: Callable[[int, Transcript], None] | None = None,
    ) -> list[Transcript]:
        """Transcribe one source or a list of them (paths, URLs, bytes, base64, (array, rate)).

        language: "English" (default, forced), another language name or code, or "auto" to let
        the model detect it. context: free text for the system turn (hotwords such as drug names).
        errors: "raise" stops at the first bad input with an AudioError; "keep" returns a
        Transcript with `error` set for it and transcribes the others.
        on_result(index, transcript) is called as each result is ready (in batch order).
        """
        if errors not in ("raise", "keep"):
            raise ValueError("errors must be 'raise' or 'keep'")
        sources = list(audio) if isinstance(audio, (list, tuple)) and not _is_array_pair(audio) else [audio]
        forced = normalize_language(language)
        out: list[Transcript | None] = [None] * len(sources)
        loaded: list[tuple[int, Audio]] = []
        for i, src in enumerate(sources):
            try:
                loaded.append((i, load_audio(src)))
            except AudioError as err:
                if errors == "raise":
                    raise
                out[i] = Transcript(describe(src), "", "", 0.0, error=str(err))
                if on_result:
                    on_result(i, out[i])
        requests = [Request(a.samples, context, forced) for _, a in loaded]

        def finished(idx: list[int], results: list[Result]) -> None:
            for j, r in zip(idx, results):
                i, a = loaded[j]
                out[i] = _to_transcript(a, r)
                if on_result:
                    on_result(i, out[i])

        self.engine.run(requests, batch_size=batch_size, max_new_tokens=max_new_tokens, on_batch=finished)
        return out  # type: ignore[return-value]


def _is_array_pair(x) -> bool:
    import numpy as np

    return isinstance(x, tuple) and len(x) == 2 and isinstance(x[0], np.ndarray) and not isinstance(x[1], np.ndarray)


def _to_transcript(audio: Audio, r: Result) -> Transcript:
    segments = [Segment(0.0, round(audio.duration, 3), r.text)] if r.text else []
    return Transcript(audio.source, r.text, r.language, round(audio.duration, 3), segments, hit_token_cap=r.hit_token_cap)


def load_model(model: str = DEFAULT_MODEL, device: str = "auto", dtype: str = "auto", batch_size: int = 16) -> ASR:
    """Load Qwen3-ASR from a hub id, a local directory (either checkpoint format) or "demo"."""
    return ASR(load(model, device=device, dtype=dtype), batch_size=batch_size)

