"""`medasr transcribe`: audio files, directories or URLs -> text, JSON, JSONL or subtitles."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from medasr.cli._common import (
    add_decoding_arguments,
    add_model_arguments,
    add_ray_arguments,
    add_word_arguments,
    check_word_arguments,
    ray_options,
    set_threads,
)

NAME = "transcribe"
HELP = "transcribe audio files, directories or URLs"
DESCRIPTION = """Transcribe audio with Qwen3-ASR.

Inputs are audio files (wav, flac, mp3, ogg/opus, m4a/aac, webm), directories (expanded to the
audio files inside) or http(s) URLs. Text goes to stdout, one line per input in input order,
unless --output-dir is given. A bad input is reported on stderr; the others are still
transcribed and the command exits with status 1 at the end.

Long recordings: an input longer than --max-piece-s (30 s) is cut into pieces of speech by
--vad (silero: speech detection; energy: loudness, no model; none: keep everything, cut at
quiet points). The pieces are transcribed in batches and merged into one transcript with
timestamped segments; silence gives no text. Local files are streamed, so hours of audio
need little memory. Shorter inputs are transcribed whole, as one segment.

Many files: --ray runs the same pipeline as a Ray Data job (CPU tasks decode and detect speech,
--workers model replicas transcribe, long recordings' pieces spread over them); same outputs
and resuming as without it. A failed input is also recorded in --output-dir/errors.jsonl (one
line per failed attempt; it is retried on a rerun).

Output to stdout: txt is one line per input; json one list; jsonl and verbose_json one JSON
object per line per input; srt and vtt take one input (with several, pass --output-dir to
write one subtitle file per input).

Word timestamps: --timestamps word runs a forced aligner (--aligner, loaded only then) on each
piece's audio and text: json, jsonl and verbose_json gain `words` ({word, start, end,
probability, low_confidence}); srt and vtt cues are timed by the words. A word's probability is
the mean probability of the model's tokens that spell it; below --low-confidence it is marked
`low_confidence: true` for review. An input whose words cannot be had keeps its text, with an
empty word list and a warning.

examples:
  medasr transcribe --model demo consult.wav
  medasr transcribe --model demo --format srt ward-round.mp3 > ward-round.srt
  medasr transcribe --model demo --format vtt --output-dir subs/ recordings/
  medasr transcribe --model ./my-finetune --format jsonl recordings/ > out.jsonl
  medasr transcribe --context "metoprolol, atorvastatin" --format json a.wav b.mp3
  medasr transcribe --model demo --ray --workers 2 --format jsonl --output-dir out/ archive/
  medasr transcribe --model demo --timestamps word --aligner demo --format json consult.wav
"""
STDOUT_SINGLE = ("srt", "vtt")  # documents that cannot be concatenated
JSONL_NAME = "transcripts.jsonl"  # --format jsonl with --output-dir
ERRORS_NAME = "errors.jsonl"  # with --output-dir: one line per failed attempt at an input
CHUNK = 256  # inputs decoded at a time, to bound memory on large directories


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("audio", nargs="+", help="audio files, directories or http(s) URLs")
    add_model_arguments(p)
    add_decoding_arguments(p)
    add_word_arguments(p)
    g = p.add_argument_group("output")
    g.add_argument(
        "--format",
        default="txt",
        choices=["txt", "json", "jsonl", "srt", "vtt", "verbose_json"],
        help="txt: text per line; json: one list of objects; jsonl: one object per line, "
        "written as produced; srt/vtt: readable subtitles, timed by the words with --timestamps word "
        "(one input on stdout); verbose_json: OpenAI's shape with segments (and words), one object per "
        "line (default: txt)",
    )
    g.add_argument(
        "--output-dir",
        default=None,
        help="write one file per input (jsonl: one transcripts.jsonl) instead of stdout; inputs whose "
        "output already exists are skipped, so an interrupted run resumes (inputs are matched by their "
        "resolved path: another spelling of a path is the same input; a line torn by a kill or a full "
        "disk is moved to transcripts.jsonl.torn)",
    )
    g.add_argument("--overwrite", action="store_true", help="with --output-dir, redo inputs already written")
    g = p.add_argument_group("long recordings")
    g.add_argument(
        "--vad",
        default="silero",
        choices=["silero", "energy", "none"],
        help="how inputs longer than --max-piece-s are cut: silero speech detection, energy "
        "(loudness, no model), or none (everything transcribed, cut at quiet points) (default: silero)",
    )
    g.add_argument(
        "--max-piece-s",
        type=float,
        default=30.0,
        help="longest piece sent to the model, in seconds; longer inputs are cut (default: 30, "
        "what Qwen3-ASR is trained on)",
    )
    add_ray_arguments(p)


def run(args: argparse.Namespace) -> int:
    set_threads(args.threads)  # before torch starts its thread pool
    import errno
    import json

    from tqdm import tqdm

    from medasr.audio.decode import expand_inputs
    from medasr.errors import UserError
    from medasr.model.prompt import normalize_language
    from medasr.output.formats import EXTENSIONS, render, to_record
    from medasr.output.recordlog import RecordLog, input_key, unique_inputs, write_atomic
    from medasr.transcribe import load_model

    try:
        normalize_language(args.language)
    except ValueError as err:
        raise UserError(str(err)) from None
    if args.batch_size < 1:
        raise UserError("--batch-size must be at least 1")
    if not args.max_piece_s >= 1.0:
        raise UserError("--max-piece-s must be at least 1 second")
    ray = ray_options(args)
    if ray and args.timestamps == "word":
        raise UserError("--timestamps word is not available with --ray yet: run it without --ray")
    check_word_arguments(args)
    if args.timestamps == "word":  # a path that is not an aligner: said before anything loads
        from medasr.defaults import default_aligner
        from medasr.model.aligner import require_aligner, resolve_aligner

        require_aligner(resolve_aligner(args.aligner or default_aligner(args.model)))
    inputs = expand_inputs(args.audio)
    if not inputs:
        raise UserError("no audio files found in the given inputs")
    if args.format in STDOUT_SINGLE and not args.output_dir and len(inputs) > 1:
        raise UserError(
            f"--format {args.format} writes one subtitle document per input: with {len(inputs)} inputs, "
            "pass --output-dir DIR (one file per input)"
        )

    out_dir = Path(args.output_dir) if args.output_dir else None
    results = None  # the --format jsonl log in --output-dir
    done: set[str] = set()
    if out_dir:
        inputs = unique_inputs(inputs)  # one input spelled twice (a.wav, ./a.wav) is written once
    out_paths = _out_paths(out_dir, inputs, EXTENSIONS[args.format]) if out_dir else {}
    if out_dir:
        out_dir.mkdir(parents=True, exist_ok=True)
        if args.format == "jsonl":
            # keyed by the resolved input: another spelling of a path is the same input
            results = RecordLog(out_dir / JSONL_NAME, _record_key, overwrite=args.overwrite)
            try:
                done = set(results.open())
            except OSError as err:
                raise UserError(f"cannot write {out_dir / JSONL_NAME}: {err.strerror or err}") from None
        elif not args.overwrite:
            done = {input_key(s) for s in inputs if out_paths[s].exists()}
    todo = [s for s in inputs if input_key(s) not in done]
    skipped = len(inputs) - len(todo)
    if skipped:
        print(f"skipping {skipped} input(s) already transcribed in {out_dir}", file=sys.stderr)

    asr = None if ray else load_model(args.model, device=args.device, dtype=args.dtype, batch_size=args.batch_size,
                                      max_context_tokens=args.max_context_tokens, quantize=args.quantize)
    errors = _ErrorLog(out_dir / ERRORS_NAME) if out_dir else None
    if asr is not None and args.timestamps == "word":
        asr.word_timer(args.aligner).load()  # a bad --aligner is an error before any work
    failures = 0
    collected = {}
    bar = tqdm(total=len(todo), unit="file", desc="transcribing", disable=None if len(todo) > 1 else True, file=sys.stderr)

    def emit(index, t, chunk):
        nonlocal failures
        bar.update(1)
        if t.error:
            failures += 1
            tqdm.write(f"medasr transcribe: error: {t.error}", file=sys.stderr)
        for warning in t.warnings:
            tqdm.write(f"medasr transcribe: warning: {t.source}: {warning}", file=sys.stderr)
        source = chunk[index]
        try:
            if errors and t.error:
                errors.append(source, t)
            if results and not t.error:
                results.append({**to_record(t, args.low_confidence), "input": input_key(source)})
            elif out_dir and not t.error:
                write_atomic(out_paths[source], render(t, args.format, args.low_confidence))  # whole or absent, even if killed
            elif not out_dir and args.format == "jsonl":
                sys.stdout.write(render(t, "jsonl", args.low_confidence))
                sys.stdout.flush()
        except OSError as err:
            if err.errno == errno.EPIPE:
                raise
            raise UserError(
                f"cannot write the output for {source}: {err.strerror or err}; free some space and rerun "
                "the same command: what was written is kept and the rest is done"
            ) from None
        collected[source] = t

    try:
        if ray and todo:
            _on_ray(todo, args, ray, lambda i, t: emit(i, t, todo))
        for start in range(0, len(todo), CHUNK) if asr is not None else ():
            chunk = todo[start : start + CHUNK]
            asr.transcribe(
                chunk,
                language=args.language,
                context=args.context,
                batch_size=args.batch_size,
                max_new_tokens=args.max_new_tokens,
                errors="keep",
                on_result=lambda i, t, chunk=chunk: emit(i, t, chunk),
                vad=args.vad,
                max_piece_s=args.max_piece_s,
                timestamps=args.timestamps,
                aligner=args.aligner,
            )
    finally:
        bar.close()
        if results:
            results.close()
        if errors:
            errors.close()

    if not out_dir:
        ordered = [collected[s] for s in todo]
        if args.format == "json":
            print(json.dumps([to_record(t, args.low_confidence) for t in ordered], ensure_ascii=False, indent=2))
        elif args.format != "jsonl":
            for t in ordered:
                if not t.error:
                    sys.stdout.write(render(t, args.format, args.low_confidence))
                elif args.format == "txt":
                    sys.stdout.write("\n")  # keep one line per input
    if failures:
        print(f"medasr transcribe: {failures} of {len(todo)} input(s) failed", file=sys.stderr)
        return 1
    return 0


def _on_ray(todo: list[str], args: argparse.Namespace, options, on_result) -> None:
    """The same transcription as a Ray Data job (medasr.scale): results come back to on_result here."""
    from medasr.model.prompt import normalize_language
    from medasr.scale.cluster import connect
    from medasr.scale.job import Settings, model_ref, transcribe_sources

    with connect(options) as settled:
        settings = Settings(model_ref(args.model), settled.device(args.device), args.dtype, args.batch_size,
                            normalize_language(args.language), args.context, args.max_new_tokens, args.vad, args.max_piece_s,
                            max_context_tokens=args.max_context_tokens, quantize=args.quantize)
        stats = transcribe_sources(todo, settings, settled, on_result)
    print(stats.summary(), file=sys.stderr)


class _ErrorLog:
    """errors.jsonl in --output-dir: each failed attempt at an input, appended as it happens (a
    failed input has no output, so a rerun tries it again and a new line records a new failure)."""

    def __init__(self, path: Path):
        self.path = path
        self.log = None

    def append(self, source: str, t) -> None:
        import time

        from medasr.output.recordlog import RecordLog, input_key

        if self.log is None:  # opened at the first failure: a clean run leaves no file
            self.log = RecordLog(self.path, lambda r: f"{r['input']}\t{r['at']}")
            self.log.open()
        self.log.append({"input": input_key(source), "source": source, "error": t.error, "error_code": t.error_code,
                         "at": time.strftime("%Y-%m-%dT%H:%M:%S%z")})

    def close(self) -> None:
        if self.log is not None:
            self.log.close()


def _record_key(record: dict) -> str:
    """The input a transcripts.jsonl record is for: its resolved `input` (records of older
    versions only have the `source` as typed: resolved from here)."""
    from medasr.output.recordlog import input_key

    return record.get("input") or input_key(record["source"])


def _out_paths(out_dir: Path, sources: list[str], ext: str) -> dict[str, Path]:
    """One output file per input, named after its stem; inputs sharing a stem (a.wav and a.mp3,
    x/a.wav and y/a.wav) get a short hash of their resolved path (or URL) so that none
    overwrites another, and so that another spelling of the same path finds the same file."""
    import hashlib
    from collections import Counter

    from medasr.output.recordlog import input_key

    stems = {s: Path(s.split("?")[0]).stem or "audio" for s in sources}
    clashes = Counter(stems.values())
    out = {}
    for s, stem in stems.items():
        if clashes[stem] > 1:
            stem += "-" + hashlib.sha1(input_key(s).encode()).hexdigest()[:8]
        out[s] = out_dir / f"{stem}.{ext}"
    return out
