"""Temperature scaling: it finds the temperature that made over-confident bars, keeps the top class, lowers
ECE, and a checkpoint carries its temperatures into every reading (one without them still loads)."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from amber2.calibration import apply_temperature, fit_temperature, soft_nll
from amber2.metrics import calibration_metrics
from amber2.model import AmbER2Config, AmbER2Model, load_model


def overconfident(n: int = 3000, c: int = 5, temperature: float = 3.0, seed: int = 0):
    """Labels drawn from calibrated probabilities, and the same probabilities sharpened by `temperature`."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(n, c)) * 1.5
    p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    labels = np.array([rng.choice(c, p=row) for row in p])
    return apply_temperature(p, 1 / temperature), np.eye(c)[labels]


def test_the_fitted_temperature_undoes_over_confidence_and_keeps_the_top_class():
    sharp, y = overconfident(temperature=3.0)
    t = fit_temperature(sharp, y)
    assert 2.6 < t < 3.4
    fixed = apply_temperature(sharp, t)
    assert np.array_equal(fixed.argmax(1), sharp.argmax(1))
    assert soft_nll(fixed, y) < soft_nll(sharp, y)
    assert calibration_metrics(y, fixed)["ece"] < 0.5 * calibration_metrics(y, sharp)["ece"]


def test_temperatures_are_fitted_per_run_and_head_at_once():
    sharp, y = overconfident(temperature=2.0)
    calibrated = apply_temperature(sharp, 2.0)         # flattened back to the calibrated probabilities
    t = fit_temperature(np.stack([np.stack([sharp, calibrated])] * 2), y)       # (2 runs, 2 heads)
    assert t.shape == (2, 2) and np.allclose(t[:, 0], t[0, 0]) and 1.7 < t[0, 0] < 2.3 and 0.85 < t[0, 1] < 1.15
    with pytest.raises(ValueError, match="do not match"):
        fit_temperature(sharp, y[:10])


def _model(temperatures=None) -> AmbER2Model:
    torch.manual_seed(0)
    return AmbER2Model(AmbER2Config(audio_dim=4, text_dim=3, classes=["a", "b", "c"], label_space="custom",
                                    hidden_dim=8, fusion_dim=8, temperatures=temperatures or {}))


def test_a_checkpoint_reads_at_its_temperatures_and_an_old_one_at_one(tmp_path):
    audio, text = torch.randn(5, 4), torch.randn(5, 3)
    plain = _model()
    warm = _model({"AT": 2.0, "A": 0.5})
    warm.load_state_dict(plain.state_dict())
    p, q = plain.predict(audio, text), warm.predict(audio, text)
    assert torch.allclose(p["T"], q["T"])
    assert torch.allclose(q["AT"], torch.softmax(torch.log(p["AT"]) / 2.0, -1), atol=1e-6)
    assert torch.equal(p["AT"].argmax(-1), q["AT"].argmax(-1))
    assert q["AT"].max() < p["AT"].max() and q["A"].max() > p["A"].max()

    warm.save_pretrained(tmp_path / "warm")
    assert json.loads((tmp_path / "warm" / "config.json").read_text())["temperatures"] == {"AT": 2.0, "A": 0.5}
    assert torch.allclose(load_model(tmp_path / "warm").predict(audio, text)["AT"], q["AT"])
    plain.save_pretrained(tmp_path / "old")
    config = json.loads((tmp_path / "old" / "config.json").read_text())
    config.pop("temperatures")                                   # a checkpoint from before calibration
    (tmp_path / "old" / "config.json").write_text(json.dumps(config))
    assert torch.allclose(load_model(tmp_path / "old").predict(audio, text)["AT"], p["AT"])


def test_bad_temperatures_are_refused():
    with pytest.raises(ValueError, match="unknown heads"):
        _model({"X": 1.0})
    with pytest.raises(ValueError, match="positive and finite"):
        _model({"AT": 0.0})
