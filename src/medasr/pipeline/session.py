"""A live transcription session: 16 kHz audio chunks in, events out, on the one pipeline.

Endpointing: speech detection (Silero, per 32 ms window) opens an utterance when a window
scores at least `threshold`, keeping `prefix_padding_ms` of audio before it, and closes it after
`silence_duration_ms` below `threshold - 0.15` (OpenAI's server-VAD defaults: 0.5, 300 ms,
500 ms). Without turn detection the client closes utterances (`commit`).

Partial text: while an utterance is open, its audio so far is re-decoded every `update_s` of new
audio (one decode in flight at a time, at live priority), and only the words that two
consecutive decodes agree on are released, as append-only `Delta`s. When the final agrees with
what was released, one last `Delta` carries the rest of it, so an item's deltas add up to its
`Completed` transcript (clients that only render deltas show the whole text).

Final text: a closed utterance goes through the offline path (segmenter -> scheduler ->
assembler), so its `Completed` transcript is what `medasr transcribe` gives for that stretch of
audio. An utterance that reaches `max_piece_s` is cut at its quietest point (as offline pieces
are) and continues as a new item, so one update never costs more than one piece, however long
the stream: the cost per audio second stays flat.

Words: with `LiveOptions.words` and a `WordTimer`, each final goes through the word stage
(`medasr.pipeline.words`) on the timer's own thread before it is sent, so its transcript carries
`words` (times from the utterance's start, as its segments) as offline transcription gives them.

Fairness: every decode of a session is submitted as that session's work (`owner`), so the
scheduler serves sessions in turn: one session's backlog of finals does not hold back another's.

Memory: only the open utterance (at most one piece) and the padding before it are kept.
Thread-safety: feed it from one thread; results arrive from the scheduler's thread; `emit` is
called from either, in order, under the session's lock.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from medasr.audio.vad import SpeechProbabilities, VadOptions, quietest_point
from medasr.defaults import MAX_PIECE_S, SAMPLE_RATE
from medasr.pipeline.assembler import assemble
from medasr.pipeline.engine import Request, Result
from medasr.pipeline.events import Cleared, Committed, Completed, Counter, Delta, Event, Failed, SpeechStarted, SpeechStopped
from medasr.pipeline.scheduler import LIVE, Scheduler, Ticket
from medasr.pipeline.segmenter import plan_samples, vad_options
from medasr.pipeline.words import WordTimer, plan_clips
from medasr.records import Transcript

NEG_OFFSET = 0.15  # speech ends below threshold - this (silero's hysteresis, as offline)
END_PAD_S = 0.2  # audio kept after the last speech window (offline regions are padded the same)


@dataclass
class LiveOptions:
    turn_detection: bool = True  # server VAD; False: the client commits each utterance
    threshold: float = 0.5
    prefix_padding_ms: int = 300
    silence_duration_ms: int = 500
    update_s: float = 1.0  # new audio between two partial decodes of the open utterance
    max_piece_s: float = MAX_PIECE_S
    language: str | None = "English"
    context: str | None = None
    vad: str = "silero"  # the offline path's speech detection for finals ("none": off)
    max_new_tokens: int | None = None  # per decode, as offline (None: grows with the audio)
    words: bool = False  # finals carry word times and probabilities (needs the session's WordTimer)

    def check(self) -> None:
        if not 0.0 < self.threshold < 1.0:
            raise ValueError("threshold must be between 0 and 1")
        if self.prefix_padding_ms < 0 or self.silence_duration_ms < 0:
            raise ValueError("prefix_padding_ms and silence_duration_ms must not be negative")
        if self.update_s <= 0:
            raise ValueError("update_s must be positive")
        if self.max_new_tokens is not None and self.max_new_tokens < 1:
            raise ValueError("max_new_tokens must be at least 1")
        vad_options(self.vad, self.max_piece_s)


@dataclass
class _Item:
    id: str
    start: int  # absolute sample where its audio begins
    speech: bool = True
    quiet_since: int | None = None  # absolute sample where the current silence began
    decoded_upto: int = 0  # absolute end of the audio its last partial decode saw
    partial: Ticket | None = None
    previous: list[str] = field(default_factory=list)  # words of the last partial decode
    released: int = 0  # words already sent as deltas


class LiveSession:
    def __init__(self, scheduler: Scheduler, options: LiveOptions, emit: Callable[[Event], None],
                 words: WordTimer | None = None):  # fmt: skip
        options.check()
        if options.words and words is None:
            raise ValueError("LiveOptions(words=True) needs a WordTimer (words=...) to time the finals' words")
        scheduler.engine.check_context(options.context)  # BadContext / ContextTooLong before any audio
        self.scheduler = scheduler
        self.words = words  # the word stage for finals, when options.words
        self.options = options
        self._emit = emit
        self._lock = threading.RLock()
        self._idle = threading.Condition(self._lock)
        self._buf = np.zeros(0, np.float32)
        self._origin = 0  # absolute sample index of _buf[0]
        self._total = 0  # samples received
        self._probs: SpeechProbabilities | None = None
        self._probs_origin = 0  # absolute sample where _probs began scoring
        self._listen()
        self._open: _Item | None = None
        self._last_item: str | None = None
        self._last_end = 0  # where the last closed utterance ended
        self._order: list[str] = []  # committed items whose Completed is not sent yet, in order
        self._done: dict[str, Event] = {}
        self._finals: dict[str, list[Ticket]] = {}
        self._said: dict[str, list[str]] = {}  # words released as deltas, per committed item
        self._closed = False
        self.counter = Counter()

    # ------------------------------------------------------------------ input
    @property
    def duration(self) -> float:
        return self._total / SAMPLE_RATE

    @property
    def pending_s(self) -> float:
        """Seconds of audio in the open utterance (what a commit would close now)."""
        with self._lock:
            return (self._total - self._open.start) / SAMPLE_RATE if self._open is not None else 0.0

    @property
    def pending_finals(self) -> int:
        """Committed items whose final is not sent yet."""
        return len(self._order)

    def configure(self, options: LiveOptions) -> None:
        """New options from now on (a client's session.update). Language, context and timing
        apply to the next decode; a change of turn detection or threshold restarts speech
        detection on the audio that follows. The open utterance, if any, stays open."""
        options.check()
        if options.words and self.words is None:
            raise ValueError("LiveOptions(words=True) needs the session to have a WordTimer")
        self.scheduler.engine.check_context(options.context)  # nothing changes when the context is refused
        with self._lock:
            old, self.options = self.options, options
            if (old.turn_detection, old.threshold) != (options.turn_detection, options.threshold):
                self._listen()

    def _listen(self) -> None:
        o = self.options
        self._probs = SpeechProbabilities(VadOptions(threshold=o.threshold)) if o.turn_detection else None
        self._probs_origin = self._total

    def append(self, samples: np.ndarray) -> None:
        """More audio (16 kHz mono float32)."""
        samples = np.asarray(samples, dtype=np.float32).reshape(-1)
        if not len(samples):
            return
        with self._lock:
            if self._closed:
                return
            start = self._total
            self._buf = np.concatenate([self._buf, samples])
            self._total += len(samples)
            if self._probs is None:
                if self._open is None:
                    self._begin(start, announce=False)
            else:
                self._endpoint(self._probs(samples))
            self._cut_if_long()
            self._maybe_partial()
            self._trim()

    def commit(self) -> None:
        """Close the open utterance now (the client's commit)."""
        with self._lock:
            if self._open is not None:
                self._close(self._total)

    def clear(self) -> None:
        """Drop the audio not yet committed."""
        with self._lock:
            if self._open is not None and self._open.partial is not None:
                self.scheduler.cancel(self._open.partial)
            self._open = None
            self._buf = np.zeros(0, np.float32)
            self._origin = self._total
            self._emit(Cleared())

    def finish(self) -> None:
        """The input ended: close what is open (its final follows)."""
        self.commit()

    def close(self) -> None:
        """The client is gone: stop all decoding for it and free its audio."""
        with self._lock:
            self._closed = True
            if self._open is not None and self._open.partial is not None:
                self.scheduler.cancel(self._open.partial)
            for tickets in self._finals.values():
                for t in tickets:
                    self.scheduler.cancel(t)
            self._finals.clear()
            self._order.clear()
            self._done.clear()
            self._said.clear()
            self._open = None
            self._buf = np.zeros(0, np.float32)
            self._idle.notify_all()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until every committed item has its final; False on timeout."""
        with self._idle:
            return self._idle.wait_for(lambda: not self._order, timeout)

    # ------------------------------------------------------------------ endpointing
    def _endpoint(self, probs: np.ndarray) -> None:
        o = self.options
        window = SpeechProbabilities.window
        first = self._probs_origin + (self._probs.windows - len(probs)) * window
        neg = max(o.threshold - NEG_OFFSET, 0.01)
        silence = int(o.silence_duration_ms * SAMPLE_RATE / 1000)
        for j, p in enumerate(probs.tolist()):
            pos = first + j * window
            item = self._open
            if item is None:
                if p >= o.threshold:
                    pad = int(o.prefix_padding_ms * SAMPLE_RATE / 1000)
                    self._begin(max(pos - pad, self._last_end, self._origin))
                continue
            if p >= o.threshold:
                item.quiet_since = None
            elif p < neg and item.quiet_since is None:
                item.quiet_since = pos
            if item.quiet_since is not None and pos + window - item.quiet_since >= silence:
                end = min(item.quiet_since + int(END_PAD_S * SAMPLE_RATE), pos + window)
                self._emit(SpeechStopped(item.id, end / SAMPLE_RATE))
                self._close(end)

    def _begin(self, start: int, announce: bool = True) -> None:
        item = _Item("item_" + uuid.uuid4().hex[:24], start, decoded_upto=start)
        self._open = item
        if announce:
            self._emit(SpeechStarted(item.id, start / SAMPLE_RATE))

    def _cut_if_long(self) -> None:
        item = self._open
        limit = int(self.options.max_piece_s * SAMPLE_RATE)
        while item is not None and self._total - item.start >= limit:
            search = int(min(5.0, self.options.max_piece_s / 3) * SAMPLE_RATE)
            cut = quietest_point(self._buf, item.start + limit - search - self._origin, item.start + limit - self._origin)
            cut += self._origin
            speaking = self._probs is None or item.quiet_since is None
            self._close(cut)
            if speaking:
                self._begin(cut, announce=self._probs is not None)
            item = self._open

    # ------------------------------------------------------------------ partial text
    def _maybe_partial(self) -> None:
        item = self._open
        if item is None or item.partial is not None:
            return
        if self._total - item.decoded_upto < self.options.update_s * SAMPLE_RATE:
            return
        audio = self._audio(item.start, self._total)
        item.decoded_upto = self._total
        self.counter.partial_decodes += 1
        self.counter.partial_audio_s += len(audio) / SAMPLE_RATE
        o = self.options
        request = Request(audio, o.context, o.language, o.max_new_tokens)
        item.partial = self.scheduler.submit([request], LIVE, lambda _, res, item=item: self._on_partial(item, res), owner=self)

    def _on_partial(self, item: _Item, res: Result | Exception) -> None:
        with self._lock:
            item.partial = None
            if self._open is not item or isinstance(res, Exception):
                return
            words = res.text.split()
            agreed = 0
            while agreed < min(len(words), len(item.previous)) and words[agreed] == item.previous[agreed]:
                agreed += 1
            item.previous = words
            if agreed > item.released:
                text = " ".join(words[item.released : agreed])
                self._emit(Delta(item.id, (" " if item.released else "") + text))
                item.released = agreed
            self._maybe_partial()

    # ------------------------------------------------------------------ final text
    def _close(self, end: int) -> None:
        item, self._open = self._open, None
        if item.partial is not None:
            self.scheduler.cancel(item.partial)
        end = max(end, item.start)
        self._emit(Committed(item.id, self._last_item, item.start / SAMPLE_RATE, end / SAMPLE_RATE))
        self._last_item, self._last_end = item.id, end
        self._said[item.id] = item.previous[: item.released]
        audio = self._audio(item.start, end)
        self._order.append(item.id)
        self.counter.items.append(item.id)
        start_s, end_s = item.start / SAMPLE_RATE, end / SAMPLE_RATE
        o = self.options
        try:
            plan = plan_samples(audio, item.id, vad_options(o.vad, o.max_piece_s))
        except Exception as err:  # too short to transcribe: an empty final, as offline gives an error
            t = Transcript(item.id, "", "", round(len(audio) / SAMPLE_RATE, 3), error=str(err),
                           error_code=getattr(err, "code", "invalid_audio"))  # fmt: skip
            self._done[item.id] = Completed(item.id, t, start_s, end_s)
            self._flush()
            return
        if not plan.pieces:
            self._done[item.id] = Completed(item.id, assemble(plan, [], o.language), start_s, end_s)
            self._flush()
            return
        results: dict[int, Result] = {}
        requests = [Request(p.slice(audio) if not plan.whole else audio, o.context, o.language, o.max_new_tokens)
                    for p in plan.pieces]  # fmt: skip
        self.counter.final_decodes += len(requests)
        self.counter.final_audio_s += sum(r.duration for r in requests)

        def on_result(k: int, res: Result | Exception) -> None:
            with self._lock:
                if item.id not in self._finals:
                    return
                if isinstance(res, Exception):
                    self._finals.pop(item.id, None)
                    self._done[item.id] = Failed(item.id, f"{type(res).__name__}: {res}")
                    self._flush()
                    return
                results[k] = res
                if len(results) == len(requests):
                    self._finals.pop(item.id, None)
                    t = assemble(plan, [results[i] for i in range(len(requests))], o.language)
                    if o.words and self.words is not None:  # aligned on the timer's thread, not this one
                        future = self.words.submit(t, plan_clips(plan, t.segments))
                        future.add_done_callback(lambda f: self._worded(item.id, t, f, start_s, end_s))
                        return
                    self._done[item.id] = Completed(item.id, t, start_s, end_s)
                    self._flush()

        self._finals[item.id] = [self.scheduler.submit(requests, LIVE, on_result, owner=self)]

    def _worded(self, item_id: str, t: Transcript, future, start_s: float, end_s: float) -> None:
        """A final's words are ready (or could not be had: its text goes out with a warning)."""
        err = future.exception()
        if err is not None:
            t.words = []
            t.warnings.append(f"no word timestamps: {err}")
        with self._lock:
            if self._closed or item_id not in self._order:
                return
            self._done[item_id] = Completed(item_id, t, start_s, end_s)
            self._flush()

    def _flush(self) -> None:
        """Send finished finals in item order."""
        while self._order and self._order[0] in self._done:
            event = self._done.pop(self._order.pop(0))
            said = self._said.pop(event.item_id, [])
            if isinstance(event, Completed):
                words = event.transcript.text.split()
                if len(words) > len(said) and words[: len(said)] == said:
                    self._emit(Delta(event.item_id, (" " if said else "") + " ".join(words[len(said) :])))
            self._emit(event)
        if not self._order:
            self._idle.notify_all()

    # ------------------------------------------------------------------ audio buffer
    def _audio(self, start: int, end: int) -> np.ndarray:
        return self._buf[max(start - self._origin, 0) : max(end - self._origin, 0)].copy()

    def _trim(self) -> None:
        """Keep only the open utterance, or the padding a new one could start with."""
        pad = int(self.options.prefix_padding_ms * SAMPLE_RATE / 1000) + SpeechProbabilities.window
        keep = self._open.start if self._open is not None else max(self._total - pad, self._last_end)
        keep = min(keep, self._total)
        if keep > self._origin:
            self._buf = self._buf[keep - self._origin :]
            self._origin = keep
