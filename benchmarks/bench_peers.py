"""medasr against the official qwen-asr package on the same checkpoint, clips and token counts.

    scripts/peer_venv.sh                       # once: the official package in /tmp/venv-qwenasr
    python benchmarks/bench_peers.py           # --clips 32 --tokens 32 --layers 8 --width 512 --threads 1

One run, one machine, one thread each (--threads). What is compared:
- the official qwen-asr 0.0.6, transformers backend (`Qwen3ASRModel.from_pretrained(...).transcribe`),
  in its own venv with transformers 4.57.6, as a subprocess (benchmarks/_peer_official.py);
- medasr's public API (`medasr.load_model(...).transcribe`) in this environment, so whatever
  engine that API runs is what is measured.

Same weights: one random Qwen3-ASR of the real architecture (--layers decoder and encoder
layers, --width hidden size, the official 151,936-token vocabulary and special-token ids) is
built with medasr.model.build and saved twice from the same tensors, in the ORIGINAL format (what
qwen-asr reads) and the transformers format (what medasr reads); both sides report a digest of
the parameters they loaded, which must agree.

Same token counts: random weights never stop by themselves, but by chance one may emit an end
token. The checkpoint's rows of the (tied) embedding for <|im_end|> and <|endoftext|> are
zeroed, so their logit is exactly 0 while the largest of the other ~152k random logits is
positive: neither side can ever stop early, and both generate exactly --tokens tokens per clip
(max_new_tokens on both sides, no hook in either decode loop). The counts are checked: qwen-asr's
from what its generate returns, medasr's from `hit_token_cap` on every transcript.

Same clips: --clips espeak-ng speech clips with LibriSpeech test-clean's durations
(medasr.bench.workload, log-normal, median 5.8 s) kept below --max-clip-s (20 s, so no clip is cut
by either side's long-audio path), written as 16 kHz WAV files that both sides read.

Three clocks on both sides: end to end (the whole transcribe call: reading the files, features,
prompt, model, decoding, parsing), model (time inside the model's forwards, _clock.ForwardClock,
identical on both sides), and CPU (the process's CPU time over the whole call: with one thread it
is what the work costs, and it moves far less than wall time when other jobs share the cores).
RTFx = audio seconds / seconds. Batch sizes: each side's default
(read from its API's signature) and both at 16 (--batch-sizes). With --repeats R the modes run R
times, alternating which side goes first; the best time of each is reported.

Texts: with the same greedy decoding both sides should write the same text. Where they differ,
the cause is reported per clip: qwen-asr computes log-mel features of a padded batch (the
feature extractor pads the waveforms of a batch to the longest, which changes the STFT of the
shorter clips' tails), while medasr computes each clip's features on its own. A clip that is the
longest of its qwen-asr batch has unpadded features there.
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
DEFAULT_VENV_PYTHON = "/tmp/venv-qwenasr/bin/python"


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog="See the module docstring for the method.")
    ap.add_argument("--clips", type=int, default=32, help="number of clips (default: 32)")
    ap.add_argument("--max-clip-s", type=float, default=20.0, help="longest clip in seconds (default: 20)")
    ap.add_argument("--audio", choices=("speech", "noise"), default="speech", help="espeak-ng speech or white noise (default: speech)")
    ap.add_argument("--tokens", type=int, default=32, help="generated tokens per clip, forced on both sides (default: 32)")
    ap.add_argument("--layers", type=int, default=8, help="decoder and encoder layers (default: 8)")
    ap.add_argument("--width", type=int, default=512, help="decoder and encoder hidden size, a multiple of 64 (default: 512)")
    ap.add_argument("--conv", type=int, default=480, help="encoder convolution channels (default: 480, the published models')")
    ap.add_argument("--shape", choices=("family", "0.6b", "1.7b"), default="family",
                    help="'family': --layers/--width/--conv in the published shape family; '0.6b' or '1.7b': the published "
                    "model's exact dimensions (medasr.model.build.SIZES; --layers/--width/--conv ignored) (default: family)")  # fmt: skip
    ap.add_argument("--seed", type=int, default=0, help="seed of the weights and clips (default: 0)")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads on each side (default: 1)")
    ap.add_argument("--batch-sizes", default="default,16",
                    help="comma-separated: 'default' (each side's own) or a number used by both (default: default,16)")  # fmt: skip
    ap.add_argument("--repeats", type=int, default=1, help="runs of every mode, alternating the order (default: 1)")
    ap.add_argument("--warmup-clips", type=int, default=4, help="clips transcribed before each timed run (default: 4)")
    ap.add_argument("--venv-python", default=DEFAULT_VENV_PYTHON,
                    help=f"python of the qwen-asr venv made by scripts/peer_venv.sh (default: {DEFAULT_VENV_PYTHON})")  # fmt: skip
    ap.add_argument("--work-dir", default=str(ROOT / "runs" / "peers"), help="checkpoints and clips (reused) (default: runs/peers)")
    ap.add_argument("--output", default=None, help="also write the results as JSON here")
    args = ap.parse_args(argv)
    if args.width % 64 or args.width < 128:
        ap.error("--width must be a multiple of 64, at least 128")
    for name in ("clips", "tokens", "layers", "threads", "repeats"):
        if getattr(args, name) < 1:
            ap.error(f"--{name} must be at least 1")
    return args


def log(msg: str) -> None:
    print(f"bench_peers: {msg}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------- inputs


def model_size(layers: int, width: int, conv: int, shape: str = "family"):
    """A Qwen3-ASR of the published shape family: 64-wide heads, 2 query heads per KV head, FFN 3x (LM) / 4x (encoder).

    With shape "0.6b" or "1.7b", the published model's exact dimensions instead (0.6b: encoder 896 x 18 layers, 14 heads,
    FFN 3584, conv 480; LM 1024 x 28 layers, 16 / 8 KV heads of 128, FFN 3072; 0.78 B parameters with the tied embedding).
    """
    from medasr.model.build import SIZES, Size

    if shape != "family":
        return SIZES[shape]

    heads = width // 64
    return Size(enc_d_model=width, enc_layers=layers, enc_heads=heads, enc_ffn=4 * width, enc_conv=conv,
                hidden=width, layers=layers, heads=heads, kv_heads=max(1, heads // 2), head_dim=64, ffn=3 * width)  # fmt: skip


def build_checkpoint(out: Path, layers: int, width: int, conv: int, seed: int, shape: str = "family") -> tuple[Path, Path]:
    """(original dir, transformers dir) holding the same random weights; built once per shape and seed."""
    from medasr.bench.randomweights import forbid_end_tokens, official_tokenizer_stand_in
    from medasr.model.build import build_model, make_config, make_processor
    from medasr.model.checkpoint import save_original, save_transformers

    original, hf = out / "original", out / "transformers"
    if (out / "done").exists():
        return original, hf
    log(f"building a random {shape if shape != 'family' else f'{layers}-layer, {width}-wide'} Qwen3-ASR in {out}")
    tok = official_tokenizer_stand_in(seed)
    model = build_model(make_config(None, model_size(layers, width, conv, shape)), seed=seed)
    forbid_end_tokens(model, tok)
    processor = make_processor(tok)
    save_original(model, processor, original)
    save_transformers(model, processor, hf)
    (out / "done").write_text(json.dumps({"shape": shape, "layers": layers, "width": width, "conv": conv, "seed": seed}) + "\n")
    return original, hf


def make_clips(out: Path, n: int, max_s: float, audio: str, seed: int) -> list[tuple[Path, float]]:
    """n seeded LibriSpeech-like clips no longer than max_s, as 16 kHz WAV files (reused)."""
    from medasr.bench import workload

    index = out / "clips.json"
    if index.exists():
        saved = json.loads(index.read_text())
        if saved["spec"] == [n, max_s, audio, seed]:
            return [(out / name, d) for name, d in saved["clips"]]
    log(f"making {n} {audio} clips in {out}")
    draw = n
    while True:  # durations are log-normal up to 35 s: draw more and keep the first n short enough
        clips = [c for c in workload.synthetic(draw, audio, "librispeech", seed).clips if c.duration <= max_s][:n]
        if len(clips) == n:
            break
        draw = draw * 2
    out.mkdir(parents=True, exist_ok=True)
    for c in clips:
        (out / c.name).write_bytes(c.payload())
    index.write_text(json.dumps({"spec": [n, max_s, audio, seed], "clips": [[c.name, c.duration] for c in clips]}))
    return [(out / c.name, c.duration) for c in clips]


# ---------------------------------------------------------------------------------------------- the two sides


class Official:
    """The qwen-asr worker process: one JSON command in, one JSON reply out."""

    def __init__(self, python: str, model: Path, tokens: int, threads: int):
        if not Path(python).exists():
            raise SystemExit(
                f"bench_peers: {python} not found: create the official package's venv with scripts/peer_venv.sh "
                "(or pass --venv-python)"
            )
        env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
        env.pop("PYTHONPATH", None)  # medasr's path must not leak into the official venv
        cmd = [python, str(HERE / "_peer_official.py"), "--model", str(model), "--max-new-tokens", str(tokens),
               "--threads", str(threads)]  # fmt: skip
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env, cwd=HERE)
        self.info = self._read()

    def _read(self) -> dict:
        line = self.proc.stdout.readline()
        if not line:
            raise SystemExit(f"bench_peers: the qwen-asr worker exited (status {self.proc.wait()}); see its stderr above")
        return json.loads(line)

    def run(self, paths: list[Path], batch_size: int, warmup: int) -> dict:
        self.proc.stdin.write(json.dumps({"paths": [str(p) for p in paths], "batch_size": batch_size, "warmup": warmup}) + "\n")
        self.proc.stdin.flush()
        return self._read()

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(timeout=60)


class Medasr:
    """medasr through its public API, in this process."""

    def __init__(self, model: Path, tokens: int, threads: int):
        import torch
        from _clock import ForwardClock, parameter_digest

        import medasr

        torch.set_num_threads(threads)
        self.tokens = tokens
        self.default_batch_size = inspect.signature(medasr.load_model).parameters["batch_size"].default
        self.asr = medasr.load_model(str(model), device="cpu", dtype="float32")
        self.clock = ForwardClock(self.asr.loaded.model)
        self.info = {
            "package": f"medasr {medasr.__version__}",
            "transformers": __import__("transformers").__version__,
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
            "default_batch_size": self.default_batch_size,
            "dtype": str(self.asr.loaded.dtype).removeprefix("torch."),
            "attn_implementation": getattr(self.asr.loaded.model.config, "_attn_implementation", None),
            "digest": parameter_digest(self.asr.loaded.model),
        }

    def run(self, paths: list[Path], batch_size: int, warmup: int) -> dict:
        files = [str(p) for p in paths]
        if warmup:
            self.asr.transcribe(files[:warmup], batch_size=batch_size, max_new_tokens=self.tokens)
        self.clock.reset()
        t0, c0 = time.perf_counter(), time.process_time()
        out = self.asr.transcribe(files, batch_size=batch_size, max_new_tokens=self.tokens)
        e2e, cpu = time.perf_counter() - t0, time.process_time() - c0
        return {
            "texts": [t.text for t in out],
            # hit_token_cap: no end token and max_new_tokens reached, i.e. exactly `tokens` tokens
            "tokens": [self.tokens if t.hit_token_cap else None for t in out],
            "e2e_s": e2e,
            "cpu_s": cpu,
            "model_s": self.clock.seconds,
            "forwards": self.clock.calls,
        }


# ---------------------------------------------------------------------------------------------- comparing


def padded_in_batch(durations: list[float], batch_size: int) -> list[bool]:
    """For qwen-asr's batches (consecutive groups in input order): is the clip shorter than its batch's longest?"""
    out = []
    for start in range(0, len(durations), batch_size):
        group = durations[start : start + batch_size]
        out += [d < max(group) for d in group]
    return out


def compare(official: dict, ours: dict, durations: list[float], official_batch: int, tokens: int) -> dict:
    same = [a == b for a, b in zip(official["texts"], ours["texts"])]
    padded = padded_in_batch(durations, official_batch)
    differ = [i for i, s in enumerate(same) if not s]
    return {
        "identical": sum(same),
        "differ": differ,
        "differ_padded_in_official_batch": sum(padded[i] for i in differ),
        "identical_padded_in_official_batch": sum(p for p, s in zip(padded, same) if s),
        "tokens_official_ok": all(t == tokens for t in official["tokens"]) and len(official["tokens"]) == len(durations),
        "tokens_medasr_ok": all(t == tokens for t in ours["tokens"]),
    }


def rate(audio_s: float, seconds: float) -> float:
    return round(audio_s / seconds, 2) if seconds > 0 else float("nan")


def main(argv=None) -> int:
    args = parse_args(argv)
    sys.path.insert(0, str(HERE))
    work = Path(args.work_dir)
    name = f"model-L{args.layers}-W{args.width}-C{args.conv}" if args.shape == "family" else f"model-{args.shape}"
    original, hf = build_checkpoint(work / f"{name}-s{args.seed}", args.layers, args.width, args.conv, args.seed, args.shape)
    clips = make_clips(work / f"clips-{args.audio}-n{args.clips}-max{args.max_clip_s:g}-s{args.seed}",
                       args.clips, args.max_clip_s, args.audio, args.seed)  # fmt: skip
    paths, durations = [p for p, _ in clips], [d for _, d in clips]
    audio_s = sum(durations)
    log(f"{len(paths)} clips, {audio_s:.1f} s of audio (mean {audio_s / len(paths):.2f} s, "
        f"{min(durations):.2f}-{max(durations):.2f} s), {args.tokens} tokens each, {args.threads} thread(s)")  # fmt: skip

    log("starting the qwen-asr worker")
    official = Official(args.venv_python, original, args.tokens, args.threads)
    log(f"loading medasr ({hf})")
    ours = Medasr(hf, args.tokens, args.threads)
    a, b = official.info["digest"], ours.info["digest"]
    if a["parameters"] != b["parameters"] or abs(a["sum"] - b["sum"]) > 1e-6 * max(1.0, b["abs_sum"]):
        raise SystemExit(f"bench_peers: the two sides loaded different weights: {a} vs {b}")

    modes = []
    for spec in [s.strip() for s in args.batch_sizes.split(",") if s.strip()]:
        if spec == "default":
            modes.append(("default", official.info["default_batch_size"], ours.default_batch_size))
        else:
            modes.append((spec, int(spec), int(spec)))
    load_before = os.getloadavg()
    runs: dict[str, dict[str, list[dict]]] = {name: {"official": [], "medasr": []} for name, _, _ in modes}
    for r in range(args.repeats):
        for k, (name, ob, mb) in enumerate(modes):
            order = [("official", official, ob), ("medasr", ours, mb)]
            if (r + k) % 2:
                order.reverse()
            for side, runner, batch in order:
                log(f"repeat {r + 1}/{args.repeats}, batch {name}: {side} (batch {batch})")
                runs[name][side].append(runner.run(paths, batch, min(args.warmup_clips, len(paths))))
    load_after = os.getloadavg()
    official.close()

    rows = []
    for name, ob, mb in modes:
        o = min(runs[name]["official"], key=lambda x: x["e2e_s"])
        m = min(runs[name]["medasr"], key=lambda x: x["e2e_s"])
        o_model = min(x["model_s"] for x in runs[name]["official"])
        m_model = min(x["model_s"] for x in runs[name]["medasr"])
        o_cpu = min(x["cpu_s"] for x in runs[name]["official"])
        m_cpu = min(x["cpu_s"] for x in runs[name]["medasr"])
        cmp = compare(runs[name]["official"][0], runs[name]["medasr"][0], durations, ob, args.tokens)
        stable = all(x["texts"] == runs[name][s][0]["texts"] for s in ("official", "medasr") for x in runs[name][s])
        rows.append({
            "batch": name, "official_batch": ob, "medasr_batch": mb,
            "official": {"rtfx_model": rate(audio_s, o_model), "rtfx_e2e": rate(audio_s, o["e2e_s"]), "rtfx_cpu": rate(audio_s, o_cpu),
                         "model_s": round(o_model, 3), "e2e_s": round(o["e2e_s"], 3), "cpu_s": round(o_cpu, 3), "forwards": o["forwards"]},
            "medasr": {"rtfx_model": rate(audio_s, m_model), "rtfx_e2e": rate(audio_s, m["e2e_s"]), "rtfx_cpu": rate(audio_s, m_cpu),
                       "model_s": round(m_model, 3), "e2e_s": round(m["e2e_s"], 3), "cpu_s": round(m_cpu, 3), "forwards": m["forwards"]},
            "ratio_model": round(o_model / m_model, 2), "ratio_e2e": round(o["e2e_s"] / m["e2e_s"], 2), "ratio_cpu": round(o_cpu / m_cpu, 2),
            "ratio_e2e_per_repeat": [round(x["e2e_s"] / y["e2e_s"], 2) for x, y in zip(runs[name]["official"], runs[name]["medasr"])],
            "ratio_cpu_per_repeat": [round(x["cpu_s"] / y["cpu_s"], 2) for x, y in zip(runs[name]["official"], runs[name]["medasr"])],
            "texts_stable_across_repeats": stable, **cmp,
        })  # fmt: skip

    result = {
        "benchmark": "peers",
        "command": "python benchmarks/bench_peers.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "model": {"shape": args.shape, "layers": args.layers, "width": args.width, "conv": args.conv, "seed": args.seed,
                  "parameters": ours.info["digest"]["parameters"], "eos_rows": "zeroed (no early stop)"},  # fmt: skip
        "clips": {"n": len(paths), "audio": args.audio, "audio_s": round(audio_s, 2), "mean_s": round(audio_s / len(paths), 2),
                  "min_s": min(durations), "max_s": max(durations)},  # fmt: skip
        "tokens_per_clip": args.tokens,
        "threads": args.threads,
        "repeats": args.repeats,
        "loadavg_before_after": [round(load_before[0], 2), round(load_after[0], 2)],
        "official": official.info,
        "medasr": ours.info,
        "rows": rows,
    }
    print(markdown(result))
    if args.output:
        Path(args.output).write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n")
        log(f"wrote {args.output}")
    bad = [r["batch"] for r in rows if not (r["tokens_official_ok"] and r["tokens_medasr_ok"])]
    if bad:
        log(f"ERROR: generated token counts differ from --tokens {args.tokens} in batch mode(s) {bad}")
        return 1
    return 0


def markdown(res: dict) -> str:
    n = res["clips"]["n"]
    spec = res["model"]
    shape = f"{spec['layers']} layers x {spec['width']} wide" if spec["shape"] == "family" else f"the published {spec['shape']} shape"
    lines = [
        f"official: {res['official']['package']} (transformers {res['official']['transformers']}, torch {res['official']['torch']}); "
        f"medasr: {res['medasr']['package']} (transformers {res['medasr']['transformers']}, torch {res['medasr']['torch']})",
        f"model: random Qwen3-ASR, {shape} "
        f"({res['model']['parameters'] / 1e6:.1f} M parameters), float32, {res['threads']} thread(s); "
        f"{n} clips, {res['clips']['audio_s']} s ({res['clips']['min_s']}-{res['clips']['max_s']} s, mean {res['clips']['mean_s']} s), "
        f"{res['tokens_per_clip']} tokens per clip on both sides; best of {res['repeats']}; load average {res['loadavg_before_after']}",
        "",
        "| batch (qwen-asr / medasr) | qwen-asr RTFx model / e2e / CPU | medasr RTFx model / e2e / CPU "
        "| ratio model | ratio e2e | ratio CPU | identical texts | token counts equal |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in res["rows"]:
        o, m = r["official"], r["medasr"]
        ok = "yes" if r["tokens_official_ok"] and r["tokens_medasr_ok"] else "NO"
        lines.append(
            f"| {r['batch']} ({r['official_batch']} / {r['medasr_batch']}) | {o['rtfx_model']} / {o['rtfx_e2e']} / {o['rtfx_cpu']} "
            f"| {m['rtfx_model']} / {m['rtfx_e2e']} / {m['rtfx_cpu']} | {r['ratio_model']}x | {r['ratio_e2e']}x | {r['ratio_cpu']}x "
            f"| {r['identical']} of {n} | {ok} |"
        )
    lines.append("")
    for r in res["rows"]:
        d = len(r["differ"])
        lines.append(
            f"batch {r['batch']}: {d} text(s) differ, {r['differ_padded_in_official_batch']} of them padded in their qwen-asr batch "
            f"(features of a padded batch); {r['identical_padded_in_official_batch']} padded clip(s) still gave the same text. "
            f"Ratio per repeat, e2e: {r['ratio_e2e_per_repeat']}, CPU: {r['ratio_cpu_per_repeat']}"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
