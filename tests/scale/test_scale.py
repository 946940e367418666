"""`--ray`: transcribe and evaluate as Ray Data jobs on a real local Ray cluster (one for the
module), against the local path's own outputs: the same files, a worker killed in the middle of a
batch, a rerun of an interrupted run, clear errors (no Ray, a model that does not load). A driver
killed half way and rerun is measured by benchmarks/bench_scale.py (docs/scale.md)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from medasr.cli import main

MAX_NEW = ["--max-new-tokens", "8"]


@pytest.fixture(scope="module")
def cluster():
    """A real Ray cluster in this process (4 CPU slots on 2 cores: 2 workers and the CPU tasks);
    `--ray local` reuses it, a subprocess joins it by its address."""
    try:
        import ray
        import ray.data  # the data extra
    except ImportError:
        pytest.fail("ray is not installed: pip install -e '.[test]' (the test extra brings ray[data])")
    ray.init(num_cpus=4, include_dashboard=False, logging_level="WARNING")
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, speech_clips, shared_audio) -> dict:
    """Four short clips, a 71 s recording (its pieces spread over the workers), a corrupt file."""
    d = tmp_path_factory.mktemp("corpus")
    clips = []
    for c in speech_clips:
        clips.append(d / c.name)
        clips[-1].write_bytes(c.read_bytes())
    long = d / "long.wav"
    jfk, rate = sf.read(shared_audio / "jfk.flac", dtype="float32")
    from medasr.audio.decode import load_audio

    speech = load_audio(str(shared_audio / "multilingual.mp3")).samples
    sf.write(long, np.concatenate([_mono(jfk, rate), speech]), 16000)
    bad = d / "bad.wav"
    bad.write_bytes(b"RIFF not really a wave file")
    return {"dir": d, "clips": clips, "long": long, "bad": bad}


def _mono(x: np.ndarray, rate: int) -> np.ndarray:
    import soxr

    x = x.mean(axis=1) if x.ndim > 1 else x
    return soxr.resample(x, rate, 16000).astype(np.float32)


def _json_dir(d: Path) -> dict[str, dict]:
    return {p.name: json.loads(p.read_text(encoding="utf-8")) for p in sorted(d.glob("*.json"))}


def _same_transcripts(a: dict, b: dict) -> None:
    """Texts and segments identical; scores equal to rounding (their last digit moves with the
    batch a piece shares, on the local path too)."""
    assert a["text"] == b["text"] and a["source"] == b["source"] and a["duration"] == b["duration"]
    assert [(s["start"], s["end"], s["text"]) for s in a["segments"]] == [(s["start"], s["end"], s["text"]) for s in b["segments"]]
    for x, y in zip(a["segments"], b["segments"]):
        assert x["avg_logprob"] == pytest.approx(y["avg_logprob"], abs=1e-5)


def test_transcribe_on_ray_writes_the_files_of_the_local_run(cluster, tiny_model, corpus, tmp_path, capsys):
    """Same files as the local run, with one model worker killed (SIGKILL) in the middle of a
    batch: Ray restarts it and retries the batch, and nothing is lost or written twice."""
    common = ["transcribe", str(corpus["dir"]), "--model", str(tiny_model["transformers"]), *MAX_NEW, "--batch-size", "1",
              "--format", "json", "--vad", "energy", "--max-piece-s", "10"]  # fmt: skip
    local, ray_out = tmp_path / "local", tmp_path / "ray"
    assert main([*common, "--device", "cpu", "--output-dir", str(local)]) == 1  # the bad file
    capsys.readouterr()
    with _killer() as killed:
        assert main([*common, "--output-dir", str(ray_out), "--ray", "--workers", "2"]) == 1
    err = capsys.readouterr().err
    assert killed, "no worker was seen at work"
    assert "bad.wav: cannot decode audio" in err and "1 of 6 input(s) failed" in err
    assert "ray: 6 input(s)" in err
    a, b = _json_dir(local), _json_dir(ray_out)
    assert sorted(a) == sorted(b) == sorted(f"{p.stem}.json" for p in [*corpus["clips"], corpus["long"]])
    for name in a:
        _same_transcripts(a[name], b[name])
    assert len(a["long.json"]["segments"]) >= 7  # a long recording's pieces, merged back in order
    failed = [json.loads(x) for x in (ray_out / "errors.jsonl").read_text().splitlines()]
    assert [(f["input"], f["error_code"]) for f in failed] == [(str(corpus["bad"]), "invalid_audio")]
    # a rerun skips what is written (another spelling of a path is the same input)
    before = {p.name: p.stat().st_mtime_ns for p in ray_out.glob("*.json")}
    again = [str(p) for p in corpus["clips"]] + [f"{corpus['dir']}/./long.wav"]
    assert main([*common[:1], *again, *common[2:], "--output-dir", str(ray_out), "--ray", "local"]) == 0
    assert "skipping 5 input(s) already transcribed" in capsys.readouterr().err
    assert {p.name: p.stat().st_mtime_ns for p in ray_out.glob("*.json")} == before


BUSY = "ray::MapWorker(MapBatches(Transcriber)).submit"  # Ray's process title while a worker runs a batch


@contextlib.contextmanager
def _killer(timeout: float = 120.0):
    """SIGKILL the first model worker seen running a batch; yields the list of pids killed."""
    killed: list[int] = []
    stop = threading.Event()

    def watch():
        while not stop.is_set() and not killed:
            for pid in filter(str.isdigit, os.listdir("/proc")):
                try:
                    title = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].decode()
                except OSError:
                    continue
                if title == BUSY and _descends_from(int(pid), os.getpid()):  # ours, not another run's
                    os.kill(int(pid), signal.SIGKILL)
                    killed.append(int(pid))
                    return
            stop.wait(0.01)

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    try:
        yield killed
    finally:
        stop.set()
        thread.join(timeout)


def _descends_from(pid: int, ancestor: int) -> bool:
    """Whether `pid` is a descendant of `ancestor` (Ray's workers are children of the raylet that
    this process started)."""
    while pid > 1:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            return False
        pid = int(stat.rsplit(")", 1)[1].split()[1])  # the parent's pid, after the (command name)
        if pid == ancestor:
            return True
    return False


def test_evaluate_on_ray_resumes_to_the_predictions_of_the_local_run(cluster, tiny_model, tmp_path, capsys):
    """A MultiMed-layout test set (audio bytes in parquet; a corrupt clip, an empty reference, a
    row over 30 s). The --ray output folder starts as a killed run leaves it (the first rows, and a
    line torn in half); `evaluate --ray` does only the rest and ends with every row once and the
    local evaluation's records."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from medasr.synth.sentences import render

    root = tmp_path / "MultiMed" / "English"
    root.mkdir(parents=True)
    texts = [f"Patient {n} takes metoprolol twice daily." for n in ("one", "two", "three", "four", "five", "six")]
    audio = []
    for i, text in enumerate(texts):
        render(text, tmp_path / f"u{i}.wav", speed=240)
        audio.append({"bytes": (tmp_path / f"u{i}.wav").read_bytes(), "path": f"u{i}.wav"})
    audio += [{"bytes": b"RIFF broken", "path": "bad.wav"}, audio[0], audio[1]]
    table = {"audio": audio, "text": [*texts, "A corrupt clip.", "  ", "A long consultation."],
             "duration": [None] * 7 + [1.0, 31.0]}
    pq.write_table(pa.table(table), root / "test-00000-of-00001.parquet")
    common = ["evaluate", "--model", str(tiny_model["transformers"]), "--dataset", f"mm={tmp_path / 'MultiMed'}",
              "--batch-size", "1", *MAX_NEW, "--resamples", "20"]
    local, ray_out = tmp_path / "local", tmp_path / "ray"
    assert main([*common, "--device", "cpu", "--output-dir", str(local)]) == 0
    theirs = [json.loads(x) for x in (local / "predictions" / "model__mm.jsonl").read_text(encoding="utf-8").splitlines()]
    spoken = [r for r in theirs if r["hypothesis"]]
    pred = ray_out / "predictions" / "model__mm.jsonl"
    pred.parent.mkdir(parents=True)
    kept = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in spoken[:2])
    pred.write_text(kept + json.dumps(spoken[2])[:40], encoding="utf-8")  # two rows, then a torn line
    (ray_out / "run.json").write_text((local / "run.json").read_text())
    capsys.readouterr()
    assert main([*common, "--output-dir", str(ray_out), "--ray", "local"]) == 0
    err = capsys.readouterr().err
    assert "ray: 5 input(s)" in err  # 9 rows: 2 done, 2 dropped by their metadata, 5 sent (one is corrupt)
    assert pred.read_text(encoding="utf-8").startswith(kept)  # what was written stays, byte for byte
    assert (ray_out / "predictions" / "model__mm.jsonl.torn").read_text().startswith(json.dumps(spoken[2])[:40])
    ours = [json.loads(x) for x in pred.read_text(encoding="utf-8").splitlines()]
    assert len(ours) == len({r["id"] for r in ours}) == 9  # every row exactly once
    assert sorted(ours, key=lambda r: r["id"]) == sorted(theirs, key=lambda r: r["id"])
    assert sum(r["error"] is not None for r in ours) == 1 and sum(r["dropped"] is not None for r in ours) == 2
    report = json.loads((ray_out / "report.json").read_text())
    assert report["datasets"]["mm"]["samples"] == json.loads((local / "report.json").read_text())["datasets"]["mm"]["samples"] == 6


def test_without_ray_the_flag_says_how_to_install_it(tiny_model, tmp_path):
    hide = "import sys; sys.modules['ray'] = None; from medasr.cli import main; sys.exit(main(sys.argv[1:]))"
    proc = subprocess.run([sys.executable, "-c", hide, "transcribe", str(tmp_path / "a.wav"), "--model",
                           str(tiny_model["transformers"]), "--ray"], check=False, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "--ray needs Ray 2.60.0 or later" in proc.stderr and "pip install 'medasr[ray]'" in proc.stderr


def test_ray_option_mistakes_are_clear_errors(tiny_model, tmp_path, capsys):
    model = ["--model", str(tiny_model["transformers"])]
    assert main(["transcribe", str(tmp_path / "a.wav"), *model, "--workers", "2"]) == 2
    assert "--workers applies to --ray runs" in capsys.readouterr().err
    assert main(["transcribe", str(tmp_path / "a.wav"), *model, "--ray", str(tmp_path / "b.wav")]) == 2
    assert "not a cluster address" in capsys.readouterr().err  # an input taken as the address
    assert main(["transcribe", str(tmp_path / "a.wav"), *model, "--ray", "--workers", "0"]) == 2
    assert "--workers must be at least 1" in capsys.readouterr().err
    assert main(["transcribe", str(tmp_path / "a.wav"), *model, "--ray", "--timestamps", "word"]) == 2
    assert "--timestamps word is not available with --ray" in capsys.readouterr().err


def test_a_model_that_does_not_load_on_the_workers_is_a_clear_error(cluster, corpus, tmp_path, capsys):
    missing = tmp_path / "no-such-model"
    assert main(["transcribe", str(corpus["clips"][0]), "--model", str(missing), "--ray", "local"]) == 2
    err = capsys.readouterr().err
    assert "error: model worker" in err and f"model directory '{missing}' does not exist" in err
    assert "Traceback" not in err
