"""amber2_app.model_panel: the Model tab in plain words, with the measured results and the weak head."""
from __future__ import annotations

import json
from pathlib import Path

from amber2_app import model_panel

ROOT = Path(__file__).resolve().parents[1]
CARD = """---\nlicense: cc-by-nc-sa-4.0\n---\n# AmbER² demo\n\nTrained on the demo corpus.\n\n## Results\n
| Method | JS |\n|---|---|\n| amber2 | 0.411 |\n\n## Licences\n\nCC.\n"""
CONFIG = {"label_space": "demo7", "classes": ["neutral", "happy", "sad", "angry"], "audio_encoder": "whisper-base",
          "text_encoder": "minilm-l6",
          "provenance": {"dataset": "demo (RAVDESS | EmotionLines)", "n_items": 29336, "n_fit": 26397,
                         "n_val": 2939, "kappa": 8.0, "lambda_mai": 0.3, "hyperparameters": {"kappa": 8.0},
                         "method": "amber2", "val_js": 0.406, "best_epoch": 9, "max_epochs": 30,
                         "amber2_version": "0.1.0"}}
HEADS = {"A": {"js": 0.514, "acc": 0.459}, "T": {"js": 0.476, "acc": 0.49}, "AT": {"js": 0.411, "acc": 0.573}}


def test_model_panel_speaks_plainly_and_shows_the_results():
    panel = model_panel.describe("assets/amber2-demo", CONFIG, CARD, HEADS)
    text = panel["summary"] + panel["results"]
    assert text.count("κ") == 1 and "λ" in panel["summary"] and text.count("λ") == 1
    for raw in ("n fit", "val js", "n_fit", "val_js", "| checkpoint |", "hyperparameters"):
        assert raw not in text, raw
    assert "29,336" in text and "26,397" in text and "whisper-base" in text and "neutral, happy" in text
    assert "- **amber2**: JS 0.411" in panel["results"] and "Licences" not in panel["results"]
    assert "|" not in panel["results"]  # a list, which fits a phone, not a wide table
    assert "voice head is the weak one" in panel["results"] and "46%" in panel["results"]
    assert "amber2 version 0.1.0" in panel["summary"]
    assert panel["card"].startswith("# AmbER² demo") and "license:" not in panel["card"]


def test_without_report_or_card_the_panel_says_so():
    panel = model_panel.describe("x", {"classes": ["a", "b"]}, None, None)
    assert "no measured results" in panel["results"] and "does not say how each head" in panel["results"]
    assert panel["card"] == ""
    assert model_panel.weak_head({"A": {"js": 0.4}, "T": {"js": 0.5}}) == "T"


def test_bundled_report_gives_the_per_head_metrics():
    report = ROOT / "assets" / "demo-report" / "report.json"
    heads = model_panel.head_metrics(json.loads(report.read_text()))
    assert set(heads) == {"A", "T", "AT"} and all("js" in h for h in heads.values())


def test_the_model_tab_explains_its_words():
    from amber2_app.model_panel import GLOSSARY

    for word in ("CB-CE", "AmbER²", "JS", "BC", "ECE", "MAI", "κ"):
        assert f"**{word}" in GLOSSARY or word in GLOSSARY, word
