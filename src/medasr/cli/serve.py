"""`medasr serve`: an OpenAI-compatible transcription server with request batching."""

from __future__ import annotations

import argparse
import sys

from medasr.cli._common import add_context_limit_argument, add_model_arguments, set_threads
from medasr.defaults import DEFAULT_ALIGNER, DEFAULT_VAD, LOW_CONFIDENCE, VAD_METHODS

NAME = "serve"
HELP = "serve an OpenAI-compatible transcription API and a web page"
DESCRIPTION = """Serve Qwen3-ASR over HTTP.

Endpoints: POST /v1/audio/transcriptions (OpenAI's, with json, text, srt, vtt, verbose_json and
streaming), POST /v1/chat/completions (vLLM's audio_url / input_audio style), GET /v1/models,
GET /v1/realtime?intent=transcription (OpenAI's Realtime transcription over a WebSocket: live
partial and final text, as `client.realtime.connect(extra_query={"intent": "transcription"})`
speaks it), GET /health, GET /ready, GET /metrics (Prometheus), and a web page at / (file upload,
recording, live microphone).

Every upload goes through speech detection (--vad): audio without speech gets an empty
transcript, never invented text. Concurrent requests share the model: up to --max-batch-size
sequences are decoded together and a new request joins at the next step (continuous
batching). Audio longer than 30 s is split into pieces that batch too. Beyond --max-queue
requests in flight the server answers 429 with Retry-After. Requests naming a model other than
--served-model-name get 404.
A client that has not sent its request headers, or then its body, within --read-timeout-s
gets 408 and its connection is closed.

Word timestamps: timestamp_granularities[]=word (with response_format=verbose_json, as OpenAI;
400 otherwise) adds `words` ({word, start, end, probability, low_confidence}) from a forced
aligner; ["word"] alone gives words without segments, both give both. The web page shows them
as clickable words (low-confidence ones highlighted) that play the audio from there.

examples:
  medasr serve --model demo
  medasr serve --model ./my-finetune --host 0.0.0.0 --api-key "$MEDASR_KEY"
  curl localhost:8000/v1/audio/transcriptions -F file=@consult.wav -F response_format=srt
  medasr serve --model demo --aligner demo
  curl localhost:8000/v1/audio/transcriptions -F file=@consult.wav -F response_format=verbose_json \
       -F 'timestamp_granularities[]=word'
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_model_arguments(p)
    g = p.add_argument_group("server")
    g.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)")
    g.add_argument("--port", type=int, default=8000, help="port (default: 8000)")
    g.add_argument("--api-key", default=None, help="require `Authorization: Bearer KEY` on /v1/* (default: none)")
    g.add_argument("--served-model-name", nargs="+", default=None, metavar="NAME",
                   help="model names to answer to and list in /v1/models; requests naming another model get 404 "
                   "(default: the --model value and its last path part)")  # fmt: skip
    g.add_argument("--language", default="English", help="language when a request names none, or 'auto' (default: English)")
    g = p.add_argument_group("batching")
    g.add_argument("--max-batch-size", type=int, default=16, help="sequences decoded together (default: 16)")
    g.add_argument("--compile", action="store_true",
                   help="CUDA: compile the decode step into a CUDA graph (static shapes, bucketed batch sizes; "
                   "a few compiles at start)")
    g.add_argument("--live-rows", type=int, default=2,
                   help="of those, rows kept for live streams so their updates never queue behind uploads (default: 2)")
    g.add_argument("--max-wait-ms", type=float, default=10.0,
                   help="how long an idle model waits for requests already arriving (default: 10)")
    g.add_argument("--max-queue", type=int, default=256, help="requests in flight before 429 (default: 256)")
    g.add_argument("--max-new-tokens", type=int, default=None, help="token cap per piece (default: grows with duration)")
    g.add_argument("--vad", default=DEFAULT_VAD, choices=VAD_METHODS,
                   help="speech detection on every upload: audio without speech gets an empty transcript and no model "
                   "call, audio over 30 s is cut into pieces of speech; none: off (default: silero)")  # fmt: skip
    g = p.add_argument_group("limits")
    g.add_argument("--max-upload-mb", type=float, default=25.0, help="largest upload (default: 25)")
    g.add_argument("--max-audio-s", type=float, default=1200.0, help="longest audio in seconds (default: 1200)")
    g.add_argument("--request-timeout-s", type=float, default=600.0, help="per-request deadline, then 504 (default: 600)")
    from medasr.server.timeouts import MIN_RATE  # light: no server packages imported

    g.add_argument("--read-timeout-s", type=float, default=30.0,
                   help="time a client has to send a request's headers, and then its body (one more second per "
                   f"{MIN_RATE // 1024} kB received), before 408 and a closed connection (default: 30)")  # fmt: skip
    g.add_argument("--url-timeout-s", type=float, default=30.0, help="time allowed to fetch an audio URL (default: 30)")
    add_context_limit_argument(g, "refused (uploads and chat: 400 context_too_long; live sessions: an error event)")
    g.add_argument("--allow-private-urls", action="store_true",
                   help="let audio URLs point at loopback and private addresses (default: refused)")  # fmt: skip
    g = p.add_argument_group("word timestamps")
    g.add_argument("--aligner", default=None, metavar="MODEL",
                   help="forced aligner for timestamp_granularities[]=word: hub id, directory or 'demo'. Given, it is "
                   "loaded at start-up with the model (a bad one stops the server); not given, 'demo' with --model "
                   f"demo, else {DEFAULT_ALIGNER}, is loaded on the first request that asks for words (if it cannot be, such "
                   "requests get 503 aligner_not_available)")  # fmt: skip
    g.add_argument("--low-confidence", type=float, default=LOW_CONFIDENCE, metavar="P",
                   help=f"words whose probability is below P are marked low_confidence (default: {LOW_CONFIDENCE})")
    g = p.add_argument_group("live sessions (/v1/realtime)")
    g.add_argument("--realtime-max-sessions", type=int, default=16,
                   help="live sessions at once; beyond that a new one is refused with an error (default: 16)")
    g.add_argument("--realtime-max-session-s", type=float, default=3600.0,
                   help="a live session ends after this many seconds (default: 3600, as OpenAI)")
    g.add_argument("--realtime-idle-timeout-s", type=float, default=120.0,
                   help="a live session ends after this many seconds without a client event (default: 120)")
    g.add_argument("--realtime-send-timeout-s", type=float, default=10.0,
                   help="a client that takes no event from the server for this long is not reading: its session is "
                   "closed and freed (default: 10)")
    g.add_argument("--realtime-send-queue", type=int, default=256,
                   help="events waiting for one client; one more and it is closed as not reading (default: 256)")


def run(args: argparse.Namespace) -> int:
    set_threads(args.threads)  # before torch starts its thread pool and the batcher thread starts
    try:
        import uvicorn

        from medasr.server import ServerConfig, create_app
    except ImportError as err:
        from medasr.errors import UserError

        raise UserError(
            f"the server needs extra packages ({err.name}): pip install fastapi uvicorn python-multipart prometheus_client"
        ) from None
    from medasr.errors import UserError

    config = ServerConfig(
        model=args.model, served_model_name=args.served_model_name, device=args.device, dtype=args.dtype,
        quantize=args.quantize,
        api_key=args.api_key, language=args.language, max_batch_size=args.max_batch_size, live_rows=args.live_rows,
        compile=args.compile,
        max_wait_ms=args.max_wait_ms, max_queue=args.max_queue, request_timeout_s=args.request_timeout_s,
        read_timeout_s=args.read_timeout_s,
        max_upload_mb=args.max_upload_mb, max_audio_s=args.max_audio_s, vad=args.vad,
        max_new_tokens=args.max_new_tokens, allow_private_urls=args.allow_private_urls,
        url_timeout_s=args.url_timeout_s, realtime_max_sessions=args.realtime_max_sessions,
        realtime_max_session_s=args.realtime_max_session_s, realtime_idle_timeout_s=args.realtime_idle_timeout_s,
        realtime_send_timeout_s=args.realtime_send_timeout_s, realtime_send_queue=args.realtime_send_queue,
        max_context_tokens=args.max_context_tokens, aligner=args.aligner, low_confidence=args.low_confidence,
    )  # fmt: skip
    try:
        config.check()
    except ValueError as err:
        raise UserError(str(err)) from None
    if args.aligner:  # a path that is not an aligner: said now, not after the model has loaded
        from medasr.model.aligner import require_aligner, resolve_aligner

        require_aligner(resolve_aligner(args.aligner))
    if not args.api_key and args.host not in ("127.0.0.1", "localhost", "::1"):
        print(
            f"medasr serve: warning: listening on {args.host} without --api-key: anyone who can reach it can use it",
            file=sys.stderr,
        )

    failed: list[str] = []
    server: uvicorn.Server | None = None

    def load_failed(message: str) -> None:  # a server that can never answer should not linger
        failed.append(message)
        if server is not None:
            server.should_exit = True

    app = create_app(config, on_load_error=load_failed)
    from medasr.server.timeouts import protocol

    server = uvicorn.Server(uvicorn.Config(
        app, host=args.host, port=args.port, log_level="info" if args.verbose else "warning",
        http=protocol(config.read_timeout_s),  # 408 for request headers that do not arrive in time
        ws_max_size=config.ws_max_message_bytes,  # an oversized append gets an error event, not a dropped socket
    ))  # fmt: skip
    print(f"medasr serve: http://{args.host}:{args.port}/ (model loading; GET /ready says when done)", file=sys.stderr)
    server.run()
    if failed:
        raise UserError(f"the model failed to load: {failed[0]}")
    return 0
