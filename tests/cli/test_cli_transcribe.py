import json
import os
import subprocess
import sys

import pytest


def medasr(*args, check=False):
    return subprocess.run([sys.executable, "-m", "medasr", *map(str, args)], capture_output=True, text=True, check=check)


@pytest.fixture(scope="module")
def inputs(speech_clips, tmp_path_factory):
    d = tmp_path_factory.mktemp("cli")
    mp3 = d / "b.mp3"
    subprocess.run(["ffmpeg", "-loglevel", "error", "-y", "-i", str(speech_clips[3]), str(mp3)], check=True)
    return [speech_clips[1], mp3]


def test_help_explains_every_command():
    out = medasr("--help", check=True).stdout
    for cmd in ("transcribe", "convert", "score", "evaluate", "serve", "bench", "synth", "train", "demo", "stream"):
        assert f"    {cmd} " in out
        sub = medasr(cmd, "--help")
        assert sub.returncode == 0 and "usage: medasr " + cmd in sub.stdout, sub.stderr
    sub = medasr("transcribe", "--help", check=True).stdout
    for flag in ("--model", "--language", "--context", "--batch-size", "--max-new-tokens", "--device", "--dtype", "--format", "--output-dir"):
        assert flag in sub


@pytest.mark.parametrize("context", [None, "Hotwords: metoprolol, amoxicillin"])
def test_json_output_is_the_same_for_both_formats(tiny_model, inputs, context):
    extra = ["--context", context] if context else []
    runs = []
    for fmt in ("original", "transformers"):
        out = medasr("transcribe", "--model", tiny_model[fmt], *inputs, "--format", "json", "--max-new-tokens", "16", *extra)
        assert out.returncode == 0, out.stderr
        runs.append(json.loads(out.stdout))
    assert runs[0] == runs[1]
    assert [r["source"] for r in runs[0]] == [str(p) for p in inputs]
    for r in runs[0]:
        assert set(r) >= {"source", "text", "language", "duration"} and r["language"] == "English"


def test_context_changes_the_answer(tiny_model, inputs):
    texts = []
    for extra in ([], ["--context", "Hotwords: metoprolol, amoxicillin"]):
        out = medasr("transcribe", "--model", tiny_model["original"], inputs[0], "--max-new-tokens", "16", *extra)
        texts.append(out.stdout)
    assert texts[0] != texts[1]


def test_a_context_over_the_limit_is_refused_before_any_work(tiny_model, inputs):
    long = "metoprolol, amoxicillin, " * 400
    out = medasr("transcribe", "--model", tiny_model["original"], inputs[0], "--context", long, "--max-new-tokens", "4")
    assert out.returncode == 2 and "over the limit of 1,024 tokens (--max-context-tokens)" in out.stderr and not out.stdout
    assert "Traceback" not in out.stderr
    raised = medasr("transcribe", "--model", tiny_model["original"], inputs[0], "--context", long, "--max-new-tokens", "4",
                    "--max-context-tokens", "100000")  # fmt: skip
    assert raised.returncode == 0 and raised.stdout.strip()


def test_the_demo_model_times_words_with_the_demo_aligner_by_default(inputs, tmp_path):
    env_home = {"HF_HOME": str(tmp_path), "HF_HUB_OFFLINE": "1"}  # nothing from the hub
    out = subprocess.run([sys.executable, "-m", "medasr", "transcribe", "--model", "demo", "--timestamps", "word", "--format", "json",
                          str(inputs[0])], capture_output=True, text=True, check=False, env={**os.environ, **env_home})  # fmt: skip
    assert out.returncode == 0, out.stderr
    (t,) = json.loads(out.stdout)
    assert t["words"] and [w["word"] for w in t["words"]] == t["text"].split()


def test_txt_jsonl_and_resumable_output_dir(tiny_model, inputs, tmp_path):
    txt = medasr("transcribe", "--model", tiny_model["original"], *inputs, "--max-new-tokens", "8")
    assert txt.returncode == 0 and len(txt.stdout.splitlines()) == 2
    jsonl = medasr("transcribe", "--model", tiny_model["original"], *inputs, "--format", "jsonl", "--max-new-tokens", "8")
    lines = [json.loads(x) for x in jsonl.stdout.splitlines()]
    assert sorted(x["source"] for x in lines) == sorted(map(str, inputs))
    out_dir = tmp_path / "out"
    first = medasr("transcribe", "--model", tiny_model["original"], inputs[0], "--format", "jsonl", "--output-dir", out_dir, "--max-new-tokens", "8")
    assert first.returncode == 0
    second = medasr("transcribe", "--model", tiny_model["original"], *inputs, "--format", "jsonl", "--output-dir", out_dir, "--max-new-tokens", "8")
    assert "skipping 1 input" in second.stderr
    rows = [json.loads(x) for x in (out_dir / "transcripts.jsonl").read_text().splitlines()]
    assert sorted(r["source"] for r in rows) == sorted(map(str, inputs))  # nothing redone, nothing lost


def test_a_bad_file_is_reported_and_the_others_still_transcribed(tiny_model, inputs, tmp_path):
    bad = tmp_path / "corrupt.wav"
    bad.write_bytes(b"RIFF\x00\x00garbage")
    out = medasr("transcribe", "--model", tiny_model["original"], inputs[0], bad, tmp_path / "missing.flac", "--format", "json", "--max-new-tokens", "8")
    assert out.returncode == 1
    rows = json.loads(out.stdout)
    assert rows[0]["text"] and "error" not in rows[0]
    assert "corrupt.wav" in rows[1]["error"] and "no such file" in rows[2]["error"]
    assert "corrupt.wav" in out.stderr and "2 of 3 input(s) failed" in out.stderr
    assert "Traceback" not in out.stderr


def test_bad_options_are_clear_errors(tiny_model, inputs):
    out = medasr("transcribe", "--model", tiny_model["original"], inputs[0], "--language", "Klingon")
    assert out.returncode == 2 and "unsupported language" in out.stderr


def test_output_files_of_inputs_sharing_a_name_do_not_overwrite_each_other(tiny_model, speech_clips, tmp_path):
    for d, clip in (("x", speech_clips[0]), ("y", speech_clips[1])):
        (tmp_path / d).mkdir()
        (tmp_path / d / "a.wav").write_bytes(clip.read_bytes())
    out_dir = tmp_path / "out"
    out = medasr("transcribe", "--model", tiny_model["original"], tmp_path / "x" / "a.wav", tmp_path / "y" / "a.wav",
                 "--format", "json", "--output-dir", out_dir, "--max-new-tokens", "8")
    assert out.returncode == 0, out.stderr
    written = sorted(out_dir.glob("a-*.json"))
    assert len(written) == 2
    assert {json.loads(p.read_text())["source"] for p in written} == {str(tmp_path / d / "a.wav") for d in "xy"}
