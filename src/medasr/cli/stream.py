"""`medasr stream`: live transcription of a file played as if live, or of raw PCM on stdin,
locally or against a `medasr serve` (or any OpenAI Realtime-compatible) server."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Iterator

import numpy as np

from medasr.cli._common import add_context_limit_argument, add_model_arguments, add_word_arguments, check_word_arguments
from medasr.defaults import DEFAULT_MODEL, DEFAULT_VAD, SAMPLE_RATE, VAD_METHODS

NAME = "stream"
HELP = "live transcription: a file as if live, or PCM from stdin; locally or against a server"
DESCRIPTION = """Transcribe live audio as it arrives: partial text while someone speaks, a final line per
utterance (closed by a pause) with its start and end time.

INPUT is an audio file (any format `medasr transcribe` reads), played at --speed (1: real time,
as a microphone would deliver it; 0: as fast as the model keeps up), or `-`: raw 16-bit
little-endian mono PCM on stdin at --rate, so a microphone works through ffmpeg.

Locally (default) the model runs in this process. With --url the audio goes to a server
speaking OpenAI's Realtime transcription protocol (`medasr serve`: --url http://HOST:8000/v1),
through the official openai client.

Endpointing: speech detection opens an utterance and 500 ms of silence closes it (OpenAI's
server-VAD defaults; --threshold, --prefix-ms, --silence-ms). Partial text is what two
consecutive re-decodes of the open utterance agree on (every --update-s of new audio), so it
is never taken back; the final of an utterance comes from the same path as `medasr transcribe`
of that stretch of audio. Utterances over 30 s are cut at their quietest point.

On a terminal, partial text is shown greyed in place and each final is printed as
`[start - end] text`; piped, only the final lines are written. --format jsonl writes the events
instead, one JSON object per line, as they happen (locally the pipeline's events; with --url
the server's OpenAI events).

--timestamps word (local only: OpenAI's Realtime protocol has no word field) runs a forced
aligner (--aligner) on each final: jsonl `completed` events carry `transcript.words` ({word,
start, end, probability, low_confidence}; times from the utterance's start, as its segments),
and the text output adds a line of the words with their times on the stream's timeline, words
below --low-confidence marked with `?`.

examples:
  medasr stream --model demo consult.wav
  medasr stream --model demo --speed 0 --format jsonl consult.wav > events.jsonl
  medasr stream --model demo --speed 0 --timestamps word --aligner demo --format jsonl consult.wav
  ffmpeg -loglevel quiet -f pulse -i default -ac 1 -ar 16000 -f s16le - | medasr stream --model demo -
  medasr serve --model demo &   # then, from anywhere:
  medasr stream --url http://localhost:8000/v1 consult.wav
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("input", help="audio file, or - for raw s16le mono PCM on stdin")
    g = p.add_argument_group("input")
    g.add_argument("--speed", type=float, default=1.0,
                   help="for a file: 1 plays it in real time, 2 twice as fast, 0 as fast as possible (default: 1)")
    g.add_argument("--rate", type=int, default=SAMPLE_RATE, help=f"sample rate of PCM on stdin (default: {SAMPLE_RATE})")
    g.add_argument("--chunk-ms", type=int, default=100, help="audio sent at a time, in ms (default: 100)")
    add_model_arguments(p)
    g = p.add_argument_group("server")
    g.add_argument("--url", default=None,
                   help="stream to this server's /v1/realtime instead of running the model here, e.g. http://localhost:8000/v1")
    g.add_argument("--api-key", default=None,
                   help="the server's API key (default: $MEDASR_API_KEY, then $OPENAI_API_KEY); --model is sent as the "
                   "model name when given")  # fmt: skip
    g = p.add_argument_group("transcription")
    g.add_argument("--language", default="English", help="language (name or code) or 'auto' (default: English)")
    g.add_argument("--context", default=None, help="context text for the prompt, e.g. hotwords such as drug names")
    add_context_limit_argument(g)
    g.add_argument("--max-new-tokens", type=int, default=None, help="token cap per decode, local only (default: grows with the audio)")
    g.add_argument("--vad", default=DEFAULT_VAD, choices=VAD_METHODS,
                   help="speech detection inside each utterance's final, as `medasr transcribe --vad`, local only (default: silero)")
    add_word_arguments(p, live=True)
    g = p.add_argument_group("endpointing")
    g.add_argument("--no-turn-detection", action="store_true",
                   help="no speech detection: the whole input is one utterance, committed at the end (cut every 30 s)")
    g.add_argument("--threshold", type=float, default=0.5, help="speech probability that opens an utterance (default: 0.5)")
    g.add_argument("--prefix-ms", type=int, default=300, help="audio kept before the speech that opened it (default: 300)")
    g.add_argument("--silence-ms", type=int, default=500, help="silence that closes an utterance (default: 500)")
    g.add_argument("--update-s", type=float, default=1.0, help="new audio between partial decodes, local only (default: 1.0)")
    g = p.add_argument_group("output")
    g.add_argument("--format", default="text", choices=["text", "jsonl"],
                   help="text: partial text in place and final lines; jsonl: the events, one per line (default: text)")


def run(args: argparse.Namespace) -> int:
    from medasr.cli._live_display import Display
    from medasr.errors import UserError

    if args.speed < 0 or args.chunk_ms <= 0 or args.rate <= 0:
        raise UserError("--speed must not be negative; --chunk-ms and --rate must be positive")
    if args.input != "-" and not os.path.isfile(args.input):
        raise UserError(f"{args.input}: no such file (pass - to read PCM from stdin)")
    check_word_arguments(args)
    if args.timestamps == "word" and args.url:
        raise UserError("--timestamps word works locally only: OpenAI's Realtime protocol has no word times")
    display = Display(args.format)
    try:
        if args.url:
            import asyncio

            asyncio.run(_remote(args, display))
        else:
            _local(args, display)
    finally:
        display.close()
    return 0


# ---------------------------------------------------------------- audio in


def _blocks(args: argparse.Namespace) -> Iterator[tuple[np.ndarray | bytes, float]]:
    """(chunk, its seconds): 16 kHz float32 from a file, or the raw PCM bytes from stdin."""
    if args.input == "-":
        size = max(2, int(args.rate * args.chunk_ms / 1000) * 2)
        fd = sys.stdin.buffer.fileno()
        while True:
            data = os.read(fd, size)
            if not data:
                return
            yield data, len(data) / 2 / args.rate
        return
    from medasr.audio.decode import stream_audio

    n = int(SAMPLE_RATE * args.chunk_ms / 1000)
    for block in stream_audio(args.input, block_s=max(n / SAMPLE_RATE, 1.0)):
        # as live PCM is: a (float) file above full scale cannot be rescaled after the fact
        block = np.clip(block, -1.0, 1.0)
        for i in range(0, len(block), n):
            piece = block[i : i + n]
            yield piece, len(piece) / SAMPLE_RATE


class _Pace:
    """Sleep so that audio goes out no faster than `speed` times real time (0: no waiting)."""

    def __init__(self, speed: float):
        self.speed = speed
        self.t0 = time.monotonic()
        self.sent = 0.0

    def delay(self, seconds: float) -> float:
        self.sent += seconds
        if not self.speed:
            return 0.0
        return max(0.0, self.t0 + self.sent / self.speed - time.monotonic())


# ---------------------------------------------------------------- locally


def _local(args: argparse.Namespace, display) -> None:
    from medasr.audio.pcm import PcmDecoder
    from medasr.errors import UserError
    from medasr.model.checkpoint import load
    from medasr.model.prompt import normalize_language
    from medasr.pipeline.engine import Engine
    from medasr.pipeline.events import Completed, Delta, Failed, to_json
    from medasr.pipeline.scheduler import Scheduler
    from medasr.pipeline.session import LiveOptions, LiveSession

    try:
        options = LiveOptions(
            turn_detection=not args.no_turn_detection, threshold=args.threshold, prefix_padding_ms=args.prefix_ms,
            silence_duration_ms=args.silence_ms, update_s=args.update_s, language=normalize_language(args.language),
            context=args.context, vad=args.vad, max_new_tokens=args.max_new_tokens, words=args.timestamps == "word",
        )  # fmt: skip
        options.check()
    except ValueError as err:
        raise UserError(str(err)) from None
    timer = None
    if options.words:
        from medasr.defaults import default_aligner
        from medasr.pipeline.words import WordTimer

        timer = WordTimer(args.aligner or default_aligner(args.model), device=args.device, dtype=args.dtype)
        timer.load()  # a bad --aligner is an error before the stream starts

    def on_event(e) -> None:
        display.event(to_json(e, args.low_confidence))
        if isinstance(e, Delta):
            display.partial(e.item_id, e.text)
        elif isinstance(e, Completed):
            display.final(e.item_id, e.start, e.end, e.transcript.text)
            if e.transcript.words is not None:
                display.words(e.start, e.transcript.words, e.transcript.warnings, args.low_confidence)
        elif isinstance(e, Failed):
            display.failed(e.item_id, e.message)

    loaded = load(args.model, device=args.device, dtype=args.dtype, quantize=args.quantize)
    scheduler = Scheduler(Engine(loaded, max_context_tokens=args.max_context_tokens))
    scheduler.start()
    try:
        session = LiveSession(scheduler, options, on_event, words=timer)
        pcm = PcmDecoder(args.rate) if args.input == "-" else None
        pace = _Pace(args.speed if args.input != "-" else 0.0)
        for chunk, seconds in _blocks(args):
            time.sleep(pace.delay(seconds))
            session.append(pcm(chunk) if pcm else chunk)
        if pcm:
            session.append(pcm.flush())
        session.finish()
        while not session.wait(0.5):  # wakes up for Ctrl-C
            pass
    finally:
        scheduler.stop()


# ---------------------------------------------------------------- against a server


async def _remote(args: argparse.Namespace, display) -> None:
    import asyncio
    import base64

    from medasr.audio.pcm import RATES, PcmDecoder, to_pcm16
    from medasr.errors import UserError

    try:
        import openai
        import websockets
    except ImportError:
        raise UserError("--url needs the openai client with its realtime extra: pip install 'openai[realtime]'") from None
    key = args.api_key or os.environ.get("MEDASR_API_KEY") or os.environ.get("OPENAI_API_KEY") or "none"
    stdin = args.input == "-"
    rate = args.rate if stdin and args.rate in RATES else SAMPLE_RATE
    resample = PcmDecoder(args.rate) if stdin and rate != args.rate else None
    transcription = {"language": args.language}
    if args.context:
        transcription["prompt"] = args.context
    if args.model != DEFAULT_MODEL:
        transcription["model"] = args.model
    turn = None if args.no_turn_detection else {"type": "server_vad", "threshold": args.threshold,
                                                  "prefix_padding_ms": args.prefix_ms, "silence_duration_ms": args.silence_ms}  # fmt: skip
    client = openai.AsyncOpenAI(base_url=args.url, api_key=key, max_retries=0)
    times: dict[str, list[float | None]] = {}  # item -> [start, end] as the server reported them
    sent = [0.0]  # seconds of audio sent

    async def feed(conn) -> None:
        pace = _Pace(0.0 if stdin else args.speed)
        loop = asyncio.get_running_loop()
        blocks = _blocks(args)
        while True:
            got = await loop.run_in_executor(None, next, blocks, None)  # stdin reads block
            if got is None:
                break
            chunk, seconds = got
            await asyncio.sleep(pace.delay(seconds))
            if resample is not None:
                data = to_pcm16(resample(chunk))
            else:
                data = chunk if stdin else to_pcm16(chunk)
            await conn.input_audio_buffer.append(audio=base64.b64encode(data).decode())
            sent[0] += seconds
        if resample is not None:
            await conn.input_audio_buffer.append(audio=base64.b64encode(to_pcm16(resample.flush())).decode())
        await conn.input_audio_buffer.commit(event_id="medasr-final-commit")
        # answered after the commit: every item the input made is committed by then
        await conn.session.update(session={"type": "transcription"}, event_id="medasr-end-marker")

    fatal = ("invalid_api_key", "invalid_intent", "session_limit_reached", "model_not_ready", "model_not_found",
             "unsupported_language", "session_expired", "idle_timeout")  # fmt: skip
    try:
        async with client.realtime.connect(extra_query={"intent": "transcription"}) as conn:
            feeder = None
            committed: list[str] = []
            done: set[str] = set()
            updates = 0
            try:
                while True:
                    raw = await conn.recv_bytes()
                    e = conn.parse_event(raw)
                    display.event(json.loads(raw))
                    kind = e.type
                    if kind == "session.created":
                        await conn.session.update(session={"type": "transcription", "audio": {"input": {
                            "format": {"type": "audio/pcm", "rate": rate}, "transcription": transcription, "turn_detection": turn,
                        }}})  # fmt: skip
                    elif kind == "session.updated":
                        updates += 1
                        if updates == 1:
                            feeder = asyncio.create_task(feed(conn))
                    elif kind == "error":
                        if e.error.event_id == "medasr-final-commit":
                            pass  # nothing was open at the end: fine
                        elif updates == 0 or e.error.code in fatal:
                            raise UserError(f"the server refused: {e.error.message} ({e.error.code})")
                        else:
                            print(f"medasr stream: server error: {e.error.message} ({e.error.code})", file=sys.stderr)
                    elif kind == "input_audio_buffer.speech_started":
                        times[e.item_id] = [e.audio_start_ms / 1000, None]
                    elif kind == "input_audio_buffer.speech_stopped":
                        times.setdefault(e.item_id, [None, None])[1] = e.audio_end_ms / 1000
                    elif kind == "input_audio_buffer.committed":
                        committed.append(e.item_id)
                    elif kind.endswith("input_audio_transcription.delta"):
                        display.partial(e.item_id, e.delta or "")
                    elif kind.endswith("input_audio_transcription.completed"):
                        done.add(e.item_id)
                        start, end = _span(e.item_id, committed, times, sent[0])
                        display.final(e.item_id, start, end, e.transcript)
                    elif kind.endswith("input_audio_transcription.failed"):
                        done.add(e.item_id)
                        display.failed(e.item_id, e.error.message or "transcription failed")
                    if updates >= 2 and set(committed) <= done:
                        break
            finally:
                if feeder is not None:
                    feeder.cancel()
    except websockets.exceptions.ConnectionClosed as err:
        raise UserError(f"the server closed the connection ({err})") from None
    except (OSError, websockets.exceptions.InvalidHandshake) as err:
        raise UserError(f"cannot connect to {args.url}: {err}") from None


def _span(item: str, committed: list[str], times: dict, sent: float) -> tuple[float, float]:
    """An item's start and end: as the server's speech events gave them; where one is missing
    (no turn detection, or an utterance cut at 30 s), the neighbouring item's, or the audio sent."""
    k = committed.index(item) if item in committed else len(committed)
    start, end = times.get(item, [None, None])
    if start is None:
        prev = committed[k - 1] if k > 0 else None
        start = (times.get(prev, [None, None])[1] or 0.0) if prev else 0.0
    if end is None:
        nxt = committed[k + 1] if k + 1 < len(committed) else None
        end = (times.get(nxt, [None, None])[0] if nxt else None) or sent
    return start, end
