"""The fused-head check: what counts as an invented reading, each head's UAR, the table, and the clip orders."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np

from train.fused_check import HeadReadings, first_per_class, fused_scores, fused_table, interleaved, invented

CLASSES = ("neutral", "happy", "angry")


def one_hot(classes: list[int]) -> np.ndarray:
    return np.eye(3)[classes] * 0.8 + 0.2 / 3


def test_a_fused_top_class_that_neither_expert_shows_is_invented():
    r = HeadReadings(audio=one_hot([2, 2, 0, 1]), text=one_hot([0, 0, 0, 0]), fused=one_hot([2, 0, 1, 1]),
                     truth=np.array([2, 2, 0, 1]))
    assert invented(r).tolist() == [False, False, True, False]
    s = fused_scores(r, CLASSES)
    assert s["n"] == 4 and s["invented"] == 0.25 and s["classes"] == ["neutral", "happy", "angry"]
    assert s["uar_audio"] == 1.0                       # every clip's voice right
    assert np.isclose(s["uar_text"], 1 / 3)            # the words say neutral throughout
    assert np.isclose(s["uar_fused"], (0.5 + 1 + 0) / 3)
    table = fused_table({"emovo-whisper": s})
    assert table[-1] == "| emovo-whisper | 4 | 1.000 | 0.333 | 0.500 | 25.0% |"


def _item(label: int, name: str):
    return SimpleNamespace(votes=np.eye(3)[label], audio=name)


def test_clips_are_capped_per_class_and_interleaved_by_class():
    items = [_item(k, f"{k}-{i}") for k in (0, 1, 2) for i in range(3)]
    assert [it.audio for it in first_per_class(items, 2)] == ["0-0", "0-1", "1-0", "1-1", "2-0", "2-1"]
    order = [it.audio for it in interleaved(items)]
    assert order[:4] == ["0-0", "1-0", "2-0", "0-1"] and sorted(order) == sorted(it.audio for it in items)


def test_the_demo_report_scores_the_fused_bar_beside_the_fused_head():
    """Per source, the bar the app shows (the arbitrated reading) gets its own rows: its UAR and how often its
    top class is neither expert's, against the voice and words heads of the same items."""
    import numpy as np

    from train.demo_report import source_breakdown

    eye = np.eye(3)
    truth = np.array([0, 1, 2, 0])
    y = eye[truth]
    voice, words = eye[[0, 1, 2, 1]], eye[[1, 1, 1, 1]]
    student = eye[[2, 1, 2, 2]]                       # invents on items 0 and 3
    bar = eye[[0, 1, 2, 1]]                           # follows the voice
    heads = np.stack([voice, words, student])[None]   # (seeds, heads, N, C)
    predictions = {"amber2": heads, "cbce": heads}
    readings = {"amber2": bar[None], "cbce": bar[None]}
    rows = source_breakdown(predictions, y, [f"ravdess/{i}" for i in range(4)], readings)
    cell = {r.split(" | ")[2]: r.split(" | ")[3] for r in rows[2:]}
    assert cell["fused top neither expert's"].startswith("0.500")
    assert cell["fused bar's top neither expert's"].startswith("0.000")
    assert cell["fused bar UAR"].startswith("0.833") and cell["voice head UAR"].startswith("0.833")
    assert not any("fused bar" in r for r in source_breakdown(predictions, y, [f"ravdess/{i}" for i in range(4)]))
