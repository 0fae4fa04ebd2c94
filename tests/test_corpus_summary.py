"""`python -m train inspect`: printed counts, the per-item CSV, and clear errors."""
from __future__ import annotations

import csv
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from corpus_fixtures import build_iemocap, build_msp_podcast
from train.datasets import load_dataset
from train.corpus_summary import main

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def releases(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("inspect_releases")
    return {"iemocap": build_iemocap(root), "msp": build_msp_podcast(root)}


def test_inspect_writes_one_row_per_item_with_vote_columns(releases, tmp_path, capsys):
    out = tmp_path / "items.csv"
    assert main(["--dataset", "iemocap", "--root", str(releases["iemocap"]), "--csv", str(out)]) == 0
    rows = list(csv.DictReader(out.open()))
    assert list(rows[0]) == ["id", "fold", "transcript", "audio", "neutral", "happy", "angry", "sad", "n_votes",
                             "group"]
    assert len(rows) == 39
    m001 = next(r for r in rows if r["id"] == "Ses01F_impro01_M001")
    assert (m001["neutral"], m001["happy"], m001["angry"], m001["sad"], m001["n_votes"]) == ("0", "0", "3", "1", "4")
    assert m001["fold"] == "0" and m001["transcript"] == "Do you have to be so loud? I hate waiting here!"
    assert Path(m001["audio"]).is_file()
    assert all(int(r["n_votes"]) == sum(int(r[c]) for c in ("neutral", "happy", "angry", "sad")) for r in rows)
    assert "wrote 39 rows" in capsys.readouterr().out


def test_inspect_prints_class_fold_ambiguity_and_skip_counts(releases, capsys):
    assert main(["--dataset", "msp-podcast", "--root", str(releases["msp"]), "--bins", "3"]) == 0
    text = capsys.readouterr().out
    corpus = load_dataset("msp-podcast", releases["msp"])
    assert f"{len(corpus.items)} items, {int(corpus.votes().sum())} votes" in text
    majority = np.argmax(corpus.votes(), axis=1)
    for k, c in enumerate(corpus.space.classes):
        line = next(li for li in text.splitlines() if li.strip().startswith(c + " "))
        assert int(line.split()[1]) == int(np.sum(majority == k)), line
    fold_totals = [int(li.split()[-1]) for li in text.split("folds:")[1].split("ambiguity")[0].splitlines()[2:]
                   if li.strip()]
    assert sorted(fold_totals) == [7, 8, 8, 8, 8]
    bins = [li for li in text.split("ambiguity")[1].split("skipped:")[0].splitlines() if li.strip().startswith("[")]
    assert len(bins) == 3 and sum(int(li.split()[2]) for li in bins) == len(corpus.items)
    assert "no_vote_in_space: 1" in text.split("skipped:")[1]
    # every kept MSP fixture rater chose inside msp8, so this prints 0 (IEMOCAP's count is tested elsewhere)
    assert f"votes outside the label space (dropped from kept items): {corpus.dropped_votes}" in text


def test_inspect_options_reach_the_loader(releases, capsys):
    assert main(["--dataset", "iemocap", "--root", str(releases["iemocap"]), "--merge-excited"]) == 0
    assert "40 items" in capsys.readouterr().out     # the fru/exc-only utterance now has a happy vote


def test_inspect_missing_skip_counts_absent_audio(releases, tmp_path, capsys):
    root = Path(shutil.copytree(releases["msp"], tmp_path / "msp"))
    (root / "Audios/MSP-PODCAST_0001_0001.wav").unlink()
    assert main(["--dataset", "msp-podcast", "--root", str(root)]) == 2
    assert "missing audio for MSP-PODCAST_0001_0001" in capsys.readouterr().err
    assert main(["--dataset", "msp-podcast", "--root", str(root), "--missing", "skip"]) == 0
    out = capsys.readouterr().out
    assert "38 items" in out and "missing_audio: 1" in out


def test_inspect_errors_are_one_line_with_exit_status_2(releases, tmp_path, capsys):
    assert main(["--dataset", "iemocap", "--root", str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "does not exist" in err and "Traceback" not in err
    assert main(["--dataset", "msp-podcast", "--root", str(releases["msp"]), "--include-self"]) == 2
    assert "--include-self do not apply to dataset msp-podcast" in capsys.readouterr().err
    assert main(["--dataset", "csv", "--root", str(tmp_path)]) == 2
    assert "needs space=" in capsys.readouterr().err


def test_module_entry_points_run(releases, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    for module in (["-m", "train.corpus_summary"], ["-m", "train", "inspect"]):
        done = subprocess.run([sys.executable, *module, "--dataset", "iemocap", "--root", str(releases["iemocap"]),
                               "--csv", str(tmp_path / "x.csv")], capture_output=True, text=True, env=env,
                              cwd=ROOT, timeout=120)
        assert done.returncode == 0, done.stderr
        assert "iemocap: 39 items" in done.stdout
    bad = subprocess.run([sys.executable, "-m", "train.corpus_summary", "--dataset", "msp-podcast", "--root",
                          str(tmp_path)], capture_output=True, text=True, env=env, cwd=ROOT, timeout=120)
    assert bad.returncode == 2 and "unknown MSP-Podcast layout" in bad.stderr and "Traceback" not in bad.stderr
