#!/usr/bin/env python
"""Regenerate tests/fixtures/parity: the official qwen-asr package's answers on a tiny checkpoint.

medasr must reproduce the official implementation (qwen-asr 0.0.6, transformers 4.57.6) token for
token. That package cannot live in medasr's environment (it pins transformers==4.57.6), so this
script runs in two environments:

  build     (main env)      a tiny ORIGINAL-format checkpoint (medasr.model.checkpoint.save_original)
                            -> tests/fixtures/parity/model/, the test clips -> audio/, build.json
  official  (qwen-asr venv) load that checkpoint with qwen_asr.Qwen3ASRModel, record prompts,
                            prompt ids, prefill logits, generated ids and texts -> expected.json
  check     (main env)      load the checkpoint with medasr.model.checkpoint.load (transformers 5.x),
                            re-run the prefill on the official prompt ids and compare (prints a
                            report; writes nothing into the fixture)
  all       (main env)      build, then official in a subprocess with --venv-python, then check

Commands (from the repository root):

  # once: the official package in its own venv, outside the repo (the commands live in that
  # script; benchmarks/bench_peers.py uses the same venv)
  scripts/peer_venv.sh                 # creates /tmp/venv-qwenasr if missing, prints its python

  # everything
  python scripts/make_parity_fixture.py --step all --venv-python /tmp/venv-qwenasr/bin/python
  # or step by step
  python scripts/make_parity_fixture.py --step build
  /tmp/venv-qwenasr/bin/python scripts/make_parity_fixture.py --step official
  python scripts/make_parity_fixture.py --step check

Needs espeak-ng and ffmpeg on PATH for `build`, and tests/fixtures/audio/jfk.flac (--jfk).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
FIXTURE = ROOT / "tests" / "fixtures" / "parity"
# Full official features and waveforms are too big for the repo; `check` reads them from here.
SCRATCH = Path(tempfile.gettempdir()) / "medasr-parity-scratch"

# ---------------------------------------------------------------------------- fixed inputs
SEED = 0
VOCAB_SIZE = 400
# Chosen by trying 0.05-1.2 (seed 0): below ~0.15 every input gives the same few tokens; from
# ~0.75 all 16 greedy answers differ. A random model almost never picks <|im_end|> (at most 1 of 16
# answers stopped for any init_std), so its (tied) embedding row is scaled by EOS_ROW_SCALE: then
# 11 of 16 answers stop, after 2 to 23 tokens, and the others run to MAX_NEW_TOKENS.
INIT_STD = 0.75
EOS_ROW_SCALE = 1.5
MAX_NEW_TOKENS = 24
CONTEXT = "Hotwords: metoprolol, atorvastatin"
LANGUAGES = ["English", None]  # forced, auto

TOKENIZER_TEXTS = [
    "The patient was given metoprolol twenty five milligrams twice daily.",
    "Start atorvastatin forty milligrams at night and recheck the lipid panel in six weeks.",
    "Blood pressure is one hundred forty over ninety, heart rate seventy two.",
    "No acute distress. Lungs clear to auscultation bilaterally.",
    "History of type two diabetes mellitus, hypertension and hyperlipidemia.",
    "Chest x-ray shows no consolidation, effusion or pneumothorax.",
    "Continue lisinopril ten milligrams and metformin five hundred milligrams.",
    "The echocardiogram shows an ejection fraction of fifty five percent.",
    "Patient denies chest pain, shortness of breath, nausea or vomiting.",
    "Follow up in the cardiology clinic in three months.",
    "Assessment: atrial fibrillation with rapid ventricular response.",
    "Plan: anticoagulation with apixaban five milligrams twice a day.",
    "And so, my fellow Americans: ask not what your country can do for you.",
]

# (file name, how it is made). Two espeak sentences at 16 kHz of different lengths, a real
# 44.1 kHz stereo slice, and an mp3 (22.05 kHz, so it is resampled too).
ESPEAK = {
    "short_16k.wav": "Give metoprolol now.",  # ~1.5 s
    "long_16k.wav": "Start atorvastatin forty milligrams at night.",  # ~2.8 s
}
JFK_SLICE = (0.30, 2.80)  # seconds of jfk.flac: "And so, my fellow Americans"
CLIPS = ["short_16k.wav", "long_16k.wav", "jfk_44k_stereo.flac", "long_22k.mp3"]

# Raw answers for qwen_asr.parse_asr_output (with and without a forced language): tags, no speech,
# casing, whitespace and the repetition clean-up (a char run > 20, a 1-20 char pattern 20+ times).
PARSE_RAWS = [
    "language English<asr_text>The patient takes metoprolol.",
    "language english<asr_text>  lower-case language, padded text  ",
    "language German<asr_text>Hallo",
    "language None<asr_text>",
    "language None<asr_text>noise words",
    "<asr_text>text without a language",
    "language English\n<asr_text>after a new line",
    "no tag at all",
    "",
    "   ",
    "language English<asr_text>" + "a" * 20 + " twenty, " + "b" * 21 + " twenty-one",
    "language English<asr_text>so " + "la" * 19 + " nineteen then " + "ha" * 20 + " twenty",
    "language English<asr_text>" + "metoprolol " * 25 + "end",
    "language English<asr_text>first<asr_text>second",
]


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def sig(x: float, digits: int = 6) -> float:
    """Round to `digits` significant digits (fp32 has ~7): a small JSON; compare with ~1e-4 tolerance."""
    return float(f"{float(x):.{digits}g}")


def tool_version(cmd: list[str]) -> str:
    try:
        return subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.splitlines()[0].strip()
    except (OSError, subprocess.CalledProcessError, IndexError) as err:  # informative only
        return f"unavailable ({err})"


# ---------------------------------------------------------------------------- step: build
def step_build(args) -> None:
    import soundfile as sf
    import tokenizers
    import torch
    import transformers

    from medasr.model.build import (
        build_model,
        make_config,
        make_processor,
        train_tokenizer,
    )
    from medasr.model.checkpoint import save_original

    model_dir = FIXTURE / "model"
    audio_dir = FIXTURE / "audio"
    for d in (model_dir, audio_dir):
        if d.exists():
            shutil.rmtree(d)
        d.mkdir(parents=True)

    tok = train_tokenizer(TOKENIZER_TEXTS, vocab_size=VOCAB_SIZE)
    config = make_config(tok, "tiny")
    model = build_model(config, seed=SEED, init_std=args.init_std)
    with torch.no_grad():  # tied: the lm_head row of <|im_end|> scales with it
        model.get_input_embeddings().weight[tok.convert_tokens_to_ids("<|im_end|>")] *= EOS_ROW_SCALE
    save_original(model, make_processor(tok), model_dir)
    patched = compat_patch(model_dir)

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for name, text in ESPEAK.items():
            raw = tmp / (name + ".22k.wav")  # espeak-ng writes 22.05 kHz mono s16
            subprocess.run(["espeak-ng", "-v", "en-us", "-w", str(raw), text], check=True)
            _ffmpeg(["-i", str(raw), "-ar", "16000", "-ac", "1", "-c:a", "pcm_s16le", str(audio_dir / name)])
            if name == "long_16k.wav":
                # From the 22.05 kHz original: the mp3 then needs resampling as well as decoding.
                _ffmpeg(["-i", str(raw), "-c:a", "libmp3lame", "-b:a", "32k", str(audio_dir / "long_22k.mp3")])
        jfk, rate = sf.read(args.jfk, dtype="float32", always_2d=True)
        start, end = (int(t * rate) for t in JFK_SLICE)
        # 16-bit keeps the flac small; the official loader sees it the same way medasr does.
        sf.write(audio_dir / "jfk_44k_stereo.flac", jfk[start:end], rate, subtype="PCM_16", format="FLAC")

    build = {
        "seed": SEED,
        "vocab_size": VOCAB_SIZE,
        "init_std": args.init_std,
        "eos_row_scale": EOS_ROW_SCALE,
        "size": "tiny",
        "tokenizer_texts": TOKENIZER_TEXTS,
        "clips": {
            name: {"sha256": sha256(audio_dir / name), "bytes": (audio_dir / name).stat().st_size} for name in CLIPS
        },
        "clip_sources": {
            **{n: f"espeak-ng -v en-us {t!r} -> ffmpeg -ar 16000 pcm_s16le" for n, t in ESPEAK.items()},
            "jfk_44k_stereo.flac": f"jfk.flac[{JFK_SLICE[0]}s:{JFK_SLICE[1]}s], 44.1 kHz stereo, PCM_16 flac",
            "long_22k.mp3": "the 22.05 kHz espeak-ng output of long_16k.wav -> ffmpeg libmp3lame 32k",
        },
        "model_sha256": sha256(model_dir / "model.safetensors"),
        "patched_after_save_original": patched,
        "versions": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "tokenizers": tokenizers.__version__,
            "soundfile": sf.__version__,
            "libsndfile": sf.__libsndfile_version__,
            "espeak-ng": tool_version(["espeak-ng", "--version"]),
            "ffmpeg": tool_version(["ffmpeg", "-version"]),
        },
    }
    (FIXTURE / "build.json").write_text(json.dumps(build, indent=1) + "\n", encoding="utf-8")
    print(f"built {model_dir} and {len(CLIPS)} clips in {audio_dir}")


def compat_patch(model_dir: Path) -> list[str]:
    """Make what save_original wrote loadable by qwen-asr 0.0.6 (transformers 4.57); a no-op once
    checkpoint.save_original writes this itself. Returns what was changed.

    transformers 5 saves `extra_special_tokens` as a LIST (its new name for the additional special
    tokens). transformers 4.57 reads `extra_special_tokens` as a DICT of named tokens and calls
    .keys() on it (AttributeError, surfacing as a misleading protobuf ImportError), and it gives the
    tokenizer its `audio_token`/`audio_bos_token`/`audio_eos_token` attributes -- which
    Qwen3ASRProcessor.__init__ reads -- only from that dict. The layout below loads in both.
    """
    path = model_dir / "tokenizer_config.json"
    cfg = json.loads(path.read_text(encoding="utf-8"))
    changes = []
    extra = cfg.get("extra_special_tokens")
    if isinstance(extra, list):
        cfg["additional_special_tokens"] = extra
        changes.append("tokenizer_config.json: extra_special_tokens list -> additional_special_tokens")
        extra = None
    named = {"audio_token": "<|audio_pad|>", "audio_bos_token": "<|audio_start|>", "audio_eos_token": "<|audio_end|>"}
    if not isinstance(extra, dict) or any(extra.get(k) != v for k, v in named.items()):
        cfg["extra_special_tokens"] = {**(extra or {}), **named}
        changes.append("tokenizer_config.json: extra_special_tokens = {audio_token, audio_bos_token, audio_eos_token}")
    if changes:
        path.write_text(json.dumps(cfg, indent=2) + "\n", encoding="utf-8")
    return changes


def _ffmpeg(argv: list[str]) -> None:
    # bitexact + no metadata: the bytes do not carry the encoder's version string.
    cmd = ["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-y"] + argv[:-1]
    cmd += ["-map_metadata", "-1", "-fflags", "+bitexact", "-flags:a", "+bitexact", argv[-1]]
    subprocess.run(cmd, check=True)


# ---------------------------------------------------------------------------- step: official
def step_official(args) -> None:
    from importlib.metadata import PackageNotFoundError, version

    import librosa
    import qwen_asr
    import soundfile as sf
    import torch
    import transformers
    from qwen_asr.inference.utils import normalize_audio_input

    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    model_dir = FIXTURE / "model"
    asr = qwen_asr.Qwen3ASRModel.from_pretrained(
        str(model_dir), dtype=torch.float32, device_map="cpu", max_new_tokens=MAX_NEW_TOKENS
    )
    # Every tensor of the checkpoint must arrive unchanged (4.57 only warns on missing/unexpected keys).
    from safetensors.torch import load_file

    state = asr.model.state_dict()
    stored = load_file(str(model_dir / "model.safetensors"))
    assert set(state) == set(stored), set(state) ^ set(stored)
    assert all(torch.equal(state[k], stored[k]) for k in stored), "weights changed on load"
    tok = asr.processor.tokenizer
    # qwen-asr's generate() hard-codes eos_token_id=[151645, 151643] (<|im_end|>, <|endoftext|> of
    # the real vocabulary). In the tiny vocabulary those ids do not exist, so the model would never
    # stop. Passing the same two tokens' ids in this vocabulary reproduces the official behaviour.
    eos = [tok.convert_tokens_to_ids("<|im_end|>"), tok.convert_tokens_to_ids("<|endoftext|>")]
    captured: list[dict] = []
    real_generate = asr.model.generate

    def generate(**kwargs):
        kwargs.setdefault("eos_token_id", eos)
        out = real_generate(**kwargs, output_logits=True)
        captured.append({"inputs": kwargs, "out": out})
        return out

    asr.model.generate = generate
    raw_outputs: list[list[str]] = []
    real_infer = asr._infer_asr

    def infer(contexts, wavs, languages):
        raws = real_infer(contexts, wavs, languages)
        raw_outputs.append(list(raws))
        return raws

    asr._infer_asr = infer

    SCRATCH.mkdir(parents=True, exist_ok=True)
    scratch: dict[str, np.ndarray] = {}
    clips = {}
    cases = []
    for name in CLIPS:
        path = FIXTURE / "audio" / name
        wav = normalize_audio_input(str(path))  # exactly what transcribe() feeds the model
        info = sf.info(str(path))
        scratch[f"wav/{name}"] = wav
        clips[name] = {
            "file_rate": int(info.samplerate),
            "file_channels": int(info.channels),
            "file_frames": int(info.frames),
            "loaded_samples": int(wav.shape[0]),
            "loaded_sum": sig(np.sum(wav, dtype=np.float64)),
            "loaded_abs_sum": sig(np.sum(np.abs(wav), dtype=np.float64)),
            "loaded_peak": sig(np.max(np.abs(wav))),
            # 16 evenly spaced samples: a cheap check of alignment and scale.
            "loaded_probe": [sig(v) for v in wav[np.linspace(0, len(wav) - 1, 16).astype(int)]],
        }
        for context in ("", CONTEXT):
            for language in LANGUAGES:
                captured.clear()
                raw_outputs.clear()
                result = asr.transcribe(audio=str(path), context=context, language=language)[0]
                (call,) = captured
                inputs, out = call["inputs"], call["out"]
                ids = inputs["input_ids"][0]
                feats = inputs["input_features"][0]
                n_frames = int(inputs["feature_attention_mask"][0].sum())
                key = f"feat/{name}"
                if key not in scratch:
                    scratch[key] = feats[:, :n_frames].numpy()
                    clips[name]["feature_frames"] = n_frames
                    f = feats[:, :n_frames].double()
                    clips[name]["feature_sum"] = sig(f.sum())
                    clips[name]["feature_abs_sum"] = sig(f.abs().sum())
                gen = out.sequences[0, ids.shape[0] :].tolist()
                prefill = out.logits[0][0].float()
                tag = f"{name}|{'ctx' if context else 'noctx'}|{language or 'auto'}"
                scratch[f"logits/{tag}"] = prefill.numpy()
                cases.append(
                    {
                        "clip": name,
                        "context": context,
                        "language": language,
                        "prompt": asr._build_text_prompt(context=context, force_language=language),
                        "prompt_ids": ids.tolist(),
                        "audio_tokens": int((ids == asr.model.thinker.config.audio_token_id).sum()),
                        "prefill_logits": [sig(v) for v in prefill.tolist()],
                        "prefill_argmax": int(prefill.argmax()),
                        "generated_ids": gen,
                        "stopped": bool(gen and gen[-1] in eos),
                        "raw": raw_outputs[0][0],
                        "language_out": result.language,
                        "text": result.text,
                    }
                )
                print(f"{tag:45s} stop={cases[-1]['stopped']!s:5} {result.language!r:10} {result.text[:60]!r}")

    # One batched call (left padding, features padded to the longest clip).
    captured.clear()
    raw_outputs.clear()
    batch = asr.transcribe(audio=[str(FIXTURE / "audio" / n) for n in CLIPS], context="", language="English")
    (call,) = captured
    prompt_len = call["inputs"]["input_ids"].shape[1]
    batched = {
        "clips": CLIPS,
        "context": "",
        "language": "English",
        "generated_ids": [_strip(row[prompt_len:].tolist(), eos) for row in call["out"].sequences],
        "raw": raw_outputs[0],
        "texts": [r.text for r in batch],
    }
    np.savez(SCRATCH / "official.npz", **scratch)

    # The random model never writes "language X<asr_text>", so the answer parser gets its own cases.
    parse_cases = []
    for raw in PARSE_RAWS:
        for user_language in (None, "English"):
            lang, text = qwen_asr.parse_asr_output(raw, user_language=user_language)
            parse_cases.append({"raw": raw, "user_language": user_language, "language": lang, "text": text})

    def v(name: str) -> str:
        try:
            return version(name)
        except PackageNotFoundError:
            return "unknown"

    expected = {
        "about": "Answers of the official qwen-asr package on model/ (see README.md).",
        "generation": {
            "max_new_tokens": MAX_NEW_TOKENS,
            "greedy": True,
            "eos_token_ids": eos,
            "note": "qwen-asr passes eos_token_id=[151645, 151643]; here the same tokens' ids of the tiny vocabulary",
        },
        "model_sha256": sha256(model_dir / "model.safetensors"),
        "special_ids": {
            t: tok.convert_tokens_to_ids(t)
            for t in (
                "<|im_start|>",
                "<|im_end|>",
                "<|endoftext|>",
                "<|audio_start|>",
                "<|audio_end|>",
                "<|audio_pad|>",
                "<asr_text>",
            )
        },
        "versions": {
            "python": platform.python_version(),
            "qwen-asr": v("qwen-asr"),
            "transformers": transformers.__version__,
            "torch": torch.__version__,
            "accelerate": v("accelerate"),
            "tokenizers": v("tokenizers"),
            "numpy": np.__version__,
            "librosa": librosa.__version__,
            "soxr": v("soxr"),
            "soundfile": sf.__version__,
            "libsndfile": sf.__libsndfile_version__,
        },
        "clips": clips,
        "cases": cases,
        "batched": batched,
        "parse_cases": parse_cases,
    }
    (FIXTURE / "expected.json").write_text(_dump(expected), encoding="utf-8")
    print(f"wrote {FIXTURE / 'expected.json'} and {SCRATCH / 'official.npz'}")


def _strip(ids: list[int], eos: list[int]) -> list[int]:
    """Generated ids up to and including the first eos (later rows of a batch are eos-padded)."""
    for i, t in enumerate(ids):
        if t in eos:
            return ids[: i + 1]
    return ids


def _dump(obj) -> str:
    """JSON with one case field per line and number lists on one line: small, diffable."""
    text = json.dumps(obj, indent=1, ensure_ascii=False)
    # Collapse the number lists that indent=1 spreads one per line.
    return (
        re.sub(
            r"\[\s*([-0-9.eE,\s]+?)\s*\]",
            lambda m: "[" + ",".join(x.strip() for x in m.group(1).split(",")) + "]",
            text,
        )
        + "\n"
    )


# ---------------------------------------------------------------------------- step: check
def step_check(args) -> None:
    import torch
    from transformers import Qwen3ASRFeatureExtractor

    from medasr.audio.decode import load_audio
    from medasr.model.checkpoint import load

    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    expected = json.loads((FIXTURE / "expected.json").read_text(encoding="utf-8"))
    scratch = np.load(SCRATCH / "official.npz") if (SCRATCH / "official.npz").exists() else None
    loaded = load(str(FIXTURE / "model"), device="cpu", dtype="float32")
    model = loaded.model
    tok = loaded.processor.tokenizer
    fe = Qwen3ASRFeatureExtractor()
    print(f"format={loaded.format}  audio_token_id={model.config.audio_token_id}")

    if scratch is None:
        raise SystemExit(f"{SCRATCH / 'official.npz'} is missing: run --step official first")
    feats: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    worst_feat = 0.0
    for name, info in expected["clips"].items():
        wav = scratch[f"wav/{name}"]
        # medasr's own loader against the official one (informative; medasr's tests own this).
        mine = load_audio(str(FIXTURE / "audio" / name)).samples
        d = float(np.abs(mine - wav).max()) if mine.shape == wav.shape else float("nan")
        print(f"loader   {name:22s} samples medasr={mine.shape[0]} official={wav.shape[0]}  max|diff|={d:.3g}")
        out = fe(wav, sampling_rate=16000, padding="longest", return_attention_mask=True, return_tensors="pt")
        mask = out["attention_mask"]
        n = int(mask.sum())
        ours = out["input_features"][0, :, :n].numpy()
        theirs = scratch[f"feat/{name}"]
        diff = float(np.abs(ours - theirs).max()) if ours.shape == theirs.shape else float("inf")
        worst_feat = max(worst_feat, diff)
        print(f"features {name:22s} frames ours={n} official={info['feature_frames']}  max|diff|={diff:.3g}")
        feats[name] = (out["input_features"], mask)

    worst_logit = 0.0
    worst_logit_official_feats = 0.0
    bad_gen = 0
    for case in expected["cases"]:
        ids = torch.tensor([case["prompt_ids"]])
        text_ids = tok(case["prompt"].replace("<|audio_pad|>", "<|audio_pad|>" * case["audio_tokens"]))["input_ids"]
        same_ids = text_ids == case["prompt_ids"]
        want = torch.tensor(case["prefill_logits"], dtype=torch.float64)
        with torch.no_grad():
            f, m = feats[case["clip"]]
            got = model(
                input_ids=ids, attention_mask=torch.ones_like(ids), input_features=f, input_features_mask=m
            ).logits[0, -1]
            # The official features as well, to tell feature and model differences apart.
            # transformers 5 wants the mel axis padded to a multiple of 100 frames (masked).
            of = torch.from_numpy(scratch[f"feat/{case['clip']}"])[None]
            n = of.shape[-1]
            om = torch.zeros(1, -(-n // 100) * 100, dtype=torch.long)
            om[:, :n] = 1
            of = torch.nn.functional.pad(of, (0, om.shape[-1] - n))
            got_of = model(
                input_ids=ids, attention_mask=torch.ones_like(ids), input_features=of, input_features_mask=om
            ).logits[0, -1]
        full = torch.from_numpy(
            scratch[f"logits/{case['clip']}|{'ctx' if case['context'] else 'noctx'}|{case['language'] or 'auto'}"]
        ).double()
        d = float((got.double() - full).abs().max())
        d_of = float((got_of.double() - full).abs().max())
        d_json = float((got.double() - want).abs().max())
        worst_logit = max(worst_logit, d)
        # Greedy decoding in transformers 5 from the same inputs, with the same eos ids.
        with torch.no_grad():
            seq = model.generate(
                input_ids=ids,
                attention_mask=torch.ones_like(ids),
                input_features=f,
                input_features_mask=m,
                max_new_tokens=expected["generation"]["max_new_tokens"],
                eos_token_id=expected["generation"]["eos_token_ids"],
                do_sample=False,
            )
        gen = seq[0, ids.shape[1] :].tolist()
        gen_ok = gen == case["generated_ids"]
        bad_gen += not gen_ok
        worst_logit_official_feats = max(worst_logit_official_feats, d_of)
        print(
            f"{case['clip']:22s} ctx={bool(case['context'])!s:5} lang={case['language']!s:8} ids_match={same_ids!s:5} "
            f"gen_match={gen_ok!s:5} argmax={int(got.argmax())}/{case['prefill_argmax']}  max|dlogit|={d:.3g} (official feats {d_of:.3g}, vs json {d_json:.3g})"
        )
    print(f"\ngenerated ids differing from the official ones: {bad_gen} of {len(expected['cases'])}")
    print(
        f"worst feature diff {worst_feat:.3g}; worst logit diff {worst_logit:.3g} "
        f"(with official features {worst_logit_official_feats:.3g}); logit scale {max(abs(x) for c in expected['cases'] for x in c['prefill_logits']):.3g}"
    )


# ---------------------------------------------------------------------------- main
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--step", choices=["build", "official", "check", "all"], default="all")
    parser.add_argument(
        "--venv-python", default="/tmp/venv-qwenasr/bin/python", help="python of the qwen-asr venv (for --step all)"
    )
    parser.add_argument("--jfk", default=str(ROOT / "tests" / "fixtures" / "audio" / "jfk.flac"))
    parser.add_argument("--init-std", type=float, default=INIT_STD)
    args = parser.parse_args()
    if args.step == "build":
        step_build(args)
    elif args.step == "official":
        step_official(args)
    elif args.step == "check":
        step_check(args)
    else:
        step_build(args)
        subprocess.run([args.venv_python, str(Path(__file__).resolve()), "--step", "official"], check=True)
        step_check(args)


if __name__ == "__main__":
    main()
