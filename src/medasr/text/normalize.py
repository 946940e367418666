"""Text normalisers: the written form references are stored in, and the normalisers WER/CER are
computed under. Every scoring normaliser has two forms: `words` (for WER) and `chars` (for CER),
because the seed's protocol treats white space differently in the two (see `basic_chars`).

- `written_form`: the seed's `score_written_form`, applied to references at load time only.
- `basic`: the seed's "normalized" protocol (jiwer ToLowerCase + RemovePunctuation + collapse
  spaces + strip), also the MultiMed / Open ASR Leaderboard style lowercase-and-no-punctuation.
- `english`: Whisper's EnglishTextNormalizer (the Open ASR Leaderboard's normaliser family).
- `none`: compare the texts exactly as given.
"""

from __future__ import annotations

import functools
import logging
import sys
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass

from medasr.errors import UserError

log = logging.getLogger(__name__)

__all__ = [
    "written_form",
    "basic",
    "basic_chars",
    "english",
    "english_spelling_source",
    "none",
    "Normalizer",
    "NORMALIZERS",
    "get_normalizer",
    "UnknownNormalizerError",
]

# ---------------------------------------------------------------------------------------------
# Written form (references only)

_SENTENCE_END = ".!?…"
_CLOSERS = ")]}\"'»”’›"


def written_form(text: str | None) -> str:
    """The seed's written-form reference normalisation (idempotent):
    strip; a trailing run of `.`/`…` becomes one `.`; a lowercase first character is upper-cased;
    a `.` is appended unless the text ends in `.!?…` or a closing bracket/quote."""
    if text is None:
        return ""
    text = text.strip()
    if not text:
        return ""
    body = text.rstrip(".…")
    if len(body) < len(text):
        text = body + "."
    if text[0].islower():
        # Only the first character, which is why "eGFR" becomes "EGFR" (the seed does the same).
        text = text[0].upper() + text[1:]
    if text[-1] not in _SENTENCE_END and text[-1] not in _CLOSERS:
        text += "."
    return text


# ---------------------------------------------------------------------------------------------
# basic: the seed's normalized protocol


@functools.lru_cache(1)
def _punctuation_table() -> dict[int, None]:
    # jiwer's RemovePunctuation definition: every code point whose Unicode category starts with
    # "P", deleted (not replaced by a space), so "COVID-19" -> "covid19" and "+", "$" stay.
    # str.translate does in one pass what jiwer does with ~800 str.replace calls.
    return {
        i: None for i in range(sys.maxunicode + 1) if unicodedata.category(chr(i)).startswith("P")
    }


def basic(text: str) -> str:
    """Lowercase, delete punctuation, collapse white space, strip (WER form).

    jiwer collapses only runs of 2+ white-space characters and then splits on " ", so a single
    tab or no-break space between two words would glue them into one "word"; here every run of
    white space becomes one space. The two agree on any text whose only white space is " "."""
    return " ".join(text.lower().translate(_punctuation_table()).split())


def basic_chars(text: str) -> str:
    """Lowercase, delete punctuation, strip (CER form). Inner spaces are NOT collapsed: the
    seed's CER transform counts every space as a character, e.g. "a - b" -> "a  b"."""
    return text.lower().translate(_punctuation_table()).strip()


# ---------------------------------------------------------------------------------------------
# english: Whisper's normaliser as shipped by transformers

# Hub repositories whose `normalizer.json` is Whisper's British -> American spelling mapping.
# Looked up in the local Hugging Face cache only: scoring must never need the network.
_SPELLING_REPOS = (
    "openai/whisper-large-v3",
    "openai/whisper-large-v3-turbo",
    "openai/whisper-large-v2",
    "openai/whisper-medium",
    "openai/whisper-small",
    "openai/whisper-base",
    "openai/whisper-tiny",
)


def _spelling_mapping() -> tuple[dict[str, str], str]:
    """Whisper's spelling mapping and where it came from. transformers does not ship it (the
    Whisper tokenizer downloads it as `normalizer.json`), so: the `openai-whisper` package if
    installed, else a cached hub copy, else an empty mapping (British spellings then count as
    errors against American ones; everything else in the normaliser is unchanged)."""
    import json

    try:
        from importlib.resources import files

        path = files("whisper") / "normalizers" / "english.json"
        return json.loads(path.read_text(encoding="utf-8")), "openai-whisper english.json"
    except (ImportError, OSError, ValueError):
        pass
    try:
        from huggingface_hub import try_to_load_from_cache

        for repo in _SPELLING_REPOS:
            found = try_to_load_from_cache(repo, "normalizer.json")
            if isinstance(found, str):
                with open(found, encoding="utf-8") as f:
                    return json.load(f), f"{repo} normalizer.json (local cache)"
    except (ImportError, OSError, ValueError):
        pass
    return {}, "none available offline: British spellings are not mapped to American"


@functools.lru_cache(1)
def _english_normalizer() -> tuple[Callable[[str], str], str]:
    from transformers.models.whisper.english_normalizer import EnglishTextNormalizer

    mapping, source = _spelling_mapping()
    if not mapping:
        log.info("english normaliser: no spelling mapping (%s)", source)
    return EnglishTextNormalizer(mapping), source


@functools.lru_cache(maxsize=1 << 16)
def english(text: str) -> str:
    """Whisper's English normaliser: lowercase, drop [..] <..> (..) spans and fillers, expand
    contractions and titles ("dr" -> "doctor"), spoken numbers to digits, symbols to spaces
    ("COVID-19" -> "covid 19"). Stripped, so the same string serves WER and CER.
    Cached: it costs ~1 ms a text, and hypotheses often equal their references."""
    return _english_normalizer()[0](text).strip()


def english_spelling_source() -> str:
    """Where the english normaliser's British -> American spelling mapping came from."""
    return _english_normalizer()[1]


def none(text: str) -> str:
    """Identity: score exactly what was given (words are split on white space)."""
    return text


# ---------------------------------------------------------------------------------------------
# Registry


class UnknownNormalizerError(UserError, ValueError):
    """A normaliser name that is not in `NORMALIZERS`."""


@dataclass(frozen=True)
class Normalizer:
    """A named scoring normaliser: `words` prepares text for WER, `chars` for CER."""

    name: str
    words: Callable[[str], str]
    chars: Callable[[str], str]
    description: str

    def __call__(self, text: str) -> str:
        return self.words(text)


NORMALIZERS: dict[str, Normalizer] = {
    n.name: n
    for n in (
        Normalizer("basic", basic, basic_chars, "lowercase, punctuation deleted (jiwer), spaces collapsed"),
        Normalizer("english", english, english, "Whisper EnglishTextNormalizer (transformers)"),
        Normalizer("none", none, none, "texts compared as given"),
    )
}


def get_normalizer(name: str | Normalizer) -> Normalizer:
    """The normaliser called `name` ("basic", "english", "none"); a Normalizer passes through."""
    if isinstance(name, Normalizer):
        return name
    try:
        return NORMALIZERS[name]
    except KeyError:
        known = ", ".join(NORMALIZERS)
        raise UnknownNormalizerError(f"unknown normaliser {name!r}: choose one of {known}") from None
