"""Dynamic batching: one worker thread owns the Engine; requests from every client share batches.

Each request is a `Job` of one or more pieces (<= 30 s of audio each). Pieces wait in one FIFO;
the worker takes up to `max_batch_size` of them, waiting at most `max_wait_ms` after the oldest
arrived for others to join, and runs them through `Engine.generate` together. It waits only
while another request is on its way (admitted, still being read or decoded): a lone client
gets no added latency. Results go back to the asyncio side piece by piece, so a stream can
show the first piece before the last is done.

Admission is bounded by `max_queue` requests in flight: beyond that `submit` raises `QueueFull`
with an estimate of when to retry. A job holds its slot until each of its pieces has run or
been dropped, so the bound holds whatever becomes of the handler. Pieces of a job whose client
left or whose deadline passed are dropped before their batch starts (a running batch cannot be
interrupted).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from medasr.engine import Engine, Request, Result, default_max_new_tokens
from medasr.errors import UserError
from medasr.server.config import ServerConfig
from medasr.server.metrics import Metrics

log = logging.getLogger(__name__)
SAMPLE_RATE = 16000


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
    cancelled: bool = False
    unsettled: int = 0  # pieces neither run nor dropped; the job holds a queue slot while > 0

    @property
    def wanted(self) -> bool:
        return not self.cancelled and time.monotonic() < self.deadline


@dataclass
class _Item:
    job: Job
    index: int
    queued_at: float


class Batcher:
    def __init__(self, config: ServerConfig, metrics: Metrics, load_engine: Callable[[], Engine]):
        self.config = config
        self.metrics = metrics
        self._load_engine = load_engine
        self.engine: Engine | None = None
        self.load_error: str | None = None
        self._ready = threading.Event()
        self._stop = threading.Event()
        self._cond = threading.Condition()  # guards everything below
        self._items: deque[_Item] = deque()
        self._jobs_in_flight = 0
        self._arriving = 0  # requests being read and decoded: worth waiting for
        self._batch_s = 1.0  # moving average of one batch's run time, for Retry-After
        self._thread = threading.Thread(target=self._main, name="medasr-batcher", daemon=True)

    # ------------------------------------------------------------------ asyncio side
    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        if self._thread.is_alive():
            self._thread.join(timeout)

    @property
    def ready(self) -> bool:
        return self._ready.is_set() and self.engine is not None

    def check_admission(self) -> None:
        """Raise NotReady or QueueFull if a request arriving now would be refused."""
        if not self.ready:
            raise NotReady(self.load_error or "the model is still loading")
        with self._cond:
            if self._jobs_in_flight >= self.config.max_queue:
                raise QueueFull(self._retry_after())

    @contextlib.contextmanager
    def arriving(self):
        """Wrap the reading and decoding of a request, so the worker knows company is coming."""
        with self._cond:
            self._arriving += 1
        try:
            yield
        finally:
            with self._cond:
                self._arriving -= 1
                self._cond.notify()

    def submit(self, pieces: Sequence[Request], timeout_s: float) -> Job:
        """Queue a request's pieces; raises NotReady or QueueFull instead of waiting."""
        self.check_admission()
        job = Job(list(pieces), time.monotonic() + timeout_s, asyncio.get_running_loop())
        if not pieces:  # nothing to transcribe (no speech found): holds no slot
            return job
        with self._cond:
            if self._jobs_in_flight >= self.config.max_queue:
                raise QueueFull(self._retry_after())
            self._jobs_in_flight += 1
            job.unsettled = len(pieces)
            now = time.monotonic()
            self._items.extend(_Item(job, i, now) for i in range(len(pieces)))
            self.metrics.queue_depth.set(len(self._items))
            self._cond.notify()
        return job

    def finish(self, job: Job) -> None:
        """The handler is done with `job` (answered, failed, timed out, or its client left):
        drop its pieces still waiting. Safe to call more than once."""
        with self._cond:
            job.cancelled = True
            if not job.unsettled:
                return
            waiting = [it for it in self._items if it.job is job]
            if waiting:
                self._items = deque(it for it in self._items if it.job is not job)
                self.metrics.queue_depth.set(len(self._items))
                self.metrics.dropped_pieces.inc(len(waiting))
                self._settle(job, len(waiting))

    def _settle(self, job: Job, n: int) -> None:
        """n of the job's pieces ran or were dropped (caller holds the lock)."""
        job.unsettled -= n
        if job.unsettled == 0:
            self._jobs_in_flight -= 1

    def _retry_after(self) -> int:
        batches_ahead = math.ceil(len(self._items) / self.config.max_batch_size) + 1
        return max(1, math.ceil(batches_ahead * self._batch_s))

    # ------------------------------------------------------------------ worker thread
    def _main(self) -> None:
        try:
            self.engine = self._load_engine()
        except Exception as err:  # reported by /ready and by every request
            if isinstance(err, UserError):
                log.error("%s", err)
            else:
                log.exception("model failed to load")
            self.load_error = f"the model failed to load: {err}"
            return
        self._ready.set()
        log.info("model loaded; serving")
        while not self._stop.is_set():
            items = self._take()
            if items:
                self._run(items)

    def _take(self) -> list[_Item]:
        """Up to max_batch_size wanted pieces, once the batch is full, nobody else is on the
        way, or the oldest piece has waited max_wait_ms."""
        cap = self.config.max_batch_size
        wait_s = self.config.max_wait_ms / 1000
        with self._cond:
            while not self._items and not self._stop.is_set():
                self._cond.wait(0.5)
            if self._stop.is_set():
                return []
            closes = self._items[0].queued_at + wait_s
            while len(self._items) < cap and self._arriving > 0 and not self._stop.is_set():
                left = closes - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(left)
            batch: list[_Item] = []
            while self._items and len(batch) < cap:
                item = self._items.popleft()
                if item.job.wanted:
                    batch.append(item)
                else:  # its handler has not said so yet (deadline just passed)
                    self.metrics.dropped_pieces.inc()
                    self._settle(item.job, 1)
            self.metrics.queue_depth.set(len(self._items))
            return batch

    def _run(self, items: list[_Item]) -> None:
        import torch

        requests = [it.job.pieces[it.index] for it in items]
        longest = max(len(r.samples) for r in requests) / SAMPLE_RATE
        budget = self.config.max_new_tokens or default_max_new_tokens(longest)
        started = time.monotonic()
        try:
            with torch.inference_mode():
                results: list[Result | Exception] = list(self.engine.generate(requests, budget))
        except Exception as err:  # one bad batch must not kill the worker
            log.exception("batch of %d failed", len(items))
            results = [err] * len(items)
        took = time.monotonic() - started
        with self._cond:
            self._batch_s = 0.8 * self._batch_s + 0.2 * took
            for it in items:
                self._settle(it.job, 1)
        self.metrics.batch_size.observe(len(items))
        self.metrics.batch_seconds.observe(took)
        self.metrics.audio_seconds.inc(sum(len(r.samples) for r in requests) / SAMPLE_RATE)
        for it, res in zip(items, results):
            with contextlib.suppress(RuntimeError):  # the event loop is gone (shutting down)
                it.job.loop.call_soon_threadsafe(it.job.results.put_nowait, (it.index, res))
