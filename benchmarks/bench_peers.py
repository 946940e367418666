"""medasr against the runtimes CPU users pick, on the same weights, clips and token counts:
the official qwen-asr package and sherpa-onnx (fp32 and int8 ONNX Runtime).

    scripts/peer_venv.sh                               # once: the official package in /tmp/venv-qwenasr
    python benchmarks/bench_peers.py                   # small model; --threads 1 --medasr float32,int8
    python benchmarks/bench_peers.py --shape 0.6b --threads 1,2 --sherpa-dir runs/peers/sherpa-0.6b-s0 \
        --medasr float32,bfloat16,int8 --repeats 2 --output runs/peers/0.6b.json

Every system runs in a worker process of its own, one at a time, with the same JSON protocol
(`_peer_medasr.py`, `_peer_official.py`, `_peer_sherpa.py`), so its CPU time and peak resident
memory are its own:
- medasr through its public API (`medasr.load_model(..., dtype=, quantize=).transcribe`), as
  float32 (its CPU default), bfloat16 and int8 (`--quantize int8`), at batch 1 and --batch;
- the official qwen-asr 0.0.6 (transformers backend, float32) in its own venv with transformers
  4.57.6, at batch 1 and its default batch (32);
- sherpa-onnx (`pip install sherpa-onnx`), fp32 and int8, one clip at a time (it does not batch
  Qwen3-ASR), on ONNX files exported from the same checkpoint by the public exporter that
  sherpa-onnx's Qwen3-ASR packages come from (GitHub: Wasser1462/Qwen3-ASR-onnx), run outside
  this repository in the official venv (docs/performance.md, "CPU peers", has the commands):
  --sherpa-dir holds fp32/ and int8/ export folders (the tokenizer is the checkpoint's own).
  Without it the sherpa rows are left out.

Same weights: one random Qwen3-ASR of the real architecture is built with medasr.model.build and
saved twice from the same tensors, in the ORIGINAL format (what qwen-asr and the exporter read) and
the transformers format (what medasr reads); --shape 0.6b / 1.7b gives the published models' exact
dimensions, --shape family a small model of the same family (--layers, --width, --conv). medasr
and qwen-asr report a digest of the float32 parameters they loaded, which must agree.

Same token counts: the checkpoint's rows of the (tied) embedding for <|im_end|> and <|endoftext|>
are zeroed, so their logit is exactly 0 while the largest of the other ~152k random logits is
positive: no system can stop early, and each generates exactly --tokens tokens per clip (checked).

Same clips: --clips espeak-ng speech clips with LibriSpeech test-clean's durations (log-normal,
median 5.8 s) kept below --max-clip-s, as 16 kHz WAV files every system reads.

Clocks: end to end (the whole transcribe call or loop: reading files, features, model, decoding)
and the worker's CPU time over it; RTFx = audio seconds / seconds; best of --repeats, the batch
modes of one system alternating. Peak RSS is the worker's VmHWM after its runs (loading
included); for medasr also the weights as stored and the largest KV cache of a call.

Texts: with greedy decoding every float32 system should write the same text. Each row is compared
with medasr float32 at batch 1 (same threads), sherpa-onnx's after the official repetition clean-up
it lacks. With random weights an int8 or bfloat16 difference counts argmax flips, not accuracy
(`bench_quantize_accuracy.py` measures that on the demo model).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
DEFAULT_VENV_PYTHON = "/tmp/venv-qwenasr/bin/python"
PRECISIONS = {"float32": ("float32", "none"), "bfloat16": ("bfloat16", "none"), "int8": ("float32", "int8")}


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog="See the module docstring for the method.")
    ap.add_argument("--clips", type=int, default=8, help="number of clips (default: 8)")
    ap.add_argument("--max-clip-s", type=float, default=20.0, help="longest clip in seconds (default: 20)")
    ap.add_argument("--audio", choices=("speech", "noise"), default="speech", help="espeak-ng speech or white noise (default: speech)")
    ap.add_argument("--tokens", type=int, default=32, help="generated tokens per clip, forced on every side (default: 32)")
    ap.add_argument("--shape", choices=("family", "0.6b", "1.7b"), default="family",
                    help="'family': --layers/--width/--conv in the published shape family; '0.6b' or '1.7b': the published "
                    "model's exact dimensions (medasr.model.build.SIZES; --layers/--width/--conv ignored) (default: family)")  # fmt: skip
    ap.add_argument("--layers", type=int, default=8, help="family: decoder and encoder layers (default: 8)")
    ap.add_argument("--width", type=int, default=512, help="family: hidden size, a multiple of 64 (default: 512)")
    ap.add_argument("--conv", type=int, default=480, help="family: encoder convolution channels (default: 480, the published models')")
    ap.add_argument("--seed", type=int, default=0, help="seed of the weights and clips (default: 0)")
    ap.add_argument("--threads", default="1", help="comma-separated thread counts, each system at each (default: 1)")
    ap.add_argument("--medasr", default="float32,int8", help=f"medasr's precisions, of {', '.join(PRECISIONS)} (default: float32,int8)")
    ap.add_argument("--batch", type=int, default=16, help="medasr's batched mode (default: 16); batch 1 always runs")
    ap.add_argument("--official-batch", type=int, default=None, help="the official package's batched mode (default: its own default, 32)")
    ap.add_argument("--no-official", action="store_true", help="leave the official package out (no venv needed)")
    ap.add_argument("--sherpa-dir", default=None, help="sherpa-onnx export folders fp32/ and int8/ of this checkpoint (default: no sherpa rows)")
    ap.add_argument("--repeats", type=int, default=1, help="timed runs of every mode; the best counts (default: 1)")
    ap.add_argument("--warmup-clips", type=int, default=1, help="clips transcribed before each timed run (default: 1)")
    ap.add_argument("--venv-python", default=DEFAULT_VENV_PYTHON,
                    help=f"python of the qwen-asr venv made by scripts/peer_venv.sh (default: {DEFAULT_VENV_PYTHON})")  # fmt: skip
    ap.add_argument("--work-dir", default=str(ROOT / "runs" / "peers"), help="checkpoints and clips (reused) (default: runs/peers)")
    ap.add_argument("--output", default=None, help="also write the results as JSON here")
    args = ap.parse_args(argv)
    if args.width % 64 or args.width < 128:
        ap.error("--width must be a multiple of 64, at least 128")
    for name in ("clips", "tokens", "layers", "repeats", "batch"):
        if getattr(args, name) < 1:
            ap.error(f"--{name} must be at least 1")
    args.threads = [int(x) for x in args.threads.split(",")]
    args.medasr = [x.strip() for x in args.medasr.split(",") if x.strip()]
    unknown = [x for x in args.medasr if x not in PRECISIONS]
    if unknown or "float32" not in args.medasr:
        ap.error(f"--medasr takes {', '.join(PRECISIONS)} and must include float32 (the texts' reference)")
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


# ---------------------------------------------------------------------------------------------- the systems


class Worker:
    """One system's worker process: a JSON description first, then one JSON reply per command."""

    def __init__(self, label: str, cmd: list[str], env: dict):
        self.label = label
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env, cwd=HERE)
        self.info = self._read()

    def _read(self) -> dict:
        line = self.proc.stdout.readline()
        if not line:
            raise SystemExit(f"bench_peers: the {self.label} worker exited (status {self.proc.wait()}); see its stderr above")
        return json.loads(line)

    def run(self, paths: list[Path], batch_size: int, warmup: int) -> dict:
        self.proc.stdin.write(json.dumps({"paths": [str(p) for p in paths], "batch_size": batch_size, "warmup": warmup}) + "\n")
        self.proc.stdin.flush()
        return self._read()

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(timeout=120)


def thread_env(threads: int, python_path: bool) -> dict:
    """The same thread settings for every system: torch's idle threads sleep, as medasr's commands
    make them (a spinning thread counts as CPU time); ONNX Runtime keeps its own default."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads), "OMP_WAIT_POLICY": "PASSIVE"}
    if python_path:
        from _peak import child_env

        env = {**child_env(), **{k: env[k] for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OMP_WAIT_POLICY")}}
    else:
        env.pop("PYTHONPATH", None)  # medasr's path must not leak into the official venv
    return env


def systems(args, original: Path, hf: Path, threads: int) -> list[tuple[str, list[int], callable]]:
    """(label, batch sizes, start the worker) for every system of this run."""
    out = []
    for name in args.medasr:
        dtype, quantize = PRECISIONS[name]
        cmd = [sys.executable, str(HERE / "_peer_medasr.py"), "--model", str(hf), "--max-new-tokens", str(args.tokens),
               "--threads", str(threads), "--dtype", dtype, "--quantize", quantize]  # fmt: skip
        out.append((f"medasr {name}", [1, args.batch], lambda cmd=cmd, name=name: Worker(f"medasr {name}", cmd, thread_env(threads, True))))
    if not args.no_official:
        if not Path(args.venv_python).exists():
            raise SystemExit(f"bench_peers: {args.venv_python} not found: create the official package's venv with "
                             "scripts/peer_venv.sh (or pass --venv-python, or --no-official)")  # fmt: skip
        cmd = [args.venv_python, str(HERE / "_peer_official.py"), "--model", str(original), "--max-new-tokens", str(args.tokens),
               "--threads", str(threads)]  # fmt: skip
        out.append(("qwen-asr float32", [1, args.official_batch or 0],
                    lambda cmd=cmd: Worker("qwen-asr", cmd, thread_env(threads, False))))  # fmt: skip
    if args.sherpa_dir:
        for precision in ("fp32", "int8"):
            folder = Path(args.sherpa_dir) / precision
            if not folder.is_dir():
                raise SystemExit(f"bench_peers: {folder} not found: export the checkpoint first (docs/performance.md, 'CPU peers')")
            cmd = [sys.executable, str(HERE / "_peer_sherpa.py"), "--model-dir", str(folder), "--precision", precision,
                   "--tokenizer", str(hf), "--max-new-tokens", str(args.tokens), "--threads", str(threads)]  # fmt: skip
            out.append((f"sherpa-onnx {precision}", [1], lambda cmd=cmd, p=precision: Worker(f"sherpa-onnx {p}", cmd, thread_env(threads, False))))
    return out


# ---------------------------------------------------------------------------------------------- running


def rate(audio_s: float, seconds: float) -> float:
    return round(audio_s / seconds, 2) if seconds > 0 else float("nan")


def measure(args, original: Path, hf: Path, paths: list[Path], audio_s: float) -> tuple[list[dict], dict]:
    """Every system at every thread count, one worker at a time; the best of --repeats per mode."""
    rows, infos = [], {}
    for threads in args.threads:
        for label, batches, start in systems(args, original, hf, threads):
            log(f"{threads} thread(s): starting {label}")
            worker = start()
            infos[f"{label} @{threads}"] = worker.info
            batches = [b or worker.info["default_batch_size"] for b in batches]
            runs: dict[int, list[dict]] = {b: [] for b in batches}
            for r in range(args.repeats):
                for b in batches if r % 2 == 0 else batches[::-1]:
                    runs[b].append(worker.run(paths, b, min(args.warmup_clips, len(paths))))
                    log(f"  {label}, batch {b}, repeat {r + 1}: CPU {runs[b][-1]['cpu_s']:.1f} s")
            worker.close()
            for b in batches:
                best = min(runs[b], key=lambda x: x["cpu_s"])
                rows.append({
                    "system": label, "threads": threads, "batch": b,
                    "rtfx_cpu": rate(audio_s, best["cpu_s"]), "rtfx_e2e": rate(audio_s, min(x["e2e_s"] for x in runs[b])),
                    "cpu_s": round(best["cpu_s"], 3), "peak_rss_mb": max(x.get("peak_rss_mb", 0) for x in runs[b]) or None,
                    "cache_mb": best.get("cache_mb"), "weights_mb": worker.info.get("weights_mb"),
                    "tokens_ok": all(t == args.tokens for x in runs[b] for t in x["tokens"]),
                    "stable": all(x["texts"] == runs[b][0]["texts"] for x in runs[b]), "texts": best["texts"],
                })  # fmt: skip
    return rows, infos


def agreement(rows: list[dict]) -> None:
    """Each row's texts against medasr float32 at batch 1 with the same threads (sherpa-onnx's after
    the official repetition clean-up, which it does not apply)."""
    from medasr.model.prompt import fix_repetitions

    for row in rows:
        ref = next(r for r in rows if r["system"] == "medasr float32" and r["batch"] == 1 and r["threads"] == row["threads"])
        texts = [fix_repetitions(t) for t in row["texts"]] if row["system"].startswith("sherpa") else row["texts"]
        row["same_as_float32"] = sum(a == b for a, b in zip(texts, ref["texts"]))


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
    log(f"{len(paths)} clips, {audio_s:.1f} s of audio ({min(durations):.2f}-{max(durations):.2f} s), {args.tokens} tokens each")
    load_before = os.getloadavg()
    rows, infos = measure(args, original, hf, paths, audio_s)
    load_after = os.getloadavg()
    digests = {k: v["digest"] for k, v in infos.items() if v.get("digest")}
    if len({(d["parameters"], round(d["sum"], 3)) for d in digests.values()}) > 1:
        raise SystemExit(f"bench_peers: the systems loaded different weights: {digests}")
    agreement(rows)
    result = {
        "benchmark": "peers",
        "command": "python benchmarks/bench_peers.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "model": {"shape": args.shape, "layers": args.layers, "width": args.width, "conv": args.conv, "seed": args.seed,
                  "parameters": next(iter(digests.values()))["parameters"], "eos_rows": "zeroed (no early stop)"},  # fmt: skip
        "clips": {"n": len(paths), "audio": args.audio, "audio_s": round(audio_s, 2), "min_s": min(durations), "max_s": max(durations)},
        "tokens_per_clip": args.tokens,
        "repeats": args.repeats,
        "loadavg_before_after": [round(load_before[0], 2), round(load_after[0], 2)],
        "systems": infos,
        "rows": rows,
    }
    print(markdown(result))
    if args.output:
        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
        Path(args.output).write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n")
        log(f"wrote {args.output}")
    bad = [f"{r['system']} batch {r['batch']} @{r['threads']}" for r in rows if not r["tokens_ok"]]
    if bad:
        log(f"ERROR: generated token counts differ from --tokens {args.tokens}: {bad}")
        return 1
    return 0


def markdown(res: dict) -> str:
    spec, n = res["model"], res["clips"]["n"]
    shape = f"{spec['layers']} layers x {spec['width']} wide" if spec["shape"] == "family" else f"the published {spec['shape']} shape"
    lines = [
        f"model: random Qwen3-ASR, {shape} ({spec['parameters'] / 1e6:.1f} M parameters); {n} clips, {res['clips']['audio_s']} s "
        f"({res['clips']['min_s']}-{res['clips']['max_s']} s), {res['tokens_per_clip']} tokens per clip on every side; "
        f"best of {res['repeats']}; load average {res['loadavg_before_after']}",
        "",
        "| system | threads | batch | RTFx (CPU) | RTFx (wall) | peak RSS MB | weights / largest KV cache MB | texts = medasr float32 | tokens |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in res["rows"]:
        mem = f"{r['weights_mb']:.0f} / {r['cache_mb']:.0f}" if r.get("cache_mb") is not None else ""
        lines.append(f"| {r['system']} | {r['threads']} | {r['batch']} | {r['rtfx_cpu']} | {r['rtfx_e2e']} | {r['peak_rss_mb'] or ''} "
                     f"| {mem} | {r['same_as_float32']} of {n} | {'exact' if r['tokens_ok'] else 'NO'} |")  # fmt: skip
    lines.append("")
    for threads in sorted({r["threads"] for r in res["rows"]}):
        mine = [r for r in res["rows"] if r["threads"] == threads]
        ours = [r for r in mine if r["system"].startswith("medasr")]
        best = max(ours, key=lambda r: r["rtfx_cpu"])
        for peer in ("sherpa-onnx int8", "sherpa-onnx fp32", "qwen-asr float32"):
            theirs = [r for r in mine if r["system"] == peer]
            if theirs:
                top = max(theirs, key=lambda r: r["rtfx_cpu"])
                lines.append(f"{threads} thread(s): medasr's best ({best['system']}, batch {best['batch']}) / {peer}'s best "
                             f"(batch {top['batch']}): {best['rtfx_cpu'] / top['rtfx_cpu']:.2f}x CPU time")  # fmt: skip
        official = [r for r in mine if r["system"] == "qwen-asr float32" and r["batch"] == 1]
        for r in (x for x in ours if x["batch"] == 1 and official):
            lines.append(f"{threads} thread(s): {r['system']} batch 1 / qwen-asr batch 1: {r['rtfx_cpu'] / official[0]['rtfx_cpu']:.2f}x CPU time")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
