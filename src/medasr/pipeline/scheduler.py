"""Scheduler: requests from every client share one Decoder, with one batching policy.

Everything that transcribes submits here: the library's files (bulk), the server's uploads and
chat requests (interactive) and live streams' partial and final decodes (live). Waiting pieces
form one queue ordered by priority, then fairly between owners: within a priority, pieces are
served by start-time fair queueing (each owner's pieces get virtual start tags spaced by their
audio seconds, from the virtual time of the piece now served), so an owner with a backlog (a
live session with many finals waiting, a long upload) takes its turn beside the others instead of
ahead of them. A ticket without an owner is its own flow. Every request's context is checked
against the engine's one context rule before anything is queued (`Engine.check_context`).

Each iteration admits waiting pieces into the decoder's free rows (prefilled together, up to
`max_prefill_audio_s` of audio) and runs one decode step for every row in flight, so a new
request starts at the next step instead of waiting for a batch to end (continuous batching).
`reserve` rows are kept for live work, so a stream's update is never stuck behind a queue of
long offline pieces.

Policy "static" admits only into an empty decoder (batches run to completion, as classic
static batching does); it exists to measure the difference and gives the same texts.

Driven either by the caller (`run_all`, the library) or by a worker thread (`start`, servers).
Results go to each ticket's `on_result(index, Result | Exception)` from the driving thread; an
exception raised by a callback reaches the caller that drives the scheduler (a full disk stops
`medasr transcribe`), while a worker thread logs it and serves the others.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import logging
import threading
import time
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field, replace

from medasr.pipeline.decoder import Decoder
from medasr.pipeline.engine import Engine, Request, Result

log = logging.getLogger(__name__)

LIVE, INTERACTIVE, BULK = 0, 1, 2  # priorities: lower runs first
POLICIES = ("continuous", "static")
MIN_COST_S = 0.5  # a piece's weight in fair queueing: its audio seconds, at least this


@dataclass(eq=False)
class Ticket:
    """One submitter's group of requests (an upload's pieces, a file's pieces, a stream update)."""

    requests: list[Request]
    priority: int
    on_result: Callable[[int, Result | Exception], None]
    deadline: float | None = None  # time.monotonic() after which nobody waits for it
    on_settled: Callable[[Ticket], None] | None = None  # every piece answered or dropped
    owner: Hashable | None = None  # whose work it is (a live session): the queue is fair between owners
    cancelled: bool = False
    unsettled: int = 0

    @property
    def wanted(self) -> bool:
        return not self.cancelled and (self.deadline is None or time.monotonic() < self.deadline)


@dataclass
class Iteration:
    """What one iteration did (for metrics)."""

    admitted: int
    rows: int
    seconds: float
    audio_s: float


@dataclass
class _Stats:
    pieces: int = 0
    dropped: int = 0
    piece_s: float = 1.0  # moving average of a piece's time in the decoder, for retry estimates
    iterations: list = field(default_factory=list)


class Scheduler:
    def __init__(
        self,
        engine: Engine,
        max_rows: int | None = None,
        max_prefill_audio_s: float | None = None,
        reserve: int = 0,
        wait_s: float = 0.0,
        policy: str = "continuous",
        on_iteration: Callable[[Iteration], None] | None = None,
        decoder_factory: Callable[[int], Decoder] | None = None,
    ):
        """decoder_factory(rows) makes the decoder (default: `Decoder.for_engine`); a stand-in
        engine brings its own (the server's scheduling tests)."""
        if policy not in POLICIES:
            raise ValueError(f"unknown scheduling policy {policy!r}: use {', '.join(POLICIES)}")
        self.engine = engine
        self.max_rows = max_rows or engine.batch_size
        self.max_prefill_audio_s = max_prefill_audio_s or engine.max_batch_audio_s
        self.reserve = min(reserve, self.max_rows - 1)
        self.wait_s = wait_s
        self.policy = policy
        self.on_iteration = on_iteration
        self._new_decoder = decoder_factory or (lambda rows: Decoder.for_engine(engine, rows))
        self.decoder = self._new_decoder(self.max_rows)
        self.stats = _Stats()
        self._queue: list[tuple[int, float, int, Ticket, int]] = []  # (priority, start tag, arrival, ticket, piece)
        self._virtual: dict[int, float] = {}  # per priority: the start tag of the piece served last
        self._finish: dict[tuple[int, Hashable], float] = {}  # per (priority, owner): its last piece's finish tag
        self._seq = itertools.count()
        self._cond = threading.Condition()
        self._arriving = 0
        self._started: dict[tuple[Ticket, int], float] = {}
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    # ------------------------------------------------------------------ submitting
    def submit(
        self,
        requests: Sequence[Request],
        priority: int = BULK,
        on_result: Callable[[int, Result | Exception], None] | None = None,
        deadline: float | None = None,
        on_settled: Callable[[Ticket], None] | None = None,
        owner: Hashable | None = None,
    ) -> Ticket:
        """Queue `requests` as one ticket. Raises BadContext / ContextTooLong (nothing queued)
        when a request's context breaks the engine's context rule."""
        for context in {r.context for r in requests}:
            self.engine.check_context(context)
        ticket = Ticket(list(requests), priority, on_result or (lambda i, r: None), deadline, on_settled, owner)
        ticket.unsettled = len(ticket.requests)
        if not ticket.requests:
            if on_settled:
                on_settled(ticket)
            return ticket
        with self._cond:
            flow = (priority, ticket if owner is None else owner)
            tag = max(self._virtual.get(priority, 0.0), self._finish.get(flow, 0.0))
            for i, r in enumerate(ticket.requests):
                heapq.heappush(self._queue, (priority, tag, next(self._seq), ticket, i))
                tag += max(r.duration, MIN_COST_S)
            self._finish[flow] = tag
            if len(self._finish) > 1024:  # owners without a backlog start at the virtual time anyway
                self._finish = {k: f for k, f in self._finish.items() if f > self._virtual.get(k[0], 0.0)}
            self._cond.notify_all()
        return ticket

    def cancel(self, ticket: Ticket) -> None:
        """Nobody wants `ticket` any more: its waiting pieces are dropped now, its running rows
        at the next step. Safe to call more than once."""
        with self._cond:
            ticket.cancelled = True
            if not ticket.unsettled:
                return
            kept = [e for e in self._queue if e[3] is not ticket]
            dropped = len(self._queue) - len(kept)
            if dropped:
                heapq.heapify(kept)
                self._queue = kept
                self._settle(ticket, dropped, dropped=True)
            self._cond.notify_all()

    @contextlib.contextmanager
    def arriving(self):
        """Wrap the reading and decoding of a request, so an idle scheduler waits (up to
        `wait_s`) for it to join the first batch."""
        with self._cond:
            self._arriving += 1
        try:
            yield
        finally:
            with self._cond:
                self._arriving -= 1
                self._cond.notify_all()

    @property
    def waiting(self) -> int:
        return len(self._queue)

    def retry_after_s(self) -> float:
        """A guess at how long until a newly queued piece would finish."""
        return (len(self._queue) / self.max_rows + 1) * self.stats.piece_s

    # ------------------------------------------------------------------ driving
    def run_all(self) -> None:
        """Drive in the calling thread until nothing is waiting or running."""
        while self._queue or self.decoder.active:
            self._iterate()

    def run_until_queue_empty(self) -> None:
        """Drive until every waiting piece has started (rows may still be running): the caller
        can then submit more without the decoder draining in between."""
        while self._queue:
            self._iterate()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._main, name="medasr-scheduler", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        if self._thread and self._thread.is_alive():
            self._thread.join(timeout)

    def _main(self) -> None:
        while not self._stop.is_set():
            with self._cond:
                while not self._queue and not self.decoder.active and not self._stop.is_set():
                    self._cond.wait(0.5)
                if self._stop.is_set():
                    return
                self._wait_for_company()
            try:
                self._iterate()
            except Exception:  # never let the worker die; _iterate already failed the rows
                log.exception("scheduler iteration failed")

    def _wait_for_company(self) -> None:
        """An idle decoder waits up to wait_s after the oldest piece for others on their way
        (caller holds the lock)."""
        if self.decoder.active or not self._queue or not self.wait_s:
            return
        closes = time.monotonic() + self.wait_s
        while len(self._queue) < self.max_rows and self._arriving > 0 and not self._stop.is_set():
            left = closes - time.monotonic()
            if left <= 0:
                break
            self._cond.wait(left)

    # ------------------------------------------------------------------ one iteration
    def _iterate(self) -> None:
        started = time.monotonic()
        group = self._take()
        finished: list[tuple[tuple[Ticket, int], Result | Exception]] = []
        if group:
            for key in group:
                self._started[key] = started
            try:
                finished += self.decoder.admit([(key, key[0].requests[key[1]]) for key in group])
            except Exception as err:
                log.exception("prefill of %d pieces failed", len(group))
                finished += [(key, err) for key in group]
                finished += self._reset(err)
        self._drop_unwanted()
        rows = self.decoder.active
        try:
            finished += self.decoder.step()
        except Exception as err:
            log.exception("decode step of %d rows failed", rows)
            finished += self._reset(err)
        took = time.monotonic() - started
        audio_s = sum(key[0].requests[key[1]].duration for key in group)
        if self.on_iteration:
            self.on_iteration(Iteration(len(group), rows, took, audio_s))
        self._deliver(finished)

    def _take(self) -> list[tuple[Ticket, int]]:
        """Waiting pieces for the free rows, highest priority first, skipping unwanted ones."""
        with self._cond:
            if self.policy == "static" and self.decoder.active:
                return []
            group: list[tuple[Ticket, int]] = []
            seconds = 0.0
            free = self.decoder.free
            while self._queue and len(group) < free:
                priority, tag, _, ticket, i = self._queue[0]
                if priority > 0 and len(group) >= free - self.reserve and self.decoder.active + len(group) > 0:
                    break  # the last `reserve` rows are for live work
                duration = ticket.requests[i].duration
                if group and seconds + duration > self.max_prefill_audio_s:
                    break
                heapq.heappop(self._queue)
                self._virtual[priority] = max(self._virtual.get(priority, 0.0), tag)
                if not ticket.wanted:
                    self._settle(ticket, 1, dropped=True)
                    continue
                group.append((ticket, i))
                seconds += duration
            return group

    def _drop_unwanted(self) -> None:
        gone = {key for key in self.decoder.in_flight() if not key[0].wanted}
        if gone:
            self.decoder.drop(gone)
            with self._cond:
                for key in gone:
                    self._started.pop(key, None)
                    self._settle(key[0], 1, dropped=True)

    def _reset(self, err: Exception) -> list:
        """After a failed forward the cache may be inconsistent: fail the rows in flight and
        start a fresh decoder."""
        lost = [(key, err) for key in self.decoder.in_flight()]
        self.decoder = self._new_decoder(self.max_rows)
        return lost

    def _deliver(self, finished) -> None:
        now = time.monotonic()
        for key, res in finished:
            ticket, i = key
            began = self._started.pop(key, now)
            if not isinstance(res, Exception):
                self.stats.piece_s = 0.9 * self.stats.piece_s + 0.1 * (now - began)
            try:
                ticket.on_result(i, res)
            except Exception:
                if self._thread is None:  # driven by the caller: its own callback's error is its to handle
                    with self._cond:
                        self._settle(ticket, 1)
                    raise
                log.exception("result callback failed")  # a worker serves everyone: one callback must not stop it
            with self._cond:
                self._settle(ticket, 1)

    def _settle(self, ticket: Ticket, n: int, dropped: bool = False) -> None:
        """n of the ticket's pieces were answered or dropped (caller holds the lock)."""
        if dropped:
            self.stats.dropped += n
        else:
            self.stats.pieces += n
        ticket.unsettled -= n
        if ticket.unsettled == 0 and ticket.on_settled:
            ticket.on_settled(ticket)


def run_requests(
    engine: Engine,
    requests: Sequence[Request],
    batch_size: int | None = None,
    max_new_tokens: int | None = None,
    on_result: Callable[[int, Result], None] | None = None,
    mode: str | None = None,
) -> list[Result]:
    """Transcribe a plain list of requests on a scheduler of its own, longest first, driven in
    the calling thread; `on_result(index, result)` as each finishes; results in request order.

    mode "continuous" (the engine's default): a finished row's place is taken by the next
    request at the next step; "static": sorted batches run to completion one after the other.
    Same texts either way.
    """
    if max_new_tokens is not None:
        requests = [replace(r, max_new_tokens=max_new_tokens) for r in requests]
    order = sorted(range(len(requests)), key=lambda i: requests[i].duration, reverse=True)
    results: list[Result | None] = [None] * len(requests)
    errors: list[Exception] = []

    def got(k: int, res: Result | Exception) -> None:
        if isinstance(res, Exception):
            errors.append(res)
            return
        results[order[k]] = res
        if on_result:
            on_result(order[k], res)

    scheduler = Scheduler(engine, max_rows=batch_size or engine.batch_size, policy=mode or engine.mode)
    scheduler.submit([requests[i] for i in order], on_result=got)
    scheduler.run_all()
    if errors:
        raise errors[0]
    return results  # type: ignore[return-value]
