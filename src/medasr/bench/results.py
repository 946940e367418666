"""Figures and how they are written: percentiles, the seed's tables (Markdown), JSON, a latency chart."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np

PERCENTILES = (50, 90, 95, 99)


def rate(amount: float, seconds: float, digits: int = 4) -> float | None:
    """amount / seconds, None when nothing was timed."""
    return round(amount / seconds, digits) if seconds and seconds > 0 else None


def percentiles(values: list[float]) -> dict | None:
    """mean, p50/p90/p95/p99 (linear interpolation, so they are ordered) and max; None for no values."""
    if not values:
        return None
    a = np.asarray(values, dtype=float)
    out = {"mean": round(float(a.mean()), 4)}
    out.update({f"p{p}": round(float(v), 4) for p, v in zip(PERCENTILES, np.percentile(a, PERCENTILES))})
    out["max"] = round(float(a.max()), 4)
    return out


def accuracy_table(refs: list[str | None], hyps: list[str | None], normalizer: str = "basic") -> dict:
    """The seed's accuracy table: total, success, failure, and WER/CER over the successes."""
    from medasr.scoring.metrics import score

    pairs = [(r or "", h) for r, h in zip(refs, hyps) if h is not None]
    s = score([r for r, _ in pairs], [h for _, h in pairs], normalizer)
    return {
        "total": len(hyps),
        "success": len(pairs),
        "failure": len(hyps) - len(pairs),
        "normalizer": s.normalizer,
        "wer": round(s.wer, 4),
        "cer": round(s.cer, 4),
        "ref_words": s.word_total.ref_len,
    }


def environment(device=None) -> dict:
    """Versions, CPUs and, where torch is loaded (offline), its threads and the GPU."""
    from medasr.scoring.report import environment as versions

    env = versions()
    env["cpus"] = os.cpu_count()
    torch = sys.modules.get("torch")  # the serving client never needs it: not imported for this
    if torch is not None:
        env["torch_threads"] = torch.get_num_threads()
        if device is not None and device.type == "cuda":
            env["gpu"] = torch.cuda.get_device_name(device)
    return env


def write(result: dict, out_dir: str | Path, stem: str) -> dict[str, Path]:
    """STEM.json and STEM.md (and STEM_latency.png for serving) in out_dir."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"json": out / f"{stem}.json", "md": out / f"{stem}.md"}
    paths["json"].write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    paths["md"].write_text(markdown(result), encoding="utf-8")
    if result["benchmark"] == "serve" and result["levels"]:
        paths["png"] = latency_chart(result, out / f"{stem}_latency.png")
    return paths


# ---------------------------------------------------------------------------------------------- Markdown


def _fmt(x) -> str:
    if x is None:
        return "-"
    if isinstance(x, float):
        return f"{x:,.{3 if abs(x) < 1 else 2}f}"  # sub-second latencies keep milliseconds
    return f"{x:,}" if isinstance(x, int) else str(x)


def _table(head: list[str], rows: list[list]) -> list[str]:
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(" --- " for _ in head) + "|"]
    return lines + ["| " + " | ".join(_fmt(c) for c in row) + " |" for row in rows]


def _acc(a: dict, key: str):
    return f"{a[key]:.3f}" if key in ("wer", "cer") else a[key]


def markdown(r: dict) -> str:
    return "\n".join(offline_md(r) if r["benchmark"] == "offline" else serve_md(r)) + "\n"


def _dataset(r: dict) -> str:
    w = r["workload"]
    name = f"synthetic {w['audio']} ({w['profile']})" if w["source"] == "synthetic" else w["source"]
    return f"{name}, {w['clips']} clips, {w['audio_s']:.0f} s"


def offline_md(r: dict) -> list[str]:
    who = f"RANDOM WEIGHTS {r['random_weights']}" if r["random_weights"] else r["model"]
    out = [f"# Offline benchmark: {who}", ""]
    out += [f"**Warning:** {w}" for w in r["warnings"]] + ([""] if r["warnings"] else [])
    quantized = f", {r['quantize']} weights" if r.get("quantize") else ""
    out.append(f"Device {r['device']} ({r['dtype']}{quantized}), batch size {r['batch_size']}, {r['warmup_batches']} warm-up "
               f"batches per mode, {r['parameters']:,} parameters; workload: {_dataset(r)}.")  # fmt: skip
    out += [
        "",
        "RTFx = audio seconds / seconds; model = inside the model's forwards only; e2e = decode + features + model + "
        "parsing; rows = row utilization (token-rows that carried a real token / token-rows computed).",
        "",
    ]
    head = ["mode", "total", "success", "failure", "audio s", "model s", "RTFx model", "e2e s", "RTFx e2e",
            "samples/s", "tokens", "rows", "peak RSS MB", "peak GPU MB"]  # fmt: skip
    rows = [[x["mode"], x["total"], x["success"], x["failure"], x["audio_s"], x["model_s"], x["rtfx_model"], x["e2e_s"],
             x["rtfx_e2e"], x["samples_per_s"], x["generated_tokens"], x.get("row_utilization"), x["peak_rss_mb"],
             x["peak_gpu_mb"]] for x in r["runs"]]  # fmt: skip
    out += _table(head, rows)
    for mode, s in r["speedup_vs_baseline"].items():
        out.append(f"\nmedasr vs {mode}: {_fmt(s['rtfx_model'])}x (model), {_fmt(s['rtfx_e2e'])}x (end to end)")
    scored = [x for x in r["runs"] if "accuracy" in x]
    if scored:  # the seed's accuracy table, one column per mode
        out += ["", f"Accuracy ({_dataset(r)}, normaliser {scored[0]['accuracy']['normalizer']}):", ""]
        metrics = [
            ("Total Samples", "total"),
            ("Success", "success"),
            ("Failure", "failure"),
            ("WER", "wer"),
            ("CER", "cer"),
        ]
        rows = [["Accuracy", name, *(_acc(x["accuracy"], key) for x in scored)] for name, key in metrics]
        out += _table(["Category", "Metric", *(x["mode"] for x in scored)], rows)
    return out


def serve_md(r: dict) -> list[str]:
    out = [f"# Serving benchmark: {r['url']} ({r['endpoint']}{', streaming' if r['stream'] else ''})", ""]
    out += [f"**Warning:** {w}" for w in r["warnings"]] + ([""] if r["warnings"] else [])
    out += [(f"Model {r['model']}; workload: {_dataset(r)}; closed loop, each client sends its next request "
             "when the last one is answered. RTFx = successful audio seconds / runtime."), ""]  # fmt: skip
    head = ["concurrency", "total", "success", "failure", "runtime s", "samples/s", "RTFx", "latency p50 s",
            "p90 s", "p95 s", "p99 s", "TTFT p50 s", "TTFT p99 s"]  # fmt: skip
    rows = []
    for lv in r["levels"]:
        lat, ttft = lv["latency_s"] or {}, lv["ttft_s"] or {}
        counts = [lv[k] for k in ("concurrency", "total", "success", "failure", "runtime_s", "samples_per_s", "rtfx")]
        rows.append(counts + [lat.get("p50"), lat.get("p90"), lat.get("p95"), lat.get("p99"), ttft.get("p50"), ttft.get("p99")])
    out += _table(head, rows)
    for lv in r["levels"]:  # the seed's tables, one per level
        label = f"{_dataset(r)} @ {lv['concurrency']} clients"
        rows = [
            ("Total Samples", lv["total"]),
            ("Success", lv["success"]),
            ("Failure", lv["failure"]),
            ("Total Runtime", f"{lv['runtime_s']:.2f} s"),
            ("Average Throughput", f"{lv['samples_per_s']:.2f} samples/s"),
        ]
        table = [["Performance", label, m, v] for m, v in rows]
        a = lv.get("accuracy")
        if a:
            table += [["Accuracy", label, f"WER ({a['normalizer']}, {a['success']} answers)", f"{a['wer']:.3f}"]]
        out += ["", f"Concurrency {lv['concurrency']}:", ""] + _table(
            ["Category", "Dataset", "Metric", "Result"], table
        )
        if lv.get("errors"):
            out.append("\nErrors: " + ", ".join(f"{k} x{v}" for k, v in lv["errors"].items()))
    return out


# ---------------------------------------------------------------------------------------------- chart


def latency_chart(r: dict, path: Path) -> Path:
    """Latency percentiles (and TTFT p50 when streaming) against concurrency; throughput on the right."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    levels = [lv for lv in r["levels"] if lv["latency_s"]]
    x = [lv["concurrency"] for lv in levels]
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    for p, style in zip(PERCENTILES, ("-o", "--s", "-.v", ":^")):
        ax.plot(x, [lv["latency_s"][f"p{p}"] for lv in levels], style, label=f"latency p{p}")
    if any(lv["ttft_s"] for lv in levels):
        ax.plot(x, [(lv["ttft_s"] or {}).get("p50") for lv in levels], "-.d", label="TTFT p50")
    ax.set_xscale("log", base=2)
    ax.set_xticks(x, [str(c) for c in x])
    ax.set_xlabel("concurrent clients")
    ax.set_ylabel("seconds")
    right = ax.twinx()
    right.plot(x, [lv["samples_per_s"] for lv in levels], "-x", color="grey", label="samples/s")
    right.set_ylabel("samples/s", color="grey")
    lines = ax.get_legend_handles_labels()
    extra = right.get_legend_handles_labels()
    ax.legend(lines[0] + extra[0], lines[1] + extra[1], fontsize=8, loc="upper left")
    ax.set_ylim(bottom=0)
    right.set_ylim(bottom=0)
    ax.set_title(f"{r['model']} @ {r['url']} ({r['endpoint']}{', streaming' if r['stream'] else ''})", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
