"""`medasr align`: the command as a user runs it (a subprocess), and its one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from medasr.cli import main


def _align(*args):
    return subprocess.run([sys.executable, "-m", "medasr", "align", *map(str, args)], capture_output=True, text=True, check=False)


def test_raw_json_is_exactly_the_aligners_words_and_times(tiny_aligner, speech_clips):
    run = _align("--aligner", tiny_aligner["original"], "--raw", "--format", "json", speech_clips[0], "The patient takes metoprolol.")
    assert run.returncode == 0, run.stderr
    words = json.loads(run.stdout)
    assert [set(w) for w in words] == [{"word", "start", "end"}] * 4
    assert [w["word"] for w in words] == ["The", "patient", "takes", "metoprolol"]
    assert all(0 <= w["start"] <= w["end"] for w in words)


def test_subtitles_from_a_text_file(tiny_aligner, speech_clips, tmp_path):
    import srt

    note = tmp_path / "note.txt"
    note.write_text("Chest pain radiating to the left arm since this morning.\n", encoding="utf-8")
    run = _align("--aligner", tiny_aligner["transformers"], "--text-file", note, "--format", "srt", speech_clips[1])
    assert run.returncode == 0, run.stderr
    cues = list(srt.parse(run.stdout))
    assert cues and " ".join(c.content.replace("\n", " ") for c in cues) == note.read_text().strip()


def test_errors_are_one_line_and_name_the_problem(tiny_aligner, tiny_model, speech_clips, tmp_path, capsys):
    cases = [
        (["--aligner", tiny_aligner["original"], speech_clips[0]], "either as the TEXT argument or with --text-file"),
        (["--aligner", tiny_aligner["original"], speech_clips[0], "   "], "transcript is empty"),
        (["--aligner", tiny_aligner["original"], "--text-file", tmp_path / "missing.txt", speech_clips[0]], "does not exist"),
        (["--aligner", tiny_model["original"], speech_clips[0], "The patient."], "not a forced aligner"),
        (["--aligner", tmp_path / "nowhere", speech_clips[0], "The patient."], "does not exist"),
        (["--aligner", tiny_aligner["original"], tmp_path / "missing.wav", "The patient."], "missing.wav"),
        (["--aligner", tiny_aligner["original"], speech_clips[2], "the patient " * 30], "words fit"),
        (["--aligner", tiny_aligner["original"], speech_clips[0], "-- ..."], "no words to align"),
    ]
    for args, message in cases:
        assert main(["align", *map(str, args)]) == 2
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1 and "Traceback" not in err, (args, err)


@pytest.mark.parametrize("flag", ["--help"])
def test_help_names_the_default_aligner(flag):
    run = subprocess.run([sys.executable, "-m", "medasr", "align", flag], capture_output=True, text=True, check=False)
    assert run.returncode == 0 and "Qwen/Qwen3-ForcedAligner-0.6B" in run.stdout and "--raw" in run.stdout
