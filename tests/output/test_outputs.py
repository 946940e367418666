"""Results that survive kills and full disks (medasr.output.recordlog): torn and newline-less last lines,
records glued together, path spellings, kill -9 at random moments and a file-size limit, against
the writer itself and against a real `medasr transcribe --output-dir`."""

from __future__ import annotations

import json
import os
import random
import resource
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from medasr.output.recordlog import RecordLog, field_key, input_key, read_records, unique_inputs, write_atomic

ID = field_key("id")


def _ids(path: Path) -> list[str]:
    return [json.loads(line)["id"] for line in path.read_text(encoding="utf-8").splitlines()]


# ---------------------------------------------------------------------------- the writer
def test_torn_last_line_is_set_aside_before_appending(tmp_path):
    path = tmp_path / "r.jsonl"
    whole = json.dumps({"id": "a", "text": "métoprolol"}, ensure_ascii=False).encode() + b"\n"
    torn = json.dumps({"id": "b", "text": "é"}, ensure_ascii=False).encode()[:-4]  # cut inside "é"
    path.write_bytes(whole + torn)
    assert read_records(path, ID).keys() == {"a"}  # readers skip it and change nothing
    assert path.read_bytes() == whole + torn
    with RecordLog(path, ID) as log:
        assert log.records.keys() == {"a"}
        log.append({"id": "b", "text": "é"})
    assert _ids(path) == ["a", "b"]
    assert (tmp_path / "r.jsonl.torn").read_bytes() == torn + b"\n"  # kept, not lost


def test_a_whole_record_without_its_newline_is_completed(tmp_path):
    path = tmp_path / "r.jsonl"
    path.write_bytes(b'{"id": "a"}\n{"id": "b"}')  # the old bug: the next record was glued to it
    with RecordLog(path, ID) as log:
        assert log.records.keys() == {"a", "b"}
        log.append({"id": "c"})
    assert _ids(path) == ["a", "b", "c"] and not (tmp_path / "r.jsonl.torn").exists()


def test_glued_and_broken_lines_in_the_middle_are_set_aside(tmp_path, caplog):
    path = tmp_path / "r.jsonl"
    path.write_bytes(b'{"id": "a"}{"id": "b"}\n{"id": "c"}\nnot json\n\n{"no id": 1}\n{"id": "d"}\n{"id": "e"')
    with caplog.at_level("WARNING", logger="medasr.output.recordlog"), RecordLog(path, ID) as log:
        assert log.records.keys() == {"c", "d"}
    assert _ids(path) == ["c", "d"]
    assert (tmp_path / "r.jsonl.torn").read_bytes() == b'{"id": "a"}{"id": "b"}\nnot json\n{"no id": 1}\n{"id": "e"\n'
    assert "set aside 4 line(s)" in caplog.text and "r.jsonl.torn" in caplog.text
    with RecordLog(path, ID, overwrite=True) as log:  # --overwrite starts afresh
        assert log.records == {}
    assert path.read_bytes() == b""


def test_inputs_are_keyed_by_resolved_path_or_url(tmp_path, monkeypatch):
    (tmp_path / "syn" / "audio").mkdir(parents=True)
    (tmp_path / "syn" / "audio" / "x.wav").write_bytes(b"")
    (tmp_path / "link").symlink_to(tmp_path / "syn")
    monkeypatch.chdir(tmp_path)
    spellings = ["syn/audio/x.wav", "./syn/audio/x.wav", str(tmp_path / "syn/audio/x.wav"), "syn/../syn/audio/x.wav", "link/audio/x.wav"]
    assert {input_key(s) for s in spellings} == {str((tmp_path / "syn/audio/x.wav").resolve())}
    assert input_key("https://example.org/a.wav?x=1") == "https://example.org/a.wav?x=1"
    assert unique_inputs([*spellings, "https://example.org/a.wav"]) == ["syn/audio/x.wav", "https://example.org/a.wav"]


def test_write_atomic_replaces_whole_files(tmp_path):
    path = tmp_path / "a.txt"
    write_atomic(path, "first\n")
    write_atomic(path, "second\n")
    assert path.read_text() == "second\n" and [p.name for p in tmp_path.iterdir()] == ["a.txt"]


# A writer in a child process (no model: starts in a blink), so that it can be killed often.
CHILD = textwrap.dedent("""
    import sys
    from pathlib import Path
    from medasr.output.recordlog import RecordLog, field_key, write_atomic
    out, n = Path(sys.argv[1]), int(sys.argv[2])
    with RecordLog(out / "r.jsonl", field_key("id")) as log:
        for i in range(n):
            key = f"input-{i:03d}"
            if key in log.records:
                continue
            text = f"{key} métoprolol 25 mg " * 400  # ~9 kB a record, multi-byte characters
            write_atomic(out / f"{key}.txt", text)
            try:
                log.append({"id": key, "text": text})
            except OSError as err:
                print(f"cannot write: {err.strerror}", file=sys.stderr)
                sys.exit(3)
""")


def _child(out: Path, n: int, limit: int | None = None) -> subprocess.Popen:
    def cap():
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return subprocess.Popen([sys.executable, "-c", CHILD, str(out), str(n)], stderr=subprocess.PIPE, text=True,
                            preexec_fn=cap if limit else None)  # fmt: skip


def _check_once(out: Path, n: int) -> None:
    ids = _ids(out / "r.jsonl")
    assert sorted(ids) == [f"input-{i:03d}" for i in range(n)]  # every input, exactly once
    for i in range(n):
        assert (out / f"input-{i:03d}.txt").read_text(encoding="utf-8").endswith("mg ")  # whole files only
    assert not list(out.glob("*.partial"))


def test_kill_9_at_random_moments_and_a_full_disk_leave_each_input_once(tmp_path):
    n = 120
    rng = random.Random(18)
    # a file-size limit (what a full disk does to the writes): the append that does not fit is
    # cut back, the child says why; the log stays whole records
    full = _child(tmp_path, n, limit=200_000)
    _, err = full.communicate(timeout=60)
    assert full.returncode == 3 and "File too large" in err
    assert (tmp_path / "r.jsonl").read_bytes().endswith(b"\n") and 0 < len(_ids(tmp_path / "r.jsonl")) < n
    for _ in range(8):
        proc = _child(tmp_path, n)
        time.sleep(rng.uniform(0.05, 0.4))
        proc.send_signal(signal.SIGKILL)
        proc.communicate()
    last = _child(tmp_path, n)
    assert last.wait(60) == 0, last.stderr.read()
    _check_once(tmp_path, n)


# ---------------------------------------------------------------------------- medasr transcribe
def _transcribe(*args, cwd: Path, limit: int | None = None) -> subprocess.Popen:
    def cap():
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).parents[2] / "src"), os.environ.get("PYTHONPATH", "")])}
    return subprocess.Popen([sys.executable, "-m", "medasr", "transcribe", *map(str, args)], cwd=cwd, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, preexec_fn=cap if limit else None)  # fmt: skip


def test_transcribe_resumes_after_a_full_disk_and_torn_lines_whatever_the_path_spelling(tiny_model, speech_clips, mp3s, tmp_path):
    work = tmp_path / "work"
    (work / "syn" / "audio").mkdir(parents=True)
    for clip in speech_clips:
        (work / "syn" / "audio" / clip.name).write_bytes(clip.read_bytes())
    (work / "syn" / "audio" / "joined.mp3").write_bytes(mp3s["joined"].read_bytes())
    out = work / "out"
    common = ["--model", tiny_model["transformers"], "--device", "cpu", "--max-new-tokens", "4", "--vad", "energy",
              "--batch-size", "1", "--format", "jsonl", "--output-dir", out]  # fmt: skip
    log = out / "transcripts.jsonl"

    # 1. the disk fills after a record or two: a clear error, whole records kept
    full = _transcribe(work / "syn" / "audio", *common, cwd=tmp_path, limit=700)
    _, err = full.communicate(timeout=300)
    assert full.returncode == 2 and "cannot write the output for" in err and "rerun the same command" in err
    assert log.read_bytes().endswith(b"\n") and log.stat().st_size <= 700
    # as an older version or a full disk could leave it: a torn line cut inside a UTF-8 character
    with log.open("ab") as fh:
        fh.write(json.dumps({"source": "syn/audio/clip3.wav", "text": "métoprolol"}, ensure_ascii=False).encode()[:-5])
    done = {json.loads(x)["input"] for x in log.read_text(encoding="utf-8", errors="replace").splitlines()[:-1]}
    assert done  # a record or two made it before the disk filled
    # 2. the same inputs, spelled otherwise (kill -9 at random moments: the writer's test above)
    again = _transcribe(*[f"./syn/audio/{c.name}" for c in speech_clips], "syn/../syn/audio/joined.mp3", *common, cwd=work)
    _, err = again.communicate(timeout=300)
    assert again.returncode == 0, err
    assert f"skipping {len(done)} input(s) already transcribed" in err and "set aside 1 line(s)" in err
    records = [json.loads(x) for x in log.read_text(encoding="utf-8").splitlines()]
    wanted = sorted(str((work / "syn" / "audio" / n).resolve()) for n in [c.name for c in speech_clips] + ["joined.mp3"])
    assert sorted(r["input"] for r in records) == wanted  # each input exactly once
    assert b"m\xc3" in (out / "transcripts.jsonl.torn").read_bytes()
    joined = next(r for r in records if r["input"].endswith("joined.mp3"))
    assert joined["duration"] == pytest.approx(33.07, abs=0.06)  # the whole joined recording
    assert joined["source"] in ("syn/audio/joined.mp3", str(work / "syn" / "audio" / "joined.mp3"), "syn/../syn/audio/joined.mp3")


def test_per_input_files_resume_by_resolved_path(tiny_model, speech_clips, tmp_path, monkeypatch, capsys):
    from medasr.cli import main

    monkeypatch.chdir(speech_clips[0].parent)
    out = tmp_path / "subs"
    common = ["--model", str(tiny_model["transformers"]), "--device", "cpu", "--max-new-tokens", "4", "--format", "vtt",
              "--output-dir", str(out)]  # fmt: skip
    assert main(["transcribe", *[c.name for c in speech_clips[:3]], *common]) == 0
    first = {p.name: p.read_text() for p in out.iterdir()}
    assert sorted(first) == sorted(f"{c.stem}.vtt" for c in speech_clips[:3])
    (out / f"{speech_clips[1].stem}.vtt").unlink()  # as if killed before its atomic rename
    (out / f"{speech_clips[1].stem}.vtt.partial").write_text("WEBVTT\n\n00:00")
    capsys.readouterr()
    assert main(["transcribe", *[str(c) for c in speech_clips[:3]], f"./{speech_clips[0].name}", *common]) == 0
    assert "skipping 2 input(s)" in capsys.readouterr().err
    assert {p.name: p.read_text() for p in out.iterdir()} == first  # redone whole, nothing else
