"""The server's side of the pipeline's scheduler: admission, deadlines and the asyncio bridge.

One scheduler (`medasr.pipeline.scheduler`) owns the model; uploads, chat requests and live
streams from every client share its batches. New pieces join the running batch at the next
decode step (continuous batching), live streams' decodes go first and have rows kept for them,
and an idle scheduler waits at most `max_wait_ms` for requests already on their way.

Admission is bounded by `max_queue` requests in flight: beyond that `submit` raises `QueueFull`
with an estimate of when to retry. A job holds its slot until each of its pieces has run or
been dropped, so the bound holds whatever becomes of the handler. Pieces of a job whose client
left or whose deadline passed are dropped: waiting ones at once, running ones at the next step.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from medasr.errors import UserError
from medasr.pipeline.engine import Engine, Request
from medasr.pipeline.scheduler import INTERACTIVE, Iteration, Scheduler, Ticket
from medasr.pipeline.words import WordTimer
from medasr.server.config import ServerConfig
from medasr.server.metrics import Metrics

log = logging.getLogger(__name__)


class QueueFull(Exception):
    def __init__(self, retry_after_s: int):
        super().__init__(f"server busy: retry after {retry_after_s} s")
        self.retry_after_s = retry_after_s


class NotReady(Exception):
    """The model is still loading, or failed to load (the message says which)."""


@dataclass(eq=False)
class Job:
    """One client request: its pieces, where their results go, and whether it is still wanted."""

    pieces: list[Request]
    deadline: float  # time.monotonic() after which nobody waits for it
    loop: asyncio.AbstractEventLoop
    results: asyncio.Queue = field(default_factory=asyncio.Queue)  # (index, Result | Exception)
    ticket: Ticket | None = None


class Batcher:
    def __init__(self, config: ServerConfig, metrics: Metrics, load_engine: Callable[[], Engine],
                 decoder_factory: Callable[[int], object] | None = None):  # fmt: skip
        self.config = config
        self._decoder_factory = decoder_factory
        self.metrics = metrics
        self._load_engine = load_engine
        self.engine: Engine | None = None
        # word timestamps: --aligner is loaded with the model; the default one on first use
        self.words = WordTimer(config.aligner_name, device=config.device, dtype=config.dtype)
        self.scheduler: Scheduler | None = None
        self.load_error: str | None = None
        self._ready = threading.Event()
        self._lock = threading.Lock()
        self._jobs_in_flight = 0
        self._dropped_seen = 0
        self._thread = threading.Thread(target=self._load, name="medasr-load", daemon=True)

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        if self.scheduler:
            self.scheduler.stop(timeout)

    def _load(self) -> None:
        try:
            self.engine = self._load_engine()
            if self.config.vad != "none":  # fail now, not on the first request, if it cannot run
                from medasr.audio.vad import load_silero

                if self.config.vad == "silero":
                    load_silero()
        except Exception as err:  # reported by /ready and by every request
            if isinstance(err, UserError):
                log.error("%s", err)
            else:
                log.exception("model failed to load")
            self.load_error = f"the model failed to load: {err}"
            return
        c = self.config
        self.scheduler = Scheduler(
            self.engine, max_rows=c.max_batch_size, wait_s=c.max_wait_ms / 1000, reserve=c.live_rows,
            on_iteration=self._observe, decoder_factory=self._decoder_factory,
        )  # fmt: skip
        self.scheduler.start()
        self._ready.set()
        log.info("model loaded; serving")

    @property
    def ready(self) -> bool:
        return self._ready.is_set() and self.scheduler is not None

    # ------------------------------------------------------------------ admission
    def check_admission(self) -> None:
        """Raise NotReady or QueueFull if a request arriving now would be refused."""
        if not self.ready:
            raise NotReady(self.load_error or "the model is still loading")
        with self._lock:
            if self._jobs_in_flight >= self.config.max_queue:
                raise QueueFull(self._retry_after())

    @contextlib.contextmanager
    def arriving(self):
        """Wrap the reading and decoding of a request, so an idle scheduler waits for it."""
        if self.scheduler is None:
            yield
            return
        with self.scheduler.arriving():
            yield

    def submit(self, pieces: Sequence[Request], timeout_s: float, priority: int = INTERACTIVE) -> Job:
        """Queue a request's pieces; raises NotReady or QueueFull instead of waiting."""
        self.check_admission()
        job = Job(list(pieces), time.monotonic() + timeout_s, asyncio.get_running_loop())
        if not pieces:  # nothing to transcribe (no speech found): holds no slot
            return job
        with self._lock:
            if self._jobs_in_flight >= self.config.max_queue:
                raise QueueFull(self._retry_after())
            self._jobs_in_flight += 1

        def deliver(index: int, res) -> None:
            with contextlib.suppress(RuntimeError):  # the event loop is gone (shutting down)
                job.loop.call_soon_threadsafe(job.results.put_nowait, (index, res))

        job.ticket = self.scheduler.submit(job.pieces, priority, deliver, job.deadline, on_settled=self._release)
        self.metrics.queue_depth.set(self.scheduler.waiting)
        return job

    def finish(self, job: Job) -> None:
        """The handler is done with `job` (answered, failed, timed out, or its client left):
        drop its pieces still waiting or running. Safe to call more than once."""
        if job.ticket is not None:
            self.scheduler.cancel(job.ticket)
            self._count_dropped()

    def _release(self, _: Ticket) -> None:
        with self._lock:
            self._jobs_in_flight -= 1

    def _retry_after(self) -> int:
        return max(1, math.ceil(self.scheduler.retry_after_s()))

    # ------------------------------------------------------------------ metrics
    def _observe(self, it: Iteration) -> None:
        m = self.metrics
        if it.admitted:
            m.batch_size.observe(it.rows)
            m.audio_seconds.inc(it.audio_s)
        m.batch_seconds.observe(it.seconds)
        m.queue_depth.set(self.scheduler.waiting)
        self._count_dropped()

    def _count_dropped(self) -> None:
        dropped = self.scheduler.stats.dropped
        if dropped > self._dropped_seen:
            self.metrics.dropped_pieces.inc(dropped - self._dropped_seen)
            self._dropped_seen = dropped
