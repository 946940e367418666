"""`medasr evaluate` end to end with tiny random models over stand-ins of the MultiMed and
Common Voice 17 layouts (espeak-ng speech): report contents, resuming after a kill, two ranks."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import soundfile as sf

from medasr.cli import main
from medasr.errors import UserError
from medasr.output.recordlog import RecordLog
from medasr.scoring import metrics
from medasr.scoring.report import bucket_of
from medasr.scoring.spec import (
    ID,
    DatasetSpec,
    Shard,
    list_rows,
    parse_dataset_arg,
    prediction_parts,
)
from medasr.synth.sentences import render

MM_TEXTS = ["The patient takes metoprolol.", "chest pain since this morning", "Give 40 mg of atorvastatin daily.",
            "No known allergies.", "Blood pressure is stable.", "Start amoxicillin today."]
CV_TEXTS = ['She said "no" to surgery.', "Take two tablets of ibuprofen."]
SEED_HEADER = "| Test set | Samples | Zero-shot WER | Fine-tuned WER | Δ WER | Zero-shot CER | Fine-tuned CER |"


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> dict[str, Path]:
    """MultiMed: 6 spoken rows + an empty reference + a row whose metadata says 31 s.
    CV17 (official tsv layout, extracted mp3 clips, no durations): 2 spoken + 31 s of silence."""
    root = tmp_path_factory.mktemp("eval-data")
    wavs = [root / f"mm{i}.wav" for i in range(len(MM_TEXTS))]
    for text, wav in zip(MM_TEXTS, wavs):
        render(text, wav, speed=240)
    audio = [{"bytes": w.read_bytes(), "path": w.name} for w in wavs]
    table = {"audio": audio + [audio[0], audio[1]], "text": MM_TEXTS + ["  ", "A long consultation."],
             "duration": [sf.info(str(w)).duration for w in wavs] + [1.0, 31.0]}
    (root / "MultiMed" / "English").mkdir(parents=True)
    pq.write_table(pa.table(table), root / "MultiMed" / "English" / "test-00000-of-00001.parquet")

    cv = root / "cv17"
    clips = cv / "audio" / "en" / "test" / "en_test_0"
    clips.mkdir(parents=True)
    sources = []
    for i, text in enumerate(CV_TEXTS):
        sources.append(root / f"cv{i}.wav")
        render(text, sources[-1], speed=240)
    sf.write(root / "long.wav", np.zeros(16000 * 31, np.float32), 16000)
    sources.append(root / "long.wav")
    lines = ["client_id\tpath\tsentence\tup_votes\tdown_votes\tage\tgender\taccents\tlocale\tsegment\n"]
    for i, (src, text) in enumerate(zip(sources, CV_TEXTS + ["Silence."])):
        name = f"common_voice_en_{100 + i}.mp3"
        subprocess.run(["ffmpeg", "-loglevel", "error", "-y", "-i", str(src), str(clips / name)], check=True)
        lines.append(f"c{i}\t{name}\t{text}\t2\t0\t\t\t\ten\t\n")
    (cv / "transcript" / "en").mkdir(parents=True)
    (cv / "transcript" / "en" / "test.tsv").write_text("".join(lines), encoding="utf-8")
    return {"mm": root / "MultiMed", "cv17": cv}


@pytest.fixture(scope="module")
def baseline(tmp_path_factory) -> Path:
    from conftest import build_tiny

    return build_tiny(tmp_path_factory.mktemp("tiny-seed1"), seed=1)["transformers"]


def _args(model, data, out, *extra):
    return ["evaluate", "--model", str(model), "--dataset", f"mm={data['mm']}", "--dataset",
            f"cv17={data['cv17']}", "--max-new-tokens", "6", "--batch-size", "4", "--resamples", "200",
            "--output-dir", str(out), *map(str, extra)]


@pytest.fixture(scope="module")
def evaluated(tiny_model, baseline, data, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("eval-out")
    assert main(_args(tiny_model["original"], data, out, "--baseline", baseline)) == 0
    return out


def _lines(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines()]


def test_report_numbers_equal_scoring_the_predictions(evaluated):
    r = json.loads((evaluated / "report.json").read_text())
    mm, cv = r["datasets"]["mm"], r["datasets"]["cv17"]
    assert (mm["rows"], mm["samples"]) == (8, 6) and (cv["rows"], cv["samples"]) == (3, 2)
    assert {k: v["count"] for k, v in mm["dropped"].items()} == {"empty reference": 1, "longer than 30 s": 1}
    assert {k: v["count"] for k, v in cv["dropped"].items()} == {"longer than 30 s": 1}  # found by decoding
    for name, d in r["datasets"].items():
        for system in ("model", "baseline"):
            rows = _lines(evaluated / "predictions" / f"{system}__{name}.jsonl")
            assert len(rows) == d["rows"] and len({x["id"] for x in rows}) == d["rows"]
            kept = [x for x in rows if x["hypothesis"] is not None]
            s = metrics.score([x["reference"] for x in kept], [x["hypothesis"] for x in kept], "basic")
            got = d["systems"][system]
            assert got["wer"] == pytest.approx(s.wer) and got["cer"] == pytest.approx(s.cer)
            assert (got["substitutions"], got["deletions"], got["insertions"], got["ref_words"]) == (
                s.word_total.substitutions, s.word_total.deletions, s.word_total.insertions, s.word_total.ref_len)
            assert got["wer_ci95"][0] <= got["wer"] <= got["wer_ci95"][1]
            assert got["hallucination"]["token_cap_hits"] == sum(x["hit_token_cap"] for x in kept)
            assert sum(b["samples"] for b in got["buckets"].values()) == d["samples"]
            assert got["medical"]["drugs"]["occurrences"] >= 1
        c = d["comparison"]
        assert c["delta_wer"] == pytest.approx(d["systems"]["model"]["wer"] - d["systems"]["baseline"]["wer"])
        assert 0 < c["p_value"] <= 1
    # References in the seed's written form, the dataset's text kept beside them.
    row = next(x for x in _lines(evaluated / "predictions" / "model__mm.jsonl") if x["id"] == "multimed-test-000001")
    assert row["reference"] == "Chest pain since this morning." and row["reference_raw"] == MM_TEXTS[1]


def test_report_md_has_the_seed_table_and_the_detail(evaluated, data):
    md = (evaluated / "report.md").read_text(encoding="utf-8")
    assert SEED_HEADER in md
    assert "\n| mm (test) | 6 | " in md and "\n| cv17 (test) | 2 | " in md
    assert "Normaliser: **basic**" in md and "p = " in md
    for section in ("WER by clip duration", "| <5 s |", "M-WER", "drug recall", "dose accuracy",
                    "insertion rate", "hit token cap", "repetition loops", "| empty reference | 1 |"):
        assert section in md
    repro = json.loads((evaluated / "report.json").read_text())["reproducibility"]
    tsv = data["cv17"] / "transcript" / "en" / "test.tsv"
    assert repro["datasets"]["cv17"]["files"][0]["sha256"] == hashlib.sha256(tsv.read_bytes()).hexdigest()
    assert hashlib.sha256(tsv.read_bytes()).hexdigest() in md
    assert set(repro["versions"]) >= {"medasr", "torch", "transformers", "jiwer"}
    assert repro["decoding"]["max_new_tokens"] == 6 and repro["batch_size"] == 4 and repro["dtype"] == "float32"


def test_chart_is_a_png(evaluated):
    import matplotlib  # noqa: F401  (the chart needs it)
    png = evaluated / "wer.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    from PIL import Image

    with Image.open(png) as im:
        im.verify()


def test_rerun_rescores_without_transcribing(evaluated, tiny_model, baseline, data):
    before = {p.name: p.read_bytes() for p in (evaluated / "predictions").iterdir()}
    assert main(_args(tiny_model["original"], data, evaluated, "--baseline", baseline, "--normalizer", "none")) == 0
    r = json.loads((evaluated / "report.json").read_text())
    assert r["normalizer"]["name"] == "none" and r["reproducibility"]["transcribed_now"] == {}
    assert {p.name: p.read_bytes() for p in (evaluated / "predictions").iterdir()} == before
    # Other decoding settings would mix predictions: refused.
    code = main(_args(tiny_model["original"], data, evaluated, "--baseline", baseline, "--max-new-tokens", "9"))
    assert code == 2


def _cli(*args, env=None, **kw):
    return subprocess.Popen([sys.executable, "-m", "medasr", *map(str, args)], env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kw)


def test_killed_run_resumes_without_redoing_or_losing_rows(tiny_model, data, tmp_path):
    out = tmp_path / "out"
    pred = out / "predictions" / "model__mm.jsonl"
    args = ["evaluate", "--model", tiny_model["original"], "--dataset", f"mm={data['mm']}", "--batch-size", "1",
            "--max-new-tokens", "12", "--resamples", "50", "--output-dir", out]
    proc = _cli(*args)
    deadline = time.monotonic() + 120
    while not (pred.exists() and '"hypothesis": "' in pred.read_text(encoding="utf-8")):
        assert proc.poll() is None, proc.communicate()[1]
        assert time.monotonic() < deadline
        time.sleep(0.05)
    proc.kill()
    proc.communicate()
    first = pred.read_bytes()
    kept = first[: first.rfind(b"\n") + 1]
    assert 0 < kept.count(b"\n") < 8 and not (out / "report.json").exists()
    with pred.open("ab") as fh:  # as if the kill had cut a line in half
        fh.write(b'{"id": "multimed-test-0000')
    again = _cli(*args)
    _, err = again.communicate(timeout=300)
    assert again.returncode == 0, err
    after = pred.read_bytes()
    assert after.startswith(kept)  # what was written stays, byte for byte
    ids = [x["id"] for x in _lines(pred)]
    assert len(ids) == len(set(ids)) == 8
    assert sorted(ids) == sorted(r.id for r in list_rows(DatasetSpec("mm", str(data["mm"])), "test"))
    assert json.loads((out / "report.json").read_text())["datasets"]["mm"]["samples"] == 6


def test_two_ranks_split_the_rows_and_rank0_reports(tiny_model, data, tmp_path):
    out = tmp_path / "out"
    args = ["evaluate", "--model", tiny_model["original"], "--dataset", f"mm={data['mm']}", "--batch-size", "2",
            "--max-new-tokens", "4", "--resamples", "50", "--output-dir", out]
    env = {**os.environ, "WORLD_SIZE": "2", "OMP_NUM_THREADS": "1"}  # as torchrun sets it
    procs = [_cli(*args, env={**env, "RANK": str(r), "LOCAL_RANK": str(r)})
             for r in (0, 1)]
    results = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], results[0][1] + results[1][1]
    assert "| mm (test) | 6 |" in results[0][0] and "Test set" not in results[1][0]
    rows = list_rows(DatasetSpec("mm", str(data["mm"])), "test")
    parts = prediction_parts(out, "model", "mm")
    assert [p.name for p in parts] == ["model__mm.rank0.jsonl", "model__mm.rank1.jsonl"]
    for rank, part in enumerate(parts):
        assert sorted(x["id"] for x in _lines(part)) == sorted(r.id for r in rows[rank::2])
    r = json.loads((out / "report.json").read_text())
    merged = [x for p in parts for x in _lines(p) if x["hypothesis"] is not None]
    s = metrics.score([x["reference"] for x in merged], [x["hypothesis"] for x in merged])
    assert r["datasets"]["mm"]["samples"] == 6 and r["datasets"]["mm"]["systems"]["model"]["wer"] == pytest.approx(s.wer)
    assert r["reproducibility"]["world_size"] == 2


@pytest.mark.parametrize("dataset, message", [
    ("multimed", "--dataset expects NAME=PATH"),
    ("mm=/nonexistent/MultiMed", "no such file or folder"),
    ("bad name=/tmp", "letters, digits"),
])
def test_bad_dataset_arguments_are_one_line_errors(dataset, message, tmp_path, capsys):
    # The model does not exist either: datasets are checked before any model loads.
    code = main(["evaluate", "--model", str(tmp_path / "no-model"), "--dataset", dataset, "--output-dir", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1


def test_unknown_layout_and_duplicate_names(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    code = main(["evaluate", "--model", "x", "--dataset", f"a={tmp_path / 'empty'}", "--output-dir", str(tmp_path)])
    assert code == 2 and "unrecognised dataset layout" in capsys.readouterr().err
    code = main(["evaluate", "--model", "x", "--dataset", "a=/x", "--dataset", "a=/y", "--output-dir", str(tmp_path)])
    assert code == 2 and "names must differ: a" in capsys.readouterr().err


def test_shards_parts_and_torn_lines(tmp_path):
    assert Shard.from_env({"WORLD_SIZE": "3", "RANK": "2"}).take(list(range(8))) == [2, 5]
    assert Shard.from_env({}).take([1, 2]) == [1, 2]
    with pytest.raises(UserError):
        Shard.from_env({"WORLD_SIZE": "2", "RANK": "2"})
    preds = tmp_path / "predictions"
    preds.mkdir()
    for name in ("model__cv.jsonl", "model__cv.rank1.jsonl", "model__cv17.jsonl", "baseline__cv.jsonl"):
        (preds / name).write_text("")
    assert [p.name for p in prediction_parts(tmp_path, "model", "cv")] == ["model__cv.jsonl", "model__cv.rank1.jsonl"]
    torn = preds / "model__cv.jsonl"
    torn.write_bytes(b'{"id": "a"}\n{"id": "b"}\n{"id": "c')
    with RecordLog(torn, ID) as log_file:  # the writer evaluate appends with
        assert set(log_file.records) == {"a", "b"}
        log_file.append({"id": "c"})
    assert torn.read_bytes() == b'{"id": "a"}\n{"id": "b"}\n{"id": "c"}\n'
    assert (preds / "model__cv.jsonl.torn").read_bytes() == b'{"id": "c\n'  # set aside, not lost
    assert parse_dataset_arg("cv=cv17:/data/cv").kind_and_path == ("cv17", Path("/data/cv"))
    assert [bucket_of(d) for d in (0.5, 5.0, 19.9, 30.0, None)] == ["<5 s", "5-10 s", "10-20 s", "20-30 s", "unknown"]
