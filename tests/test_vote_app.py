"""Vote together through the launched app's API, as scripts and phones call it (gradio_client, one session per
client): concurrent voters, the teacher key, closed rounds, an app restart, and an export the trainer takes."""
from __future__ import annotations

import csv
import io
import os
import subprocess
import sys
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from test_app import ROOT, launch_app, model_dir  # noqa: F401  (model_dir: session fixture)

pytestmark = pytest.mark.slow  # loads Whisper and MiniLM in the app process


def launch(model: Path, data: Path, log_path: Path, timeout: float = 300.0):
    """`python app.py --data DATA` on a free port; (process, url) once it answers."""
    return launch_app(model, log_path, timeout, args=["--data", str(data), "--no-warmup"],
                      env={"OMP_NUM_THREADS": "1"})


def stop(proc) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()


class App:
    """The launched app and its data folder; `restart()` stops it and starts it again on the same folder."""

    def __init__(self, model: Path, data: Path, log: Path):
        self.model, self.data, self.log = model, data, log
        self.proc, self.url = launch(model, data, log)

    def restart(self) -> None:
        stop(self.proc)
        self.proc, self.url = launch(self.model, self.data, self.log)

    def client(self):
        from gradio_client import Client

        return Client(self.url, verbose=False)  # a new client is a new session: a new voter


@pytest.fixture(scope="module")
def app(model_dir, tmp_path_factory):  # noqa: F811
    base = tmp_path_factory.mktemp("vote")
    a = App(model_dir, base / "data", base / "app.log")
    yield a
    stop(a.proc)


def create(c, clip: Path, transcript: str = "") -> dict:
    from gradio_client import handle_file

    return c.predict(handle_file(str(clip)), transcript, api_name="/room_create")


def refused(call, match: str) -> str:
    from gradio_client.exceptions import AppError

    with pytest.raises(AppError) as e:
        call()
    message = str(e.value)
    assert match in message and "Traceback" not in message, message
    return message


def test_thirty_concurrent_voters_are_counted_exactly_and_survive_a_restart(app, ravdess_clip):
    teacher = create(app.client(), ravdess_clip)
    assert len(teacher["room"]) == 8 and len(teacher["teacher_key"]) >= 40
    first = ["angry"] * 14 + ["neutral"] * 8 + ["sad"] * 5 + ["fear"] * 3
    changed = {i: "happy" for i in range(0, 30, 6)}  # five voters change their mind (angry/neutral -> happy)

    def voter(i: int):
        c = app.client()
        assert c.predict(teacher["room"], first[i], api_name="/room_vote")["ok"] is True
        if i in changed:
            assert c.predict(teacher["room"], changed[i], api_name="/room_vote")["ok"] is True

    with ThreadPoolExecutor(30) as pool:
        list(pool.map(voter, range(30)))
    final = [changed.get(i, e) for i, e in enumerate(first)]
    state = app.client().predict(teacher["room"], api_name="/room_state")
    expected = [final.count(c) for c in state["classes"]]
    assert state["counts"] == expected and state["n"] == 30
    assert state["y"] == pytest.approx([n / 30 for n in expected])
    assert not state["closed"] and not state["revealed"] and "model" not in state

    app.restart()
    c = app.client()
    again = c.predict(teacher["room"], api_name="/room_state")
    assert again["counts"] == expected and again["round"] == 1
    # after the restart the teacher's key still controls the room
    revealed = c.predict(teacher["room"], teacher["teacher_key"], api_name="/room_reveal")
    assert revealed["revealed"] and revealed["closed"]
    assert set(revealed["model"]) == set(revealed["metrics"]) == {"audio", "text", "fused"}
    assert set(revealed["metrics"]["fused"]) == {"js", "bc", "r2"}
    w = revealed["weights"]
    assert w["kappa"] == 4.0 and w["u_audio"] + w["u_text"] == pytest.approx(1.0, abs=1e-5)
    sharper = c.predict(teacher["room"], 12.0, api_name="/room_state")["weights"]
    assert sharper["kappa"] == 12.0 and abs(sharper["u_audio"] - 0.5) >= abs(w["u_audio"] - 0.5)


def test_teacher_key_closed_rounds_and_bad_input(app, ravdess_clip):
    c = app.client()
    teacher = create(c, ravdess_clip, "Kids are talking by the door")
    other = create(c, ravdess_clip, "Kids are talking by the door")
    room, key = teacher["room"], teacher["teacher_key"]
    c.predict(room, "angry", api_name="/room_vote")
    for wrong in ("", "not-the-key", other["teacher_key"]):
        refused(lambda: c.predict(room, wrong, api_name="/room_reveal"), "Only the teacher")
        refused(lambda: c.predict(room, wrong, api_name="/room_close"), "Only the teacher")
    refused(lambda: c.predict("not-the-key", api_name="/room_export"), "Only the teacher")
    state = c.predict(room, api_name="/room_state")
    assert not state["closed"] and not state["revealed"] and "model" not in state
    assert "Kids are talking" in c.predict(key, api_name="/room_export")

    refused(lambda: c.predict("ZZZZ-ZZZZ", "angry", api_name="/room_vote"), "no open room")
    refused(lambda: c.predict(room, "bored", api_name="/room_vote"), "Unknown emotion 'bored'")
    closed = c.predict(room, key, api_name="/room_close")
    assert closed["closed"] and not closed["revealed"]
    refused(lambda: app.client().predict(room, "sad", api_name="/room_vote"), "Round 1 is closed")
    assert c.predict(room, api_name="/room_state")["counts"] == closed["counts"]


def test_an_exported_room_trains_with_the_csv_dataset(app, ravdess_clip, tmp_path):
    """A small class session (six clips, a few votes each) -> export -> `python -m train --dataset csv`."""
    from gradio_client import handle_file

    from amber2_app.examples import EXAMPLES, EXAMPLES_DIR
    from amber2_app.rooms import RoomStore

    c = app.client()
    clips = [ravdess_clip] + [EXAMPLES_DIR / e.file for e in EXAMPLES]
    teacher = create(c, clips[0])
    votes = [["angry", "angry", "neutral"], ["angry", "sad"], ["happy", "happy", "surprise"], ["sad", "neutral"],
             ["neutral", "fear", "angry"], ["happy", "neutral"]]
    for i, clip in enumerate(clips):
        if i:
            got = c.predict(teacher["room"], teacher["teacher_key"], handle_file(str(clip)), "",
                            api_name="/room_next")
            assert got["round"] == i + 1
        for emotion in votes[i]:
            app.client().predict(teacher["room"], emotion, api_name="/room_vote")
    text = c.predict(teacher["teacher_key"], api_name="/room_export")
    rows = list(csv.DictReader(io.StringIO(text)))
    assert len(rows) == 6 and [int(r["n_votes"]) for r in rows] == [len(v) for v in votes]
    assert all(r["transcript"] for r in rows)  # Whisper's words where none were given
    # the download button's zip: the same CSV and the clips it names
    out = tmp_path / "class"
    with zipfile.ZipFile(RoomStore(app.data).export_zip(teacher["teacher_key"], tmp_path / "votes.zip")) as z:
        z.extractall(out)
    assert (out / "votes.csv").read_text() == text
    run = subprocess.run([sys.executable, "-m", "train", "--dataset", "csv", "--csv", str(out / "votes.csv"),
                          "--space", "demo7", "--out", str(tmp_path / "run"), "--cache-dir", str(tmp_path / "f"),
                          "--folds", "2", "--seeds", "1", "--epochs", "2", "--lambda-mai-grid", "0.5",
                          "--kappa-grid", "4", "--batch-size", "4", "--no-progress", "--device", "cpu"],
                         cwd=ROOT, capture_output=True, text=True, timeout=900,
                         env={**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"})
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert (tmp_path / "run" / "report.json").is_file() and (tmp_path / "run" / "model" / "config.json").is_file()
