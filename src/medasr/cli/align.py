"""`medasr align`: word times for a given transcript of an audio file (forced alignment)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from medasr.model.aligner import DEFAULT_ALIGNER

NAME = "align"
HELP = "word timestamps for a transcript of an audio file (forced alignment)"
DESCRIPTION = f"""Align a transcript you already have (a human one, or another system's) to its
audio with a Qwen3-ForcedAligner, as WhisperX's align does: every word gets its start and end.

The aligner sees the official input (words split as qwen-asr's processor splits them, each cleaned
to letters, digits and apostrophes); audio longer than 30 s is cut into pieces of speech and the
words shared out among them, so any length works. Unless --raw, each word gets back the
punctuation and casing it has in the transcript, and words the aligner gave no duration are
widened within their neighbours' bounds.

--format json (default) prints [{{"word", "start", "end"}}, ...] in seconds; with --raw exactly the
aligner's words and times. srt and vtt print readable subtitles timed by the words (at most 2 lines
of 42 characters and 7 s per cue, cut at sentence and clause ends and at pauses).

The default aligner is {DEFAULT_ALIGNER} (hub id; original or transformers format, or a local
directory); 'demo' is the small offline aligner bundled with medasr (espeak-ng speech only).

examples:
  medasr align --aligner demo note.wav "Give metoprolol 25 milligrams twice daily."
  medasr align --aligner demo --text-file note.txt --format srt note.wav > note.srt
  medasr align --raw note.wav --text-file note.txt
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("audio", help="audio file (wav, flac, mp3, ogg/opus, m4a, webm) or http(s) URL")
    p.add_argument("text", nargs="?", default=None, help="the transcript (or use --text-file)")
    p.add_argument("--text-file", default=None, help="read the transcript from this UTF-8 text file")
    g = p.add_argument_group("aligner")
    g.add_argument(
        "--aligner",
        default=DEFAULT_ALIGNER,
        help=f"hub id, local directory (qwen-asr or transformers format) or 'demo' (default: {DEFAULT_ALIGNER})",
    )
    g.add_argument("--device", default="auto", help="auto (CUDA if available), cpu, cuda or cuda:N (default: auto)")
    g.add_argument(
        "--dtype", default="auto", choices=["auto", "float32", "bfloat16", "float16"],
        help="auto: bfloat16 on GPU, float32 on CPU (default: auto)",
    )
    g.add_argument("--language", default="English", help="language of the transcript, name or code (default: English)")
    g.add_argument(
        "--vad", default="silero", choices=["silero", "energy", "none"],
        help="speech detection for the check that there is speech and, beyond 30 s, the pieces (default: silero)",
    )
    o = p.add_argument_group("output")
    o.add_argument("--raw", action="store_true", help="the aligner's own words and times: no punctuation put back, no widening")
    o.add_argument("--format", default="json", choices=["json", "srt", "vtt"], help="json (default), srt or vtt")


def _transcript(args: argparse.Namespace) -> str:
    from medasr.errors import DataError

    if (args.text is None) == (args.text_file is None):
        raise DataError("give the transcript either as the TEXT argument or with --text-file, not both or neither")
    if args.text_file is not None:
        path = Path(args.text_file)
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise DataError(f"--text-file {path} does not exist") from None
        except (OSError, UnicodeDecodeError) as err:
            raise DataError(f"--text-file {path} cannot be read as UTF-8 text: {err}") from None
    else:
        text = args.text
    if not text.strip():
        raise DataError("the transcript is empty: there are no words to align")
    return text


def run(args: argparse.Namespace) -> int:
    from medasr.audio.decode import load_audio
    from medasr.audio.vad import VadOptions
    from medasr.errors import DataError
    from medasr.model.aligner import load_aligner
    from medasr.output.formats import srt, vtt
    from medasr.pipeline.align import align
    from medasr.records import Segment

    text = _transcript(args)
    audio = load_audio(args.audio)
    aligner = load_aligner(args.aligner, device=args.device, dtype=args.dtype)
    words = align(aligner, audio.samples, text, language=args.language, raw=args.raw, vad=VadOptions(method=args.vad))
    if not words:
        raise DataError("the transcript has no words to align (only punctuation or symbols)")
    if args.format == "json":
        json.dump([{"word": w.word, "start": w.start, "end": w.end} for w in words], sys.stdout, ensure_ascii=False)
        sys.stdout.write("\n")
    else:
        segments = [Segment(0.0, audio.duration, " ".join(w.word for w in words))]
        sys.stdout.write((srt if args.format == "srt" else vtt)(segments, words))
    return 0
