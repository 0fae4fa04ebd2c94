"""AmbER2Model: shapes, fusion, save/reload through the Hub mixin, strict loading, vmap over runs."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from amber2.model import AmbER2Model, load_model

CLASSES = ["neutral", "happy", "angry", "sad"]


def _model(**kw) -> AmbER2Model:
    torch.manual_seed(0)
    args = dict(audio_dim=512, text_dim=384, classes=CLASSES, label_space="iemocap4", hidden_dim=32,
                fusion_dim=16, provenance={"data": "unit test"})
    return AmbER2Model(**{**args, **kw})


def _inputs(b=5):
    g = torch.Generator().manual_seed(1)
    return torch.randn(b, 512, generator=g), torch.randn(b, 384, generator=g)


def test_forward_shapes_and_predict_probabilities():
    model = _model()
    a, t = _inputs()
    logits = model(a, t)
    assert set(logits) == {"A", "T", "AT"} and all(z.shape == (5, 4) for z in logits.values())
    probs = model.predict(a, t)
    for p in probs.values():
        assert torch.allclose(p.sum(-1), torch.ones(5)) and torch.all(p >= 0)
    assert model.training  # predict leaves the mode as it found it
    single = model.predict(a[0], t[0])
    assert single["AT"].shape == (4,) and torch.allclose(single["AT"], probs["AT"][0])


def test_heads_see_only_their_modality():
    model = _model().eval()
    a, t = _inputs()
    changed = model(a, t + 1.0)
    base = model(a, t)
    assert torch.equal(base["A"], changed["A"])
    assert not torch.allclose(base["T"], changed["T"]) and not torch.allclose(base["AT"], changed["AT"])


def test_wrong_input_width_is_a_clear_error():
    with pytest.raises(ValueError, match="takes 512-d audio .*whisper-base.* got 768"):
        _model().predict(torch.zeros(2, 768), torch.zeros(2, 384))
    with pytest.raises(ValueError, match="batches of the same size"):
        _model().predict(torch.zeros(2, 512), torch.zeros(3, 384))


def test_save_and_reload_give_identical_outputs(tmp_path):
    model = _model()
    model.set_input_stats(torch.full((512,), 0.5), torch.full((512,), 2.0), torch.zeros(384), torch.ones(384))
    model.save_pretrained(tmp_path / "ckpt")
    assert {p.name for p in (tmp_path / "ckpt").iterdir()} >= {"model.safetensors", "config.json", "README.md"}
    config = json.loads((tmp_path / "ckpt" / "config.json").read_text())
    assert config["classes"] == CLASSES and config["label_space"] == "iemocap4"
    assert config["audio_encoder"] == "whisper-base" and config["provenance"] == {"data": "unit test"}
    loaded = load_model(tmp_path / "ckpt", audio_encoder="whisper-base", text_encoder="minilm-l6")
    assert not loaded.training
    a, t = _inputs()
    expected, got = model.predict(a, t), loaded.predict(a, t)
    for h in expected:
        assert torch.equal(expected[h], got[h])
    assert torch.equal(loaded.audio_std, torch.full((512,), 2.0))


def test_missing_tensor_is_refused_by_name(tmp_path):
    _model().save_pretrained(tmp_path)
    tensors = load_file(tmp_path / "model.safetensors")
    del tensors["heads.AT.3.weight"]
    save_file(tensors, tmp_path / "model.safetensors")
    with pytest.raises(ValueError, match=r"missing tensors \['heads.AT.3.weight'\]"):
        load_model(tmp_path)


def test_extra_or_misshapen_tensor_is_refused(tmp_path):
    _model().save_pretrained(tmp_path)
    tensors = load_file(tmp_path / "model.safetensors")
    tensors["heads.X.0.weight"] = torch.zeros(2, 2)
    tensors["heads.A.0.bias"] = torch.zeros(7)
    save_file(tensors, tmp_path / "model.safetensors")
    with pytest.raises(ValueError, match=r"unexpected tensors \['heads.X.0.weight'\].*wrong shapes heads.A.0.bias"):
        load_model(tmp_path)


def test_encoder_mismatch_is_refused(tmp_path):
    _model().save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="trained on text encoder 'minilm-l6', not 'bert:bert-base-uncased'"):
        load_model(tmp_path, text_encoder="bert:bert-base-uncased")


def test_missing_folder_and_broken_files(tmp_path):
    with pytest.raises(ValueError, match="no checkpoint folder at"):
        load_model(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="has no config.json"):
        load_model(tmp_path / "empty")
    _model().save_pretrained(tmp_path / "bad")
    (tmp_path / "bad" / "config.json").write_text("{not json")
    with pytest.raises(ValueError, match="not an AmbER² model config"):
        load_model(tmp_path / "bad")
    _model().save_pretrained(tmp_path / "trunc")
    (tmp_path / "trunc" / "model.safetensors").write_bytes(b"\x00" * 10)
    with pytest.raises(ValueError, match="not a readable safetensors file"):
        load_model(tmp_path / "trunc")


def test_init_config_rebuilds_the_model():
    model = _model()
    twin = AmbER2Model(**model.init_config())
    assert {k: v.shape for k, v in twin.state_dict().items()} == {k: v.shape for k, v in model.state_dict().items()}
    assert twin.init_config() == model.init_config()


def test_hub_repo_id_offline_is_a_clear_error(monkeypatch, tmp_path):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError, match="could not be fetched from the Hugging Face Hub"):
        load_model("someone/amber2-demo")


def test_functional_call_vmap_over_stacked_runs():
    """The protocol stacks the parameters of several runs and evaluates them with one vmapped call."""
    runs = [_model(dropout=0.0) for _ in range(3)]
    for i, m in enumerate(runs):
        torch.manual_seed(i)
        for p in m.parameters():
            torch.nn.init.normal_(p, std=0.1)
    params, buffers = torch.func.stack_module_state(runs)
    a, t = _inputs()

    def call(p, b):
        return torch.func.functional_call(runs[0], (p, b), (a, t))

    batched = torch.func.vmap(call)(params, buffers)
    for i, m in enumerate(runs):
        single = m(a, t)
        for h in single:
            assert torch.allclose(batched[h][i], single[h], atol=1e-6)


def test_import_amber2_is_light_and_names_resolve_lazily():
    code = ("import sys, amber2; assert 'torch' not in sys.modules, 'torch imported eagerly'; "
            "from amber2 import load_model; import amber2.model as m; assert load_model is m.load_model; "
            "print('ok')")
    root = Path(__file__).resolve().parents[1]
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=root)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr
    import amber2

    with pytest.raises(AttributeError, match="no attribute 'nonexistent'"):
        amber2.nonexistent
