import json
import subprocess
import sys

import jiwer
import pytest

REFS = ["The patient took 15 mg of metformin.", "Chest pain radiating to the left arm.", "No known allergies."]
HYPS = ["the patient took 50 mg of metformin", "chest pain radiating to the arm", "no known allergies"]


def medasr(*args):
    return subprocess.run([sys.executable, "-m", "medasr.cli", *map(str, args)], capture_output=True, text=True, check=False)


def write_lines(path, lines):
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


def write_jsonl(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


@pytest.fixture
def text_files(tmp_path):
    return write_lines(tmp_path / "refs.txt", REFS), write_lines(tmp_path / "hyps.txt", HYPS)


def test_help_lists_the_options():
    out = medasr("score", "--help")
    assert out.returncode == 0, out.stderr
    for flag in ("--refs", "--hyps", "--normalizer", "--format", "--terms"):
        assert flag in out.stdout


def test_plain_text_json(text_files):
    refs, hyps = text_files
    out = medasr("score", "--refs", refs, "--hyps", hyps, "--format", "json")
    assert out.returncode == 0, out.stderr
    r = json.loads(out.stdout)
    expected = jiwer.process_words([s.lower().rstrip(".") for s in REFS], HYPS)
    assert r["wer"] == pytest.approx(expected.wer)
    assert (r["hits"], r["substitutions"], r["deletions"], r["insertions"]) == (
        expected.hits, expected.substitutions, expected.deletions, expected.insertions)
    assert r["ref_words"] == 17 and r["n"] == 3 and r["normalizer"] == "basic"
    assert 0 <= r["cer"] < r["wer"]
    assert len(r["wer_ci95"]) == 2 and r["wer_ci95"][0] <= r["wer"] <= r["wer_ci95"][1]
    assert r["medical"]["doses"]["total"] == 1 and r["medical"]["doses"]["found"] == 0
    assert r["medical"]["drugs"]["recall"] == 1.0


def test_jsonl_matched_by_id_and_markdown(tmp_path):
    refs = write_jsonl(tmp_path / "refs.jsonl", [{"id": f"u{i}", "text": t} for i, t in enumerate(REFS)])
    # Hypotheses in another order, one of them cut at the token cap.
    hyps = write_jsonl(tmp_path / "hyps.jsonl", [
        {"id": f"u{i}", "text": HYPS[i], "hit_token_cap": i == 1} for i in (2, 0, 1)])
    out = medasr("score", "--refs", refs, "--hyps", hyps, "--format", "json")
    assert out.returncode == 0, out.stderr
    r = json.loads(out.stdout)
    assert r["n"] == 3 and r["substitutions"] == 1 and r["deletions"] == 1
    assert r["hallucination"]["token_cap_hits"] == 1
    md = medasr("score", "--refs", refs, "--hyps", hyps, "--format", "md", "--normalizer", "none")
    assert md.returncode == 0, md.stderr
    assert "| WER |" in md.stdout and "| normaliser | none |" in md.stdout and "| drugs |" in md.stdout


def test_extra_terms_file(text_files, tmp_path):
    refs, hyps = text_files
    terms = write_lines(tmp_path / "terms.txt", ["allergies", "symptoms\tradiating"])
    r = json.loads(medasr("score", "--refs", refs, "--hyps", hyps, "--terms", terms).stdout)
    assert r["medical"]["categories"]["custom"]["occurrences"] == 1
    assert r["medical"]["categories"]["symptoms"]["occurrences"] == 2  # chest pain, radiating


def test_mismatched_line_counts(tmp_path, text_files):
    refs, _ = text_files
    short = write_lines(tmp_path / "short.txt", HYPS[:2])
    out = medasr("score", "--refs", refs, "--hyps", short)
    assert out.returncode == 2
    assert "3 utterances" in out.stderr and "has 2" in out.stderr and "Traceback" not in out.stderr


def test_mismatched_ids_are_named(tmp_path):
    refs = write_jsonl(tmp_path / "refs.jsonl", [{"id": "a", "text": "x"}, {"id": "b", "text": "y"}])
    hyps = write_jsonl(tmp_path / "hyps.jsonl", [{"id": "a", "text": "x"}, {"id": "c", "text": "y"}])
    out = medasr("score", "--refs", refs, "--hyps", hyps)
    assert out.returncode == 2
    assert "no hypothesis" in out.stderr and ": b" in out.stderr and ": c" in out.stderr


@pytest.mark.parametrize(
    "content, problem",
    [
        ('{"id": "a", "text": "x"}\n{"id": "a", "text": "y"}\n', "duplicate ids: a"),
        ('{"id": "a", "text": "x"}\nnot json\n', "hyps.jsonl:2: not valid JSON"),
        ('{"id": "a"}\n', 'expected an object with "id" and "text"'),
    ],
)
def test_bad_jsonl(tmp_path, content, problem):
    refs = write_jsonl(tmp_path / "refs.jsonl", [{"id": "a", "text": "x"}])
    hyps = tmp_path / "hyps.jsonl"
    hyps.write_text(content, encoding="utf-8")
    out = medasr("score", "--refs", refs, "--hyps", hyps)
    assert out.returncode == 2 and problem in out.stderr


def test_missing_file(tmp_path, text_files):
    refs, _ = text_files
    out = medasr("score", "--refs", refs, "--hyps", tmp_path / "nope.txt")
    assert out.returncode == 2 and "nope.txt does not exist" in out.stderr


def test_missing_terms_file(tmp_path, text_files):
    refs, hyps = text_files
    out = medasr("score", "--refs", refs, "--hyps", hyps, "--terms", tmp_path / "terms.txt")
    assert out.returncode == 2 and "terms.txt does not exist" in out.stderr
