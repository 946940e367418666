"""LibriSpeech: `SUBSET/speaker/chapter/speaker-chapter-utt.flac` with one
`speaker-chapter.trans.txt` per chapter (`UTTERANCE-ID TRANSCRIPT`, upper case, no punctuation)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from medasr.errors import DataError
from medasr.records import Utterance


def read_librispeech(root: str | Path, split: str | None = None) -> Iterator[Utterance]:
    """Utterances under `root`: a subset folder (`test-clean`), or the `LibriSpeech` folder with
    `split` naming the subset. Transcripts are kept as published (upper case)."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"LibriSpeech folder {root} does not exist")
    base = root
    if split and (root / split).is_dir():
        base = root / split
    elif split:
        # Speaker folders are numbers; anything else here is a subset the caller must choose.
        subsets = sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.isdigit())
        if subsets:
            raise DataError(f"{root} has no LibriSpeech subset {split!r}; choose one of: {', '.join(subsets)}")
    transcripts = sorted(base.rglob("*.trans.txt"))
    if not transcripts:
        raise DataError(f"no LibriSpeech transcripts (*.trans.txt) under {base}")
    return _read(transcripts)


def _read(transcripts: list[Path]) -> Iterator[Utterance]:
    import soundfile as sf

    for trans in transcripts:
        with trans.open(encoding="utf-8") as fh:
            for number, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                utt_id, _, text = line.strip().partition(" ")
                if not text:
                    raise DataError(f"{trans}:{number}: expected `UTTERANCE-ID TRANSCRIPT`")
                audio = trans.parent / f"{utt_id}.flac"
                if not audio.is_file():
                    raise DataError(f"{trans}:{number}: audio file {audio} does not exist")
                try:
                    duration = sf.info(str(audio)).duration
                except Exception:  # header unreadable: leave it to the audio loader to report
                    duration = None
                yield Utterance(id=utt_id, audio=str(audio), text=text.strip(), duration=duration,
                                dataset="librispeech")
