"""What the pipeline tells its callers while it works: typed events, one set for everyone.

Uploads streamed back (`stream=true`) and live sessions speak in these; the server turns them
into OpenAI's wire events (SSE `transcript.text.*`, Realtime `conversation.item.*`), the CLI into
lines on a terminal or JSONL. Times are seconds on the stream's (or the file's) timeline.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from medasr.defaults import LOW_CONFIDENCE
from medasr.records import Transcript


@dataclass
class SpeechStarted:
    item_id: str
    start: float  # where the utterance's audio begins (speech start minus the kept padding)


@dataclass
class SpeechStopped:
    item_id: str
    end: float


@dataclass
class Committed:
    """An utterance is closed: its audio is final and its transcription is under way."""

    item_id: str
    previous_item_id: str | None
    start: float
    end: float


@dataclass
class Cleared:
    """Uncommitted audio was dropped at the client's request."""


@dataclass
class Delta:
    """More text of an item: append-only (never taken back). Live: text two consecutive
    re-decodes agree on; uploads: the text of one more piece."""

    item_id: str
    text: str


@dataclass
class Completed:
    """The final transcript of an item (an utterance, or a whole upload): the last word on it."""

    item_id: str
    transcript: Transcript
    start: float = 0.0
    end: float = 0.0


@dataclass
class Failed:
    item_id: str
    message: str
    code: str = "transcription_failed"


Event = SpeechStarted | SpeechStopped | Committed | Cleared | Delta | Completed | Failed

EVENT_TYPES = {
    SpeechStarted: "speech_started", SpeechStopped: "speech_stopped", Committed: "committed", Cleared: "cleared",
    Delta: "delta", Completed: "completed", Failed: "failed",
}  # fmt: skip


def to_json(event: Event, low_confidence: float = LOW_CONFIDENCE) -> dict:
    """A plain JSON object for `medasr stream --format jsonl` (the server speaks OpenAI's shapes);
    a final's words (when asked for) are marked `low_confidence` below that probability."""
    out = {"type": EVENT_TYPES[type(event)]}
    for key, value in asdict(event).items():
        out[key] = value
    if isinstance(event, Completed):
        out["transcript"] = event.transcript.to_dict(low_confidence)
    return out


@dataclass
class Counter:
    """How much decoding a session asked for (cost per audio second in benchmarks)."""

    partial_decodes: int = 0
    partial_audio_s: float = 0.0
    final_decodes: int = 0
    final_audio_s: float = 0.0
    items: list[str] = field(default_factory=list)
