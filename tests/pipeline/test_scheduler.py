"""The scheduler's queue: fair between owners within a priority, and the engine's one context
rule applied before anything is queued (the demo model, real decoding)."""

from __future__ import annotations

import numpy as np
import pytest

from medasr.audio.decode import load_audio
from medasr.errors import BadContext, ContextTooLong
from medasr.model.checkpoint import load
from medasr.pipeline.engine import Engine, Request
from medasr.pipeline.scheduler import BULK, LIVE, Scheduler

TOKENS = 6


@pytest.fixture(scope="module")
def engine():
    return Engine(load("demo", device="cpu"), batch_size=4, max_context_tokens=64)


@pytest.fixture(scope="module")
def clip(speech_clips):
    return load_audio(str(speech_clips[0])).samples


def _order(scheduler: Scheduler, submissions) -> list[str]:
    """Submit (name, owner, n pieces, priority) in turn, drive to the end; the names in the
    order their pieces finished (one row: finishing order is admission order)."""
    done: list[str] = []
    for name, owner, n, priority, samples in submissions:
        scheduler.submit([Request(samples, max_new_tokens=TOKENS)] * n, priority,
                         lambda i, res, name=name: done.append(name), owner=owner)  # fmt: skip
    scheduler.run_all()
    return done


def test_an_owner_with_a_backlog_takes_turns_with_the_others(engine, clip):
    """A live session with eight finals waiting and one that just closed an utterance: the
    newcomer's piece is served second, not ninth (start-time fair queueing)."""
    order = _order(Scheduler(engine, max_rows=1), [("greedy", "A", 8, LIVE, clip), ("polite", "B", 1, LIVE, clip)])
    assert order.index("polite") == 1 and len(order) == 9


def test_fairness_weighs_audio_seconds(engine, clip):
    """Owner A's long pieces count for their length: B's short pieces, submitted later, are
    interleaved about as often as their audio allows."""
    short = clip[: len(clip) // 4]
    order = _order(Scheduler(engine, max_rows=1), [("long", "A", 3, LIVE, np.tile(clip, 3)), ("short", "B", 6, LIVE, short)])
    assert order == ["long"] + ["short"] * 6 + ["long"] * 2  # 6 x 0.75 s of B fit before A's next 9 s piece


def test_priority_still_comes_first(engine, clip):
    order = _order(Scheduler(engine, max_rows=1), [("bulk", None, 3, BULK, clip), ("live", "L", 1, LIVE, clip)])
    assert order[0] == "live"


def test_a_ticket_without_owner_is_its_own_flow(engine, clip):
    """Two uploads (no owner): the second starts beside the first's remaining pieces, not after all of them."""
    order = _order(Scheduler(engine, max_rows=1), [("first", None, 6, BULK, clip), ("second", None, 1, BULK, clip)])
    assert order.index("second") == 1


def test_the_context_rule_refuses_before_anything_is_queued(engine, clip):
    scheduler = Scheduler(engine, max_rows=2)
    prefills = engine.stats.prefills
    long = "metoprolol apixaban " * 200  # far over the 64-token limit of this engine
    with pytest.raises(ContextTooLong, match="over the limit of 64 tokens"):
        scheduler.submit([Request(clip, context="fine"), Request(clip, context=long)])
    with pytest.raises(BadContext, match="lone surrogate"):
        scheduler.submit([Request(clip, context="bad \udc80 text")])
    assert scheduler.waiting == 0 and engine.stats.prefills == prefills  # no model call, nothing queued


def test_check_context_counts_tokens(engine):
    engine.check_context(None)
    engine.check_context("")
    engine.check_context("metoprolol, apixaban")
    n = len(engine.tokenizer("metoprolol apixaban " * 200, add_special_tokens=False)["input_ids"])
    with pytest.raises(ContextTooLong, match=f"{n:,} tokens"):
        engine.check_context("metoprolol apixaban " * 200)
    with pytest.raises(ContextTooLong, match="characters"):  # refused without tokenizing 1 MB
        engine.check_context("x" * 1_000_000)
