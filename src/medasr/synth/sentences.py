"""Synthetic medical speech: template sentences over the lexicon, spoken by espeak-ng.

Good for tests, demos and augmentation (not a substitute for real clinical speech).

Text convention (what a model trained on these clips learns to write):
- Written form: sentence case, ending with a period (`medasr.text.normalize.written_form` is applied).
- Quantities are digits: doses ("2.5 milligrams"), ages ("a 67-year-old woman"), vital signs
  ("140 over 90", "38.5 degrees Celsius", "94 percent"), lab values, durations ("for 3 days"),
  intervals ("every 6 hours"). Qwen3-ASR writes spoken quantities as digits, and evaluation
  normalisers map number words to digits anyway.
- Units are spelled out ("milligrams", not "mg"): that is what the speaker says.
- Frequency adverbs stay words ("once daily", "twice daily", "three times daily").

Train and held-out sentences never overlap: a sentence belongs to the held-out split when a
hash of its text falls in the held-out bucket (`split_of`), whatever seed produced it.
"""

from __future__ import annotations

import hashlib
import json
import random
import shutil
import string
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from medasr.errors import UserError
from medasr.text.lexicon import LEXICON
from medasr.text.normalize import written_form

HELDOUT_PERCENT = 10
MAX_MISSES = 20_000
SPLITS = ("train", "heldout")

# espeak-ng's own English voices (the mbrola ones need separate voice data), as listed by
# `espeak-ng --voices=en`; each clip also draws a voice variant for female and other timbres.
DEFAULT_VOICES = (
    "en-us", "en-gb", "en-gb-scotland", "en-gb-x-rp", "en-gb-x-gbclan", "en-gb-x-gbcwmd",
    "en-029", "en-us-nyc",
)
VARIANTS = ("", "+f2", "+f3", "+f4", "+m3", "+m5")
SPEEDS = (140, 185)  # words per minute (espeak-ng -s; its default is 175)
PITCHES = (35, 65)  # 0-99 (espeak-ng -p; its default is 50)
# How the demo model is checked: espeak-ng's default English voices at its default speed and pitch.
PLAIN_VOICES = ("en", "en-us")
ESPEAK_SPEED = 175  # espeak-ng's default words per minute
ESPEAK_PITCH = 50  # espeak-ng's default pitch

IMAGING = ("CT", "MRI", "ultrasound", "x-ray")
SPECIALTIES = (
    "cardiology", "neurology", "gastroenterology", "nephrology", "pulmonology", "oncology",
    "rheumatology", "endocrinology", "dermatology", "urology", "orthopedics", "hematology",
)
# Plausible amounts per unit; never exactly 1, so every unit stays plural.
DOSES = {
    "milligrams": (2.5, 5, 10, 12.5, 20, 25, 40, 50, 75, 80, 100, 125, 150, 200, 250, 300, 400,
                   500, 600, 750, 800, 1000),
    "micrograms": (25, 50, 75, 88, 100, 112, 125, 150, 200),
    "grams": (1.5, 2, 4.5),
    "units": (4, 6, 8, 10, 12, 16, 20, 24, 30, 5000),
    "milliliters": (5, 10, 15, 20, 250, 500, 1000),
    "millimoles": (10, 20, 40),
    "milliequivalents": (10, 20, 40),
}
LAB_VALUES = (0.8, 1.2, 2.4, 3.1, 4.2, 5.8, 6.5, 7.9, 9.4, 11, 13.2, 28, 45, 130, 152, 250, 410)

TEMPLATES = (
    "The patient was started on {dose} of {drug} {freq}.",
    "Please give {dose} of {drug} {route} {freq}.",
    "Continue {drug} {dose} {freq}.",
    "{drug} was increased to {dose} {freq}.",
    "{drug} was reduced to {dose} because of {symptom}.",
    "Take {drug} {dose} {route} {freq} for {days}.",
    "Start {drug} {dose} {freq} and stop {drug2}.",
    "Give a loading dose of {dose} of {drug} {route}, then {dose2} {freq}.",
    "{drug} {dose} {route} was given in the emergency department.",
    "Discontinue {drug} because of {symptom}.",
    "The patient is allergic to {drug} and {drug2}.",
    "She has a history of {condition} and {condition2}.",
    "He has a history of {condition} treated with {drug}.",
    "He was admitted with {condition} and treated with {drug} {route}.",
    "{imaging} of the {anatomy} showed {finding}.",
    "{imaging} of the {anatomy} showed no evidence of {condition}.",
    "The {anatomy} appears normal on {imaging}.",
    "The patient is {age} {sex} presenting with {symptom} and {symptom2}.",
    "{age_cap} {sex} with {condition} presents with {symptom}.",
    "She reports {days} of {symptom} and {symptom2}.",
    "{symptom} began {days} ago.",
    "Denies {symptom}, {symptom2} or {symptom3}.",
    "No {symptom} or {symptom2} since the last visit.",
    "Blood pressure is {bp} and heart rate is {hr}.",
    "Temperature was {temp} with an oxygen saturation of {sat}.",
    "Respiratory rate is {rr} and oxygen saturation is {sat} on room air.",
    "Her {lab} was {value} this morning.",
    "His {lab} is elevated at {value}, suggesting {condition}.",
    "We will repeat the {lab} and {lab2} in the morning.",
    "The plan is to continue {drug} and monitor {lab} weekly.",
    "The patient underwent {procedure} without complications.",
    "She is scheduled for {procedure} next week.",
    "Follow up in {weeks} with a repeat {imaging} of the {anatomy}.",
    "Findings are consistent with {condition}.",
    "The differential diagnosis includes {condition} and {condition2}.",
    "Examination of the {anatomy} was unremarkable.",
    "There is tenderness over the {anatomy}.",
    "Pain in the {anatomy} has improved since starting {drug}.",
    "Refer to {specialty} for evaluation of {condition}.",
    "Assessment is {condition}, stable on {drug} {dose} {freq}.",
    "Weight today is {weight} and {drug} was adjusted accordingly.",
)

# Template slot -> lexicon category (a trailing digit, as in {drug2}, asks for another term).
_CATEGORY_SLOTS = {
    "drug": "drugs", "condition": "conditions", "symptom": "symptoms", "anatomy": "anatomy",
    "procedure": "procedures", "finding": "findings", "lab": "labs", "freq": "frequencies",
    "route": "routes",
}


def split_of(text: str) -> str:
    """'heldout' for about HELDOUT_PERCENT % of sentences, chosen by a hash of the text."""
    bucket = int(hashlib.sha256(text.encode("utf-8")).hexdigest()[:8], 16) % 100
    return "heldout" if bucket < HELDOUT_PERCENT else "train"


def _num(x: float) -> str:
    return f"{x:g}"


def _article(number: int) -> str:
    # "an" before eight, eleven, eighteen and the eighties.
    return "an" if number in (8, 11, 18) or 80 <= number <= 89 else "a"


def _fill(template: str, rng: random.Random, terms: Mapping[str, tuple[str, ...]],
          extra: Mapping[str, Callable[[random.Random], str]] | None = None) -> str:
    """`template` with every slot filled; `extra` maps further slot kinds to fillers
    (`medasr.synth.sources` adds dates, names, pseudo-drugs and more)."""
    slots = [field for _, field, _, _ in string.Formatter().parse(template) if field]
    values: dict[str, str] = {}
    used: dict[str, set[str]] = {}
    for slot in slots:
        kind = slot.rstrip("0123456789")
        if kind in _CATEGORY_SLOTS:
            pool = terms[_CATEGORY_SLOTS[kind]]
            taken = used.setdefault(kind, set())
            choice = rng.choice(pool)
            while choice in taken and len(taken) < len(pool):
                choice = rng.choice(pool)
            taken.add(choice)
            values[slot] = choice
        elif kind == "dose":
            unit = rng.choice(tuple(DOSES))
            values[slot] = f"{_num(rng.choice(DOSES[unit]))} {unit}"
        elif kind in ("age", "age_cap"):
            years = rng.randint(18, 95)
            article = _article(years)
            values[slot] = f"{article.capitalize() if kind == 'age_cap' else article} {years}-year-old"
        elif kind == "sex":
            values[slot] = rng.choice(("man", "woman"))
        elif kind == "days":
            amount = rng.randint(2, 14)
            values[slot] = f"{amount} {rng.choice(('days', 'weeks', 'months'))}"
        elif kind == "weeks":
            values[slot] = f"{rng.randint(2, 12)} weeks"
        elif kind == "bp":
            values[slot] = f"{rng.randrange(90, 200, 2)} over {rng.randrange(50, 110, 2)}"
        elif kind == "hr":
            values[slot] = f"{rng.randint(45, 140)} beats per minute"
        elif kind == "rr":
            values[slot] = f"{rng.randint(10, 32)} breaths per minute"
        elif kind == "temp":
            values[slot] = f"{_num(rng.randint(355, 402) / 10)} degrees Celsius"
        elif kind == "sat":
            values[slot] = f"{rng.randint(84, 100)} percent"
        elif kind == "value":
            values[slot] = _num(rng.choice(LAB_VALUES))
        elif kind == "weight":
            values[slot] = f"{rng.randint(40, 140)} kilograms"
        elif kind == "imaging":
            values[slot] = rng.choice(IMAGING)
        elif kind == "specialty":
            values[slot] = rng.choice(SPECIALTIES)
        elif extra and kind in extra:
            values[slot] = extra[kind](rng)
        else:
            raise KeyError(f"template slot {{{slot}}} has no filler")
    return written_form(template.format(**values))


def _terms(lexicon: Mapping[str, Iterable[str]] | None) -> dict[str, tuple[str, ...]]:
    source = LEXICON if lexicon is None else lexicon
    # Sorted so a seed gives the same sentences whatever the set order of a merged lexicon.
    terms = {cat: tuple(sorted(source.get(cat, ()))) for cat in _CATEGORY_SLOTS.values()}
    empty = [cat for cat, words in terms.items() if not words]
    if empty:
        raise ValueError(f"lexicon has no terms in categories: {', '.join(empty)}")
    return terms


def sentences(n: int, seed: int = 0, split: str = "train",
              lexicon: Mapping[str, Iterable[str]] | None = None) -> list[str]:
    """`n` distinct sentences of `split` ("train", "heldout" or "all"), the same for a given seed."""
    if split not in (*SPLITS, "all"):
        raise ValueError(f"split must be one of train, heldout, all; got {split!r}")
    return list(_generate(n, seed, split, _terms(lexicon)))


def _generate(n: int, seed: int, split: str, terms) -> Iterator[str]:
    rng = random.Random(seed)
    seen: set[str] = set()
    misses = 0
    while len(seen) < n:
        text = _fill(rng.choice(TEMPLATES), rng, terms)
        if text in seen or (split != "all" and split_of(text) != split):
            misses += 1
            # So many draws in a row without a new sentence: the templates are used up.
            if misses > MAX_MISSES:
                raise ValueError(f"could only make {len(seen)} distinct {split} sentences, not {n}")
            continue
        misses = 0
        seen.add(text)
        yield text


# ---- speech ---------------------------------------------------------------------------------

def _espeak() -> str:
    binary = shutil.which("espeak-ng")
    if binary is None:
        raise UserError("espeak-ng is not installed: install it (apt-get install espeak-ng) "
                        "to render synthetic speech")
    return binary


def available_voices(language: str = "en") -> list[str]:
    """espeak-ng's own voices for `language` (mbrola voices left out: they need extra data)."""
    out = subprocess.run([_espeak(), f"--voices={language}"], capture_output=True, text=True,
                         check=True).stdout
    voices = []
    for line in out.splitlines()[1:]:
        fields = line.split()
        if (len(fields) >= 5 and fields[1] != "variant" and not fields[4].startswith("mb/")
                and fields[1] not in voices):
            voices.append(fields[1])
    return voices


def check_voice(voice: str) -> None:
    """Raise UserError unless espeak-ng can speak with `voice` (checked once, before a long run)."""
    proc = subprocess.run([_espeak(), "-v", voice, "-q", "a"], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise UserError(f"espeak-ng has no voice {voice!r}; English voices here: "
                        f"{', '.join(available_voices('en'))}")


def render(text: str, path: str | Path, voice: str = "en-us", speed: int = 160, pitch: int = 50,
           noise_db: float | None = None, gain_db: float = 0.0, seed: int | None = None) -> float:
    """Speak `text` with espeak-ng into a 16 kHz mono 16-bit WAV at `path`; returns seconds.

    noise_db: signal-to-noise ratio in dB of added white noise (lower is noisier; None: clean).
    gain_db: gain applied last; the result is clipped to [-1, 1]. `seed` fixes the noise.
    """
    import soundfile as sf

    from medasr.audio.decode import SAMPLE_RATE, load_audio

    if not text.strip():
        raise ValueError("render: empty text")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="medasr-synth-") as tmp:
        raw = Path(tmp) / "espeak.wav"
        # Text goes through stdin so that a sentence starting with "-" is never an option.
        proc = subprocess.run(
            [_espeak(), "-v", voice, "-s", str(int(speed)), "-p", str(int(pitch)), "-w", str(raw),
             "--stdin"],
            input=text, capture_output=True, text=True, check=False,
        )
        if proc.returncode != 0 or not raw.exists():
            raise UserError(f"espeak-ng failed for voice {voice!r}: {proc.stderr.strip()} "
                            "(see `espeak-ng --voices=en` for the voices installed)")
        samples = load_audio(raw).samples.astype(np.float64)  # resampled to 16 kHz mono
    if noise_db is not None:
        rng = np.random.default_rng(seed)
        power = float(np.mean(samples**2)) or 1e-10
        samples = samples + rng.normal(0.0, np.sqrt(power / 10 ** (noise_db / 10)), samples.shape)
    samples = np.clip(samples * 10 ** (gain_db / 20), -1.0, 1.0).astype(np.float32)
    # Write to a side file and rename, so an interrupted run never leaves a half clip behind.
    partial = path.with_name(path.name + ".partial")
    sf.write(partial, samples, SAMPLE_RATE, subtype="PCM_16", format="WAV")
    partial.replace(path)
    return len(samples) / SAMPLE_RATE


def spoken_in_turn(
    texts: Iterable[str], workdir: str | Path, rng: np.random.Generator,
    pause_s: tuple[float, float] = (0.8, 2.5), voice: str = "en-us",
) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """`texts` spoken one after another (espeak-ng at its default speed and pitch), each followed by
    a pause drawn from `pause_s` with `rng`: the 16 kHz signal, digitally silent between texts,
    and each text's (start, end) sample span. A synthetic dictation or consultation whose
    sentence boundaries are known; the clips are written to `workdir`."""
    from medasr.audio.decode import SAMPLE_RATE, load_audio

    parts, spans, pos = [], [], 0
    for i, text in enumerate(texts):
        render(text, Path(workdir) / f"{i}.wav", voice=voice, speed=175, pitch=50)
        clip = load_audio(Path(workdir) / f"{i}.wav").samples
        spans.append((pos, pos + len(clip)))
        pause = np.zeros(int(rng.uniform(*pause_s) * SAMPLE_RATE), np.float32)
        parts += [clip, pause]
        pos += len(clip) + len(pause)
    return np.concatenate(parts), spans


def synthesize(out_dir: str | Path, n: int, seed: int = 0, voices: Iterable[str] | None = None,
               split: str = "train", *, noise_db: float | None = None, gain_db: float = 0.0,
               speeds: tuple[int, int] = SPEEDS, pitches: tuple[int, int] = PITCHES,
               lexicon: Mapping[str, Iterable[str]] | None = None, jobs: int = 1,
               progress: bool = True) -> Path:
    """Render `n` sentences of `split` into out_dir/audio/*.wav; returns out_dir/manifest.jsonl.

    Each clip's voice, variant, speed and pitch come from (seed, split, index), and its file
    name carries a hash of all of them, so a rerun skips clips already rendered and never
    reuses a clip made with other settings.
    """
    import soundfile as sf
    from tqdm import tqdm

    if split not in SPLITS:
        raise ValueError(f"split must be train or heldout, got {split!r}")
    voices = tuple(voices or DEFAULT_VOICES)
    for voice in voices:
        check_voice(voice)
    out_dir = Path(out_dir)
    (out_dir / "audio").mkdir(parents=True, exist_ok=True)
    texts = sentences(n, seed, split, lexicon)

    plan = []
    for i, text in enumerate(texts):
        rng = random.Random(f"{seed}:{split}:{i}")
        voice = rng.choice(voices)
        if "+" not in voice:
            voice += rng.choice(VARIANTS)
        speed, pitch = rng.randint(*speeds), rng.randint(*pitches)
        key = json.dumps([text, voice, speed, pitch, noise_db, gain_db])
        digest = hashlib.sha1(key.encode("utf-8")).hexdigest()[:10]
        plan.append((i, text, voice, speed, pitch, out_dir / "audio" / f"{split}-{i:06d}-{digest}.wav"))

    def make(item) -> float:
        i, text, voice, speed, pitch, path = item
        if path.exists():
            return sf.info(str(path)).duration
        return render(text, path, voice, speed, pitch, noise_db, gain_db, seed=seed * 1_000_003 + i)

    config = {"n": n, "seed": seed, "split": split, "voices": list(voices), "variants": VARIANTS,
              "speeds": speeds, "pitches": pitches, "noise_db": noise_db, "gain_db": gain_db,
              "heldout_percent": HELDOUT_PERCENT}
    (out_dir / "synth_config.json").write_text(json.dumps(config, indent=2) + "\n")
    manifest = out_dir / "manifest.jsonl"
    # Lines are written as clips finish, in order, so an interrupted run leaves a usable manifest.
    with manifest.open("w", encoding="utf-8") as fh, ThreadPoolExecutor(max(1, jobs)) as pool, \
            tqdm(total=n, desc=f"synth {split}", unit="clip", file=sys.stderr,
                 disable=not progress) as bar:
        for item, duration in zip(plan, pool.map(make, plan)):
            i, text, voice, speed, pitch, path = item
            line = {"id": f"synth-{split}-{i:06d}", "audio": f"audio/{path.name}", "text": text,
                    "duration": round(duration, 3), "dataset": "synth", "voice": voice, "speed": speed,
                    "pitch": pitch}
            fh.write(json.dumps(line, ensure_ascii=False) + "\n")
            fh.flush()
            bar.update(1)
    return manifest
