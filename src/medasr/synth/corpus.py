"""The demo model's varied corpus: `medasr.synth.sources` sentences spoken by many voices, with
contexts, room colouring, and clips of silence and noise whose answer is no text.

Voices (training split): espeak-ng's English voices with its voice variants, speeds 120-240 wpm
and pitches 20-80; flite's voices (kal, kal16, awb, rms, slt) at several speaking rates; a third
of the clips near espeak-ng's defaults (en or en-us, the voices the evaluations use). A share of
clips is played through a synthetic room (a short decaying reverberation tail and a random tilt
of the spectrum) and at a lower level. The evaluation splits (`plain`) use only the given voices
at espeak-ng's default speed and pitch, with nothing added.

Contexts (the manifest's `prompt`, the system turn `--context` fills at inference): a hotword
list holding some of the clip's rare words (drugs, made-up drug names) among distractors, or an
unrelated one (a list of other drugs, or a line of prose), so that a model learns to use a
context and never to follow one that does not match the audio.

Non-speech clips (digital silence, white, pink or brown noise, mains hum, clicks, and 0.1-0.3 s
snippets of them) have empty text and language "None": the model's `language None<asr_text>`
answer, which `medasr.model.prompt.parse_answer` turns into empty text.

Every clip's settings come from (seed, split, index) and its file name carries a hash of them, so
a rerun skips the clips already rendered; the manifest is written in order as clips finish.
"""

from __future__ import annotations

import hashlib
import json
import random
import shutil
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from medasr.errors import UserError
from medasr.synth import sentences as synth
from medasr.synth import sources as textsources

# espeak-ng voice variants (`espeak-ng --voices=variant`) that still sound like plain speech.
ESPEAK_VARIANTS = (
    "", "f1", "f2", "f3", "f4", "f5", "m1", "m2", "m3", "m4", "m5", "m6", "m7", "m8", "Alex",
    "Andrea", "Andy", "Annie", "Auntie", "Belinda", "Benjamin", "Caleb", "David", "Ed", "Edward",
    "Gene", "Henrique", "Hugo", "Jacky", "John", "Lee", "Linda", "Marco", "Michael", "Mike",
    "Paul", "Quincy", "Rob", "Robert", "Steph", "Storm", "Zac", "anika", "grandma", "grandpa",
    "klatt", "klatt2", "klatt3", "norbert", "shelby", "travis", "victor",
)
ESPEAK_VOICES = ("en", "en-us", *(v for v in synth.DEFAULT_VOICES if v != "en-us"))
FLITE_VOICES = ("kal", "kal16", "awb", "rms", "slt")
NONSPEECH_KINDS = ("silence", "white", "pink", "brown", "hum", "clicks")

PLAIN_SHARE = 0.33  # training clips near espeak-ng's defaults (en, en-us)
FLITE_SHARE = 0.15
ROOM_SHARE = 0.25
CONTEXT_SHARE = 0.30  # clips with rare words that get a matching hotword list
MADE_UP_CONTEXT_SHARE = 0.7  # ... for sentences with a made-up drug name
UNRELATED_SHARE = 0.12  # clips that get an unrelated context


@dataclass(frozen=True)
class Voice:
    engine: str  # "espeak" or "flite"
    name: str  # espeak-ng voice (with "+variant") or flite voice
    speed: float  # espeak-ng words per minute, or flite duration stretch (1: its default)
    pitch: int = 50  # espeak-ng only
    room: bool = False
    gain_db: float = 0.0


def draw_voice(rng: random.Random) -> Voice:
    """A training voice: near espeak-ng's defaults, any espeak-ng voice and variant, or flite."""
    room = rng.random() < ROOM_SHARE
    gain = -rng.uniform(0, 18) if rng.random() < 0.5 else 0.0
    r = rng.random()
    if r < PLAIN_SHARE:
        return Voice("espeak", rng.choice(("en", "en-us")), rng.randint(160, 190), rng.randint(40, 60), room, gain)
    if r < PLAIN_SHARE + FLITE_SHARE:
        return Voice("flite", rng.choice(FLITE_VOICES), round(rng.uniform(0.8, 1.25), 2), 50, room, gain)
    variant = rng.choice(ESPEAK_VARIANTS)
    name = rng.choice(ESPEAK_VOICES) + (f"+{variant}" if variant else "")
    return Voice("espeak", name, rng.randint(120, 240), rng.randint(20, 80), room, gain)


def _flite() -> str:
    binary = shutil.which("flite")
    if binary is None:
        raise UserError("flite is not installed: apt-get install flite (or train without it)")
    return binary


def render_voice(text: str, path: Path, voice: Voice, seed: int) -> float:
    """Speak `text` with `voice` into a 16 kHz mono WAV at `path`; returns seconds."""
    import soundfile as sf

    from medasr.audio.decode import SAMPLE_RATE, load_audio

    with tempfile.TemporaryDirectory(prefix="medasr-voice-") as tmp:
        raw = Path(tmp) / "raw.wav"
        if voice.engine == "espeak":
            synth.render(text, raw, voice.name, int(voice.speed), voice.pitch)
        else:
            (Path(tmp) / "text.txt").write_text(text, encoding="utf-8")
            proc = subprocess.run([_flite(), "-voice", voice.name, "--setf", f"duration_stretch={voice.speed}",
                                   "-f", str(Path(tmp) / "text.txt"), "-o", str(raw)],
                                  capture_output=True, text=True, check=False)
            if proc.returncode != 0 or not raw.exists():
                raise UserError(f"flite failed for voice {voice.name!r}: {proc.stderr.strip()}")
        samples = load_audio(raw).samples.astype(np.float64)
    rng = np.random.default_rng(seed)
    if voice.room:
        samples = room_colour(samples, rng)
    peak = float(np.max(np.abs(samples))) or 1.0
    samples = samples / max(peak, 1.0) * 10 ** (voice.gain_db / 20)
    _write(path, samples.astype(np.float32), SAMPLE_RATE, sf)
    return len(samples) / SAMPLE_RATE


def _write(path: Path, samples: np.ndarray, rate: int, sf) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    sf.write(partial, np.clip(samples, -1, 1), rate, subtype="PCM_16", format="WAV")
    partial.replace(path)


def room_colour(samples: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A small room: a decaying noise tail (RT60 0.1-0.5 s) mixed under the direct sound, and a
    gentle random tilt of the spectrum (a first-order low or high shelf)."""
    from medasr.audio.decode import SAMPLE_RATE

    rt60 = rng.uniform(0.1, 0.5)
    n = int(rt60 * SAMPLE_RATE)
    t = np.arange(n) / SAMPLE_RATE
    tail = rng.normal(0, 1, n) * np.exp(-6.9 * t / rt60)
    ir = np.zeros(n + 1)
    ir[0] = 1.0
    ir[1:] = tail / np.sqrt(np.sum(tail**2)) * 10 ** (rng.uniform(-18, -6) / 20)
    wet = np.convolve(samples, ir)[: len(samples) + n // 4]
    a = rng.uniform(0.2, 0.8)  # one-pole low-pass y[i] = a*y[i-1] + (1-a)*x[i], applied in frequency
    omega = 2 * np.pi * np.fft.rfftfreq(len(wet))
    low = np.fft.irfft(np.fft.rfft(wet) * (1 - a) / (1 - a * np.exp(-1j * omega)), len(wet))
    mix = rng.uniform(-0.5, 0.5)  # < 0: brighter (less low-pass), > 0: duller
    coloured = wet + mix * (low - wet)
    return coloured * (np.sqrt(np.mean(samples**2)) / (np.sqrt(np.mean(coloured**2)) or 1.0))


def nonspeech(kind: str, seconds: float, rng: np.random.Generator) -> np.ndarray:
    """`seconds` of a non-speech signal at 16 kHz (float32): digital silence, coloured noise,
    mains hum or sparse clicks, at levels from the faint to the clearly audible."""
    from medasr.audio.decode import SAMPLE_RATE

    n = max(1, int(seconds * SAMPLE_RATE))
    if kind == "silence":
        return np.zeros(n, np.float32)
    level = 10 ** (rng.uniform(-85, -30) / 20)
    if kind in ("white", "pink", "brown"):
        spectrum = np.fft.rfft(rng.normal(0, 1, n))
        f = np.maximum(np.fft.rfftfreq(n, 1 / SAMPLE_RATE), 1.0)
        spectrum *= {"white": 1.0, "pink": f**-0.5, "brown": f**-1.0}[kind]
        x = np.fft.irfft(spectrum, n)
    elif kind == "hum":
        t = np.arange(n) / SAMPLE_RATE
        base = rng.choice((50.0, 60.0))
        x = sum(rng.uniform(0.2, 1) / h * np.sin(2 * np.pi * base * h * t + rng.uniform(0, 6.3)) for h in (1, 2, 3, 5))
        x = x + rng.normal(0, 0.05, n)
    elif kind == "clicks":
        x = rng.normal(0, 0.01, n)
        for at in rng.integers(0, n, max(1, int(seconds * rng.uniform(0.5, 6)))):
            width = int(rng.integers(5, 80))
            x[at : at + width] += rng.choice((-1.0, 1.0)) * np.exp(-np.arange(min(width, n - at)) / 10)
    else:
        raise ValueError(f"unknown non-speech kind {kind!r}; known: {', '.join(NONSPEECH_KINDS)}")
    rms = np.sqrt(np.mean(x**2)) or 1.0
    return np.clip(x / rms * level, -1, 1).astype(np.float32)


def nonspeech_seconds(rng: random.Random) -> float:
    """A quarter tiny (0.1-0.3 s), the rest 0.3-30 s, log-uniform."""
    if rng.random() < 0.25:
        return round(rng.uniform(0.1, 0.3), 3)
    return round(float(np.exp(rng.uniform(np.log(0.3), np.log(30)))), 3)


def _context(s: textsources.Sentence, rng: random.Random) -> str:
    made_up = any(t not in textsources._drug_names() for t in s.terms)
    r = rng.random()
    if s.terms and r < (MADE_UP_CONTEXT_SHARE if made_up else CONTEXT_SHARE):
        return textsources.hotword_context(s.terms, rng)
    if rng.random() < UNRELATED_SHARE:
        return textsources.unrelated_context(rng)
    return ""


def synthesize_corpus(out_dir: str | Path, n: int, seed: int = 0, split: str = "train", *,
                      nonspeech_share: float = 0.06, plain_voices: tuple[str, ...] | None = None,
                      clinical_share: float = textsources.CLINICAL_SHARE, jobs: int = 1,
                      progress: bool = True) -> Path:
    """Render `n` sentences of `textsources.corpus(split)` (+ non-speech clips) to
    out_dir/audio/*.wav and out_dir/manifest.jsonl.

    plain_voices: evaluation mode: every sentence spoken by each of these espeak-ng voices at
    the default speed and pitch; no contexts, rooms or non-speech clips.
    """
    import soundfile as sf
    from tqdm import tqdm

    out_dir = Path(out_dir)
    (out_dir / "audio").mkdir(parents=True, exist_ok=True)
    if shutil.which("espeak-ng") is None:
        raise UserError("espeak-ng is not installed: apt-get install espeak-ng")
    sentences = textsources.corpus(n, seed, split, clinical_share)
    plan: list[dict] = []
    for i, s in enumerate(sentences):
        rng = random.Random(f"{seed}:{split}:{i}")
        if plain_voices:
            for v in plain_voices:
                plan.append({"i": i, "sentence": s, "voice": Voice("espeak", v, synth.ESPEAK_SPEED, synth.ESPEAK_PITCH), "prompt": ""})
            continue
        plan.append({"i": i, "sentence": s, "voice": draw_voice(rng), "prompt": _context(s, rng)})
    if not plain_voices:
        for k in range(round(nonspeech_share * n)):
            rng = random.Random(f"{seed}:{split}:nonspeech:{k}")
            kind, seconds = rng.choice(NONSPEECH_KINDS), nonspeech_seconds(rng)
            prompt = textsources.unrelated_context(rng) if rng.random() < 0.2 else (
                textsources.hotword_context((), rng, related=False) if rng.random() < 0.15 else "")
            plan.insert(int(rng.random() * len(plan)), {"i": k, "kind": kind, "seconds": seconds, "prompt": prompt})
    if any(p.get("voice") and p["voice"].engine == "flite" for p in plan):
        _flite()

    def path_of(item: dict) -> Path:
        if "kind" in item:
            key = json.dumps([item["kind"], item["seconds"], seed, item["i"]])
            stem = f"{split}-nonspeech-{item['i']:06d}"
        else:
            key = json.dumps([item["sentence"].text, asdict(item["voice"])])
            stem = f"{split}-{item['i']:06d}"
        return out_dir / "audio" / f"{stem}-{hashlib.sha1(key.encode()).hexdigest()[:10]}.wav"

    def make(item: dict) -> float:
        from medasr.audio.decode import SAMPLE_RATE

        path = path_of(item)
        if path.exists():
            return sf.info(str(path)).duration
        if "kind" in item:
            samples = nonspeech(item["kind"], item["seconds"], np.random.default_rng((seed, item["i"], 7)))
            _write(path, samples, SAMPLE_RATE, sf)
            return len(samples) / SAMPLE_RATE
        return render_voice(item["sentence"].text, path, item["voice"], seed * 1_000_003 + item["i"])

    config = {"n": n, "seed": seed, "split": split, "nonspeech_share": nonspeech_share,
              "plain_voices": list(plain_voices or ()), "clinical_share": clinical_share,
              "heldout_lexfiles": list(textsources.HELDOUT_LEXFILES),
              "heldout_templates": list(textsources.HELDOUT_TEMPLATES)}
    (out_dir / "synth_config.json").write_text(json.dumps(config, indent=2) + "\n")
    manifest = out_dir / "manifest.jsonl"
    with manifest.open("w", encoding="utf-8") as fh, ThreadPoolExecutor(max(1, jobs)) as pool, \
            tqdm(total=len(plan), desc=f"corpus {split}", unit="clip", file=sys.stderr,
                 disable=not progress) as bar:
        for item, duration in zip(plan, pool.map(make, plan)):
            path = path_of(item)
            if "kind" in item:
                line = {"id": path.stem, "audio": f"audio/{path.name}", "text": "", "language": "None",
                        "duration": round(duration, 3), "dataset": "nonspeech", "kind": item["kind"]}
            else:
                s, v = item["sentence"], item["voice"]
                line = {"id": path.stem, "audio": f"audio/{path.name}", "text": s.text,
                        "duration": round(duration, 3), "dataset": s.source, "doc": s.doc,
                        "terms": list(s.terms), "voice": f"{v.engine}:{v.name}", "speed": v.speed,
                        "pitch": v.pitch, "room": v.room}
            if item["prompt"]:
                line["prompt"] = item["prompt"]
            fh.write(json.dumps(line, ensure_ascii=False) + "\n")
            fh.flush()
            bar.update(1)
    return manifest
