"""Checkpoint folders, model cards and Hub publishing (only the HfApi object is replaced)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml

from amber2.model import AmbER2Model, load_model
from train.hub import CardInfo, HubError, push_to_hub, save_checkpoint, write_model_card

CLASSES = ["neutral", "happy", "sad", "angry", "fear", "disgust", "surprise"]
INFO = {
    "dataset": "demo",
    "n_items": 2940,
    "n_skipped": 3,
    "protocol": {"n_folds": 5, "seeds": [0, 1, 2], "max_epochs": 30},
    "hyperparameters": {"lambda_mai": 0.5, "kappa": 4.0, "seed": 0},
    "metrics": {"cbce": {"js": {"mean": 0.3012, "std": 0.004}, "f1": {"mean": 0.41, "std": 0.01}},
                "amber2": {"js": {"mean": 0.2791, "std": 0.002}, "f1": {"mean": 0.43, "std": 0.02}}},
    "licences": ["RAVDESS (Livingstone & Russo 2018) is CC BY-NC-SA 4.0."],
    "demo": {"recipe": "RAVDESS voices plus spoken EmotionLines dialogues"},
    "command": "python -m train demo",
}


def _model() -> AmbER2Model:
    torch.manual_seed(0)
    return AmbER2Model(512, 384, CLASSES, "demo7", hidden_dim=16, fusion_dim=8)


def _front_matter(text: str) -> dict:
    assert text.startswith("---\n")
    return yaml.safe_load(text.split("---\n")[1])


@pytest.fixture
def checkpoint(tmp_path) -> Path:
    return save_checkpoint(_model(), tmp_path / "ckpt", INFO)


def test_checkpoint_folder_reloads_to_the_same_model(checkpoint):
    assert sorted(p.name for p in checkpoint.iterdir()) == ["README.md", "config.json", "model.safetensors"]
    assert sorted(p.name for p in checkpoint.parent.iterdir()) == ["ckpt"]  # no staging left behind
    model, loaded = _model(), load_model(checkpoint, audio_encoder="whisper-base", text_encoder="minilm-l6")
    a, t = torch.randn(3, 512), torch.randn(3, 384)
    assert all(torch.equal(model.predict(a, t)[h], loaded.predict(a, t)[h]) for h in ("A", "T", "AT"))
    provenance = json.loads((checkpoint / "config.json").read_text())["provenance"]
    assert provenance["dataset"] == "demo" and provenance["n_items"] == 2940
    assert provenance["license"] == "cc-by-nc-sa-4.0"
    assert loaded.provenance == provenance


def test_card_front_matter_and_sections(checkpoint):
    text = (checkpoint / "README.md").read_text()
    meta = _front_matter(text)
    assert meta["license"] == "cc-by-nc-sa-4.0"  # RAVDESS-derived: share-alike
    assert meta["library_name"] == "amber2" and "emotion-recognition" in meta["tags"]
    for heading in ("## Training data", "## Label space", "## Encoders", "## Protocol", "## Results",
                    "## Licences", "## How to load"):
        assert heading in text
    assert "| 0 | neutral |" in text and "| 6 | surprise |" in text
    assert "`whisper-base` (512-d" in text and "`minilm-l6` (384-d" in text
    assert "RAVDESS voices plus spoken EmotionLines dialogues" in text
    assert "python -m train demo" in text


def test_metric_table_rows_and_paper_column_order(checkpoint):
    lines = (checkpoint / "README.md").read_text().splitlines()
    header = next(line for line in lines if line.startswith("| Method"))
    assert header == "| Method | JS dist. (nat) ↓ | F1 ↑ |"
    assert "| cbce | 0.301 ± 0.004 | 0.410 ± 0.010 |" in lines
    assert "| amber2 | 0.279 ± 0.002 | 0.430 ± 0.020 |" in lines


def test_licence_is_other_without_ravdess(tmp_path):
    save_checkpoint(_model(), tmp_path / "ck", {"dataset": "iemocap", "licences": ["IEMOCAP: research licence"]})
    meta = _front_matter((tmp_path / "ck" / "README.md").read_text())
    assert meta["license"] == "other" and meta["license_name"]
    assert CardInfo(license="mit").weights_license() == "mit"


def test_write_model_card_needs_a_checkpoint(tmp_path):
    with pytest.raises(HubError, match="has no config.json"):
        write_model_card(tmp_path, INFO)
    with pytest.raises(HubError, match="must be a dict or CardInfo"):
        write_model_card(tmp_path, ["not", "a", "dict"])


class FakeApi:
    """Stands in for huggingface_hub.HfApi: records calls and snapshots the folder it is asked to upload."""

    def __init__(self, fail: Exception | None = None):
        self.calls, self.uploaded, self.fail = [], {}, fail

    def create_repo(self, **kw):
        self.calls.append(("create_repo", kw))
        if self.fail:
            raise self.fail
        return f"https://huggingface.co/{kw['repo_id']}"

    def upload_folder(self, **kw):
        self.calls.append(("upload_folder", kw))
        folder = Path(kw["folder_path"])
        self.uploaded = {p.name: p.read_bytes() for p in folder.iterdir() if not p.name.startswith(".")}


def test_push_creates_the_repo_and_uploads_the_checkpoint(checkpoint):
    api = FakeApi()
    url = push_to_hub(checkpoint, "someone/amber2-demo", token="hf_test", private=True, api=api)
    assert url == "https://huggingface.co/someone/amber2-demo"
    (name1, create), (name2, upload) = api.calls
    assert name1 == "create_repo" and name2 == "upload_folder"
    assert create["repo_id"] == "someone/amber2-demo" and create["private"] is True and create["exist_ok"]
    assert upload["repo_id"] == "someone/amber2-demo" and upload["repo_type"] == "model"
    assert Path(upload["folder_path"]) == checkpoint
    assert set(api.uploaded) == {"README.md", "config.json", "model.safetensors"}
    assert api.uploaded["README.md"] == (checkpoint / "README.md").read_bytes()
    assert _front_matter(api.uploaded["README.md"].decode())["license"] == "cc-by-nc-sa-4.0"


def test_push_refuses_incomplete_folders_and_bad_ids(tmp_path, checkpoint):
    with pytest.raises(HubError, match="no checkpoint folder"):
        push_to_hub(tmp_path / "nowhere", "someone/x", api=FakeApi())
    (tmp_path / "half").mkdir()
    (tmp_path / "half" / "config.json").write_text("{}")
    with pytest.raises(HubError, match="missing model.safetensors, README.md"):
        push_to_hub(tmp_path / "half", "someone/x", api=FakeApi())
    with pytest.raises(HubError, match="not a valid Hub repo id"):
        push_to_hub(checkpoint, "bad id with spaces", api=FakeApi())


def test_push_without_token_is_a_clear_error(checkpoint, monkeypatch, tmp_path):
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.delenv("HUGGING_FACE_HUB_TOKEN", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))  # no stored login
    monkeypatch.setattr("huggingface_hub.constants.HF_TOKEN_PATH", str(tmp_path / "hf" / "token"))
    with pytest.raises(HubError, match="no Hugging Face token"):
        push_to_hub(checkpoint, "someone/amber2-demo")


def test_push_offline_is_a_clear_error(checkpoint, monkeypatch):
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", True)
    with pytest.raises(HubError, match="HF_HUB_OFFLINE"):
        push_to_hub(checkpoint, "someone/amber2-demo", token="hf_test")


def test_network_failure_during_push_is_a_clear_error(checkpoint):
    from huggingface_hub.errors import OfflineModeIsEnabled

    with pytest.raises(HubError, match="could not reach the Hugging Face Hub"):
        push_to_hub(checkpoint, "someone/amber2-demo", api=FakeApi(fail=OfflineModeIsEnabled("offline")))


def test_card_says_what_the_fused_bar_shows(tmp_path):
    model = _model()
    assert "Fused reading" not in (save_checkpoint(model, tmp_path / "student", INFO) / "README.md").read_text()
    model.config.fused_reading, model.config.reading_kappa, model.config.reading_temperature = "arbitrated", 8.0, 0.6
    text = (save_checkpoint(model, tmp_path / "arbitrated", INFO) / "README.md").read_text()
    assert "Fused reading: arbitrated" in text and "kappa 8.0" in text and "temperature 0.6" in text
