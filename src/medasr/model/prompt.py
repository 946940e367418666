"""The Qwen3-ASR prompt and the parsing of its answer, exactly as the official package does.

Inference and training both build prompts here, so the model is asked at inference exactly
what it learned.
"""

from __future__ import annotations

import re

IM_START = "<|im_start|>"
IM_END = "<|im_end|>"
AUDIO_START = "<|audio_start|>"
AUDIO_END = "<|audio_end|>"
AUDIO_PAD = "<|audio_pad|>"
ASR_TEXT = "<asr_text>"

# Canonical language names the model was trained with (`language <Name><asr_text>`).
LANGUAGES = {
    "ar": "Arabic", "yue": "Cantonese", "zh": "Chinese", "cs": "Czech", "da": "Danish",
    "nl": "Dutch", "en": "English", "fil": "Filipino", "fi": "Finnish", "fr": "French",
    "de": "German", "el": "Greek", "hi": "Hindi", "hu": "Hungarian", "id": "Indonesian",
    "it": "Italian", "ja": "Japanese", "ko": "Korean", "mk": "Macedonian", "ms": "Malay",
    "fa": "Persian", "pl": "Polish", "pt": "Portuguese", "ro": "Romanian", "ru": "Russian",
    "es": "Spanish", "sv": "Swedish", "th": "Thai", "tr": "Turkish", "vi": "Vietnamese",
}  # fmt: skip
_BY_NAME = {name.lower(): name for name in LANGUAGES.values()}


def normalize_language(language: str | None) -> str | None:
    """'English', 'english' or 'en' -> 'English'; None or 'auto' -> None (the model detects it)."""
    if language is None or language.strip().lower() in ("", "auto", "none"):
        return None
    key = language.strip().lower()
    if key in LANGUAGES:
        return LANGUAGES[key]
    if key in _BY_NAME:
        return _BY_NAME[key]
    raise ValueError(
        f"unsupported language {language!r}: use 'auto' or one of {', '.join(sorted(_BY_NAME.values()))}"
    )


def prompt_text(context: str | None = None, language: str | None = "English", n_audio_tokens: int = 1) -> str:
    """The official prompt: system turn (context, may be empty), user audio, assistant turn.

    With a forced language the assistant turn is prefilled with `language X<asr_text>` so the
    model writes the transcript only.
    """
    audio = AUDIO_START + AUDIO_PAD * n_audio_tokens + AUDIO_END
    text = (
        f"{IM_START}system\n{context or ''}{IM_END}\n"
        f"{IM_START}user\n{audio}{IM_END}\n"
        f"{IM_START}assistant\n"
    )
    if language:
        text += answer_prefix(language)
    return text


def answer_prefix(language: str) -> str:
    return f"language {language}{ASR_TEXT}"


def audio_token_count(n_mel_frames: int) -> int:
    """Audio tokens for a clip of n mel frames: 13 per full 1 s chunk + the tail after 3 stride-2 convs."""
    full, rest = divmod(n_mel_frames, 100)
    tail = rest
    for _ in range(3):
        tail = (tail - 1) // 2 + 1 if tail > 0 else 0
    return 13 * full + tail


def fix_repetitions(text: str, threshold: int = 20) -> str:
    """Collapse a character repeated more than `threshold` times, then a 1-20 character pattern
    repeated `threshold`+ times, to one copy (the official clean-up, same order)."""
    text = re.sub(rf"(.)\1{{{threshold},}}", r"\1", text, flags=re.DOTALL)
    return _fix_pattern_repeats(text, threshold)


def _fix_pattern_repeats(s: str, threshold: int, max_len: int = 20) -> str:
    # Scans left to right like the official code: at the first position where a pattern repeats
    # `threshold` times in a row, the shortest such pattern is kept once, its further copies are
    # dropped, and the rest of the string is scanned the same way.
    n = len(s)
    if n < threshold * 2:
        return s
    out: list[str] = []
    i = 0
    while i <= n - threshold * 2:
        for k in range(1, max_len + 1):
            if i + k * threshold > n:
                break
            pattern = s[i : i + k]
            if all(s[i + r * k : i + (r + 1) * k] == pattern for r in range(1, threshold)):
                end = i + threshold * k
                while end + k <= n and s[end : end + k] == pattern:
                    end += k
                out.append(pattern)
                out.append(_fix_pattern_repeats(s[end:], threshold, max_len))
                return "".join(out)
        out.append(s[i])
        i += 1
    out.append(s[i:])
    return "".join(out)


def parse_answer(raw: str, forced_language: str | None) -> tuple[str, str]:
    """Raw decoded answer -> (language, text), as qwen-asr's parse_asr_output.

    With a forced language the answer is the transcript itself. Otherwise it reads
    `language X<asr_text>TEXT`; `language None` means no speech (empty text, no language).
    """
    s = (raw or "").strip()
    if not s:
        return "", ""
    s = fix_repetitions(s)
    if forced_language:
        return forced_language, s
    if ASR_TEXT not in s:
        return "", s.strip()
    meta, text = s.split(ASR_TEXT, 1)
    if "language none" in meta.lower():
        return "", text.strip()
    language = ""
    for line in meta.splitlines():
        line = line.strip()
        if not line:
            continue
        if line.lower().startswith("language "):
            value = line[len("language ") :].strip()
            if value:
                try:
                    language = normalize_language(value) or ""
                except ValueError:
                    language = value
        break
    return language, text.strip()
