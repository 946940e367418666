"""The library's live session on a real (tiny) model and scheduler: what a client that leaves
leaves behind, and options changed mid-stream."""

from __future__ import annotations

import numpy as np
import pytest

from medasr.audio.decode import load_audio
from medasr.audio.pcm import PcmDecoder, to_pcm16
from medasr.pipeline.events import Committed, Completed, Delta
from medasr.pipeline.scheduler import Scheduler
from medasr.pipeline.session import LiveOptions, LiveSession


@pytest.fixture(scope="module")
def engine(tiny_model):
    from medasr.model.checkpoint import load
    from medasr.pipeline.engine import Engine

    return Engine(load(str(tiny_model["transformers"]), device="cpu"), batch_size=4)


@pytest.fixture(scope="module")
def speech(speech_clips) -> np.ndarray:
    return load_audio(speech_clips[3]).samples


@pytest.mark.parametrize("running", [False, True], ids=["waiting", "running"])
def test_close_cancels_decodes_and_frees_audio(engine, speech, running):
    from medasr.pipeline.engine import Request
    from medasr.pipeline.scheduler import BULK

    scheduler = Scheduler(engine)
    events = []
    other: dict = {}  # someone else's work, decoded beside the session's
    session = LiveSession(scheduler, LiveOptions(turn_detection=False, max_new_tokens=4), events.append)
    for i in range(0, 2 * 16000, 1600):
        session.append(speech[i : i + 1600])  # a partial decode is asked for after 1 s
    session.commit()  # the final of these 2 s is asked for (the partial is moot: dropped)
    assert isinstance(events[-1], Committed) and scheduler.waiting == 1
    session.append(speech[2 * 16000 : 3 * 16000])  # the next utterance: a partial decode of it
    assert scheduler.waiting == 2 and scheduler.stats.dropped == 1
    if running:
        scheduler.submit([Request(speech, max_new_tokens=4)], BULK, lambda i, r: other.update(text=r.text))
        scheduler.run_until_queue_empty()  # all three are in the decoder's rows now
        assert scheduler.decoder.active == 3
    seen = len(events)
    session.close()  # the client is gone
    assert scheduler.waiting == 0 and session.pending_s == 0 and session.pending_finals == 0
    scheduler.run_all()
    assert scheduler.decoder.active == 0 and scheduler.stats.dropped == 3
    assert len(events) == seen  # nothing more is said to nobody
    if running:  # the other work finished as if alone
        alone: dict = {}
        scheduler.submit([Request(speech, max_new_tokens=4)], BULK, lambda i, r: alone.update(text=r.text))
        scheduler.run_all()
        assert other["text"] == alone["text"]
    session.append(speech[:1600])  # a late chunk is ignored
    assert scheduler.waiting == 0


def test_finals_equal_offline_and_deltas_add_up(engine, speech):
    """Manual commits: the final is the offline transcription of exactly the committed audio,
    and when the released partial text agrees with it, the deltas add up to it."""
    from medasr.transcribe import ASR

    scheduler = Scheduler(engine)
    events = []
    session = LiveSession(scheduler, LiveOptions(turn_detection=False, max_new_tokens=4, vad="none"), events.append)
    for i in range(0, len(speech), 1600):
        session.append(speech[i : i + 1600])
        scheduler.run_all()  # every partial decode finishes before more audio comes
    session.commit()
    scheduler.run_all()
    final = events[-1]
    assert isinstance(final, Completed)
    offline = ASR(engine.loaded).transcribe((speech, 16000), max_new_tokens=4, vad="none")[0]
    assert final.transcript.text == offline.text and final.end == pytest.approx(len(speech) / 16000)
    said = "".join(e.text for e in events if isinstance(e, Delta)).split()
    words = final.transcript.text.split()
    assert said == words or said != words[: len(said)]


def test_configure_switches_turn_detection_mid_stream(engine, speech):
    scheduler = Scheduler(engine)
    events = []
    session = LiveSession(scheduler, LiveOptions(turn_detection=False, max_new_tokens=4), events.append)
    session.append(speech[:16000])
    assert session.pending_s == pytest.approx(1.0)
    # server VAD from here on: the open utterance stays open, and silence now closes it
    session.configure(LiveOptions(turn_detection=True, max_new_tokens=4))
    session.append(np.zeros(16000, np.float32))
    closed = [e for e in events if isinstance(e, Committed)]
    assert len(closed) == 1 and closed[0].start == 0.0 and 1.0 < closed[0].end < 1.5
    scheduler.run_all()
    assert isinstance(events[-1], Completed)


def test_pcm_decoder_matches_the_file_and_carries_odd_bytes(speech):
    pcm = to_pcm16(speech)
    decoded = PcmDecoder(16000)
    parts = [decoded(pcm[i : i + 3333]) for i in range(0, len(pcm), 3333)]  # odd-sized blocks split samples
    assert np.array_equal(np.concatenate(parts), np.frombuffer(pcm, "<i2").astype(np.float32) / 32768)
    at24 = PcmDecoder(24000)
    n = sum(len(at24(pcm[i : i + 4800])) for i in range(0, len(pcm), 4800)) + len(at24.flush())
    assert abs(n - len(speech) * 16000 // 24000) <= 1  # resampled, nothing lost at the end
    with pytest.raises(ValueError):
        PcmDecoder(0)
