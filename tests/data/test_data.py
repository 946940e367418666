"""Dataset readers over tiny stand-ins of each published layout, built here with real audio."""

from __future__ import annotations

import json
import shutil
import subprocess
import tarfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import soundfile as sf

from medasr.audio.decode import load_audio
from medasr.data import detect, read_cv17, read_dataset, read_librispeech, read_manifest, read_multimed, write_manifest
from medasr.errors import DataError, UserError
from medasr.synth.sentences import render

TEXTS = ["The patient takes metoprolol.", "Chest pain since this morning.", 'She said "no" to surgery.']


@pytest.fixture(scope="module")
def wavs(tmp_path_factory) -> list[Path]:
    d = tmp_path_factory.mktemp("speech")
    paths = [d / f"clip{i}.wav" for i in range(len(TEXTS))]
    for text, path in zip(TEXTS, paths):
        render(text, path, speed=220)
    return paths


def _mp3(wav: Path, dst: Path) -> Path:
    if shutil.which("ffmpeg") is None:
        pytest.fail("ffmpeg is not installed (apt-get install ffmpeg)")
    dst.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(["ffmpeg", "-loglevel", "error", "-y", "-i", str(wav), "-ar", "48000", str(dst)], check=True)
    return dst


def _duration(wav: Path) -> float:
    return sf.info(str(wav)).duration


def _audio_struct(wav: Path) -> dict:
    return {"bytes": wav.read_bytes(), "path": wav.name}


# ---- MultiMed -------------------------------------------------------------------------------

def _multimed(root: Path, wavs: list[Path], split: str = "test", **drop) -> Path:
    table = {"audio": [_audio_struct(w) for w in wavs], "text": TEXTS[: len(wavs)],
             "duration": [_duration(w) for w in wavs]}
    for column in drop:
        table.pop(column)
    (root / "English").mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table(table), root / "English" / f"{split}-00000-of-00001.parquet")
    return root


def test_multimed_reads_audio_bytes_text_and_duration(tmp_path, wavs):
    root = _multimed(tmp_path / "MultiMed", wavs)
    _multimed(root, wavs[:1], split="train")
    utts = list(read_multimed(root, "test"))
    assert [u.text for u in utts] == TEXTS
    assert all(isinstance(u.audio, bytes) and u.dataset == "multimed" for u in utts)
    decoded = load_audio(utts[0].audio)
    assert decoded.duration == pytest.approx(utts[0].duration, abs=0.01)
    assert len({u.id for u in utts}) == 3
    assert len(list(read_multimed(root / "English", "train"))) == 1  # the English folder itself
    assert [u.text for u in read_dataset(root, "test")] == TEXTS
    assert detect(root) == "multimed"


def test_multimed_errors(tmp_path, wavs):
    root = _multimed(tmp_path / "mm", wavs[:1], text=True)
    with pytest.raises(DataError, match="missing column.*text"):
        list(read_multimed(root, "test"))
    with pytest.raises(DataError, match="no MultiMed 'eval' shards"):
        read_multimed(root, "eval")
    (root / "English" / "test-00000-of-00001.parquet").write_bytes(b"not parquet")
    with pytest.raises(DataError, match="not a readable parquet"):
        list(read_multimed(root, "test"))


# ---- Common Voice 17 ------------------------------------------------------------------------

CV_HEADER = "client_id\tpath\tsentence\tup_votes\tdown_votes\tage\tgender\taccents\tlocale\tsegment\n"


def _tsv(path: Path, clips: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = [f"c{i}\t{clip}\t{TEXTS[i]}\t2\t0\ttwenties\t\t\ten\t\n" for i, clip in enumerate(clips)]
    path.write_text(CV_HEADER + "".join(rows), encoding="utf-8")


@pytest.fixture(scope="module")
def mp3s(tmp_path_factory, wavs) -> list[Path]:
    d = tmp_path_factory.mktemp("mp3")
    return [_mp3(w, d / f"common_voice_en_{100 + i}.mp3") for i, w in enumerate(wavs)]


def test_cv17_official_layout_with_tar_shards(tmp_path, mp3s):
    root = tmp_path / "common_voice_17_0"
    _tsv(root / "transcript" / "en" / "test.tsv", [m.name for m in mp3s])
    shard_dir = root / "audio" / "en" / "test"
    shard_dir.mkdir(parents=True)
    # Two shards, members under a folder named like the shard, as in the HF release.
    for k, group in enumerate((mp3s[:2], mp3s[2:])):
        with tarfile.open(shard_dir / f"en_test_{k}.tar", "w") as tar:
            for m in group:
                tar.add(m, arcname=f"en_test_{k}/{m.name}")
    utts = list(read_cv17(root, "test"))
    assert [u.text for u in utts] == TEXTS  # the quoted sentence survives (no csv quoting)
    assert [u.id for u in utts] == [m.stem for m in mp3s]
    assert all(u.audio == m.read_bytes() for u, m in zip(utts, mp3s))
    assert load_audio(utts[0].audio).duration > 0.5
    assert detect(root) == "cv17" and len(list(read_dataset(root, "test"))) == 3


def test_cv17_extracted_clips_and_mozilla_layout(tmp_path, mp3s):
    root = tmp_path / "cv"
    _tsv(root / "transcript" / "en" / "dev.tsv", [m.name for m in mp3s])
    for m in mp3s:
        dst = root / "audio" / "en" / "dev" / "en_dev_0" / m.name
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(m, dst)
    utts = list(read_cv17(root, "validation"))  # the HF name of the dev split
    assert [Path(u.audio).name for u in utts] == [m.name for m in mp3s]

    moz = tmp_path / "cv-corpus-17.0" / "en"
    _tsv(moz / "test.tsv", [m.name for m in mp3s])
    (moz / "clips").mkdir()
    for m in mp3s:
        shutil.copy(m, moz / "clips" / m.name)
    (moz / "clip_durations.tsv").write_text("clip\tduration[ms]\n" f"{mp3s[0].name}\t1500\n")
    utts = list(read_cv17(moz.parent, "test"))
    assert utts[0].duration == 1.5 and utts[1].duration is None
    assert Path(utts[2].audio).is_file()


def test_cv17_missing_clip_and_columns(tmp_path, mp3s):
    root = tmp_path / "cv"
    _tsv(root / "transcript" / "en" / "test.tsv", [mp3s[0].name, "common_voice_en_missing.mp3"])
    (root / "audio" / "en" / "test").mkdir(parents=True)
    shutil.copy(mp3s[0], root / "audio" / "en" / "test" / mp3s[0].name)
    with pytest.raises(DataError, match=r"test.tsv:3: clip common_voice_en_missing.mp3 not found"):
        list(read_cv17(root, "test"))
    (root / "transcript" / "en" / "test.tsv").write_text("client_id\tfile\ttext\nx\ty\tz\n")
    with pytest.raises(DataError, match="missing column.*path, sentence"):
        list(read_cv17(root, "test"))
    with pytest.raises(DataError, match="no Common Voice 'train' data"):
        read_cv17(root, "train")


def test_cv17_parquet_mirror(tmp_path, mp3s):
    root = tmp_path / "fixie"
    (root / "en" / "test").mkdir(parents=True)
    table = pa.table({"path": [m.name for m in mp3s], "sentence": TEXTS,
                      "audio": [{"bytes": m.read_bytes(), "path": m.name} for m in mp3s]})
    pq.write_table(table, root / "en" / "test" / "0000.parquet")
    assert detect(root) == "cv17"
    utts = list(read_dataset(root, "test"))
    assert [u.text for u in utts] == TEXTS and utts[0].id == mp3s[0].stem
    assert load_audio(utts[1].audio).duration > 0.5


# ---- LibriSpeech ----------------------------------------------------------------------------

def test_librispeech_tree(tmp_path, wavs):
    root = tmp_path / "LibriSpeech"
    chapter = root / "test-clean" / "1089" / "134686"
    chapter.mkdir(parents=True)
    lines = []
    for i, w in enumerate(wavs[:2]):
        utt = f"1089-134686-{i:04d}"
        samples, rate = sf.read(w)
        sf.write(chapter / f"{utt}.flac", samples, rate)
        lines.append(f"{utt} {TEXTS[i].upper().rstrip('.')}\n")
    (chapter / "1089-134686.trans.txt").write_text("".join(lines))
    (root / "test-other" / "1").mkdir(parents=True)
    utts = list(read_dataset(root, "test-clean"))
    assert [u.id for u in utts] == ["1089-134686-0000", "1089-134686-0001"]
    assert utts[0].text == "THE PATIENT TAKES METOPROLOL" and utts[0].dataset == "librispeech"
    assert utts[0].duration == pytest.approx(_duration(wavs[0]), abs=0.01)
    assert detect(root / "test-clean") == "librispeech"
    assert len(list(read_librispeech(root / "test-clean", "test"))) == 2  # already a subset
    with pytest.raises(DataError, match="choose one of: test-clean, test-other"):
        read_dataset(root, "test")
    (chapter / "1089-134686-0001.flac").unlink()
    with pytest.raises(DataError, match=r"trans.txt:2: audio file .*0001.flac does not exist"):
        list(read_librispeech(root / "test-clean"))


# ---- manifests ------------------------------------------------------------------------------

def _jsonl(path: Path, rows: list) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def test_manifest_plain_and_official_recipe_lines(tmp_path, wavs):
    clips = tmp_path / "clips"
    clips.mkdir()
    shutil.copy(wavs[0], clips / "a.wav")
    manifest = _jsonl(tmp_path / "train.jsonl", [
        {"audio": "clips/a.wav", "text": "Chest pain.", "duration": 1.25, "id": "u1"},
        "",
        {"audio": str(wavs[1]), "text": "language English<asr_text>Take 40 milligrams.", "prompt": "cardiology"},
        {"audio": "https://example.org/x.wav", "text": "language None<asr_text>"},
    ])
    utts = list(read_manifest(manifest))
    assert utts[0].audio == str((clips / "a.wav").resolve()) and utts[0].duration == 1.25
    assert utts[0].id == "u1" and utts[0].language == "English"
    assert utts[1].text == "Take 40 milligrams." and utts[1].language == "English"
    assert utts[1].prompt == "cardiology" and utts[1].id == "train-000003"
    assert utts[2].text == "" and utts[2].language == "None" and utts[2].audio.startswith("https://")
    assert detect(manifest) == "manifest" and len(list(read_dataset(tmp_path, "train"))) == 3


@pytest.mark.parametrize("line, message", [
    ('{"audio": "a.wav", "text": "x"', r"bad.jsonl:2: not valid JSON"),
    ('["a.wav", "x"]', r"bad.jsonl:2: expected a JSON object"),
    ('{"audio": "a.wav"}', r'bad.jsonl:2: missing "text"'),
    ('{"audio": "a.wav", "text": 3}', r'bad.jsonl:2: "text" must be a string'),
    ('{"audio": "a.wav", "text": "x", "duration": "long"}', r'bad.jsonl:2: "duration" must be'),
    ('{"audio": "nowhere.wav", "text": "x"}', r"bad.jsonl:2: audio file .*nowhere.wav does not exist"),
])
def test_manifest_bad_lines_name_the_line(tmp_path, wavs, line, message):
    shutil.copy(wavs[0], tmp_path / "a.wav")
    manifest = _jsonl(tmp_path / "bad.jsonl", [{"audio": "a.wav", "text": "fine"}, line])
    with pytest.raises(DataError, match=message):
        list(read_manifest(manifest))


def test_manifest_missing_file_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        read_manifest(tmp_path / "none.jsonl")
    with pytest.raises(DataError, match="no such file or folder"):
        read_dataset(tmp_path / "nothing-here")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="unrecognised dataset layout"):
        read_dataset(tmp_path / "empty")


def test_write_manifest_round_trip_with_bytes_audio(tmp_path, wavs):
    root = _multimed(tmp_path / "mm", wavs)
    out = tmp_path / "out" / "test.jsonl"
    assert write_manifest(read_multimed(root, "test"), out) == 3
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    assert lines[0]["audio"] == "audio/multimed-test-000000.wav"  # relative: the folder can move
    assert lines[0]["dataset"] == "multimed" and "language" not in lines[0]
    shutil.move(tmp_path / "out", tmp_path / "moved")
    back = list(read_dataset(f"manifest:{tmp_path / 'moved' / 'test.jsonl'}"))
    assert [u.text for u in back] == TEXTS
    original = sf.read(wavs[2])[0]
    assert np.allclose(sf.read(back[2].audio)[0], original)
    assert not list((tmp_path / "moved").glob("*.partial"))
